// The loader's shards (data parallelism, issue 18): the ranks' parts of every batch, put side by
// side in rank order, are exactly the batch one process builds, also for a short last batch.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "core/error.h"
#include "data/loader.h"
#include "data/procedural.h"

namespace {

using namespace peft;
using namespace peft::data;

TEST(LoaderShard, ShardsOfEveryBatchMakeTheWholeBatch) {
  auto ds = std::make_shared<ProceduralDataset>("shapes", 23, 16, 0, Split::train);  // last batch: 23 - 2*8 = 7 rows
  for (int64_t shards : {2, 3}) {
    LoaderOptions o;
    o.batch_size = 8;
    o.seed = 5;
    DataLoader whole(ds, o);
    for (int64_t b = 0; b < whole.num_batches(); ++b) {
      Batch ref = whole.make_batch(1, b);
      std::vector<int64_t> idx;
      std::vector<float> px;
      for (int64_t s = 0; s < shards; ++s) {
        LoaderOptions os = o;
        os.shard = s;
        os.shards = shards;
        Batch part = DataLoader(ds, os).make_batch(1, b);
        idx.insert(idx.end(), part.indices.begin(), part.indices.end());
        px.insert(px.end(), part.images.data<float>(), part.images.data<float>() + part.images.numel());
        ASSERT_EQ(part.labels.numel(), static_cast<int64_t>(part.indices.size()));
      }
      EXPECT_EQ(idx, ref.indices) << "batch " << b << " over " << shards;
      ASSERT_EQ(static_cast<int64_t>(px.size()), ref.images.numel());
      EXPECT_EQ(std::memcmp(px.data(), ref.images.data<float>(), px.size() * sizeof(float)), 0);
    }
  }
}

TEST(LoaderShard, RowsAndBadShards) {
  EXPECT_EQ(shard_rows(8, 0, 2), (std::pair<int64_t, int64_t>{0, 4}));
  EXPECT_EQ(shard_rows(8, 1, 2), (std::pair<int64_t, int64_t>{4, 8}));
  EXPECT_EQ(shard_rows(1, 0, 2), (std::pair<int64_t, int64_t>{0, 0}));  // a rank may get none of a short batch
  EXPECT_EQ(shard_rows(1, 1, 2), (std::pair<int64_t, int64_t>{0, 1}));
  auto ds = std::make_shared<ProceduralDataset>("shapes", 4, 16, 0, Split::train);
  LoaderOptions o;
  o.shard = 2;
  o.shards = 2;
  EXPECT_THROW(DataLoader(ds, o), ValueError);
}

}  // namespace
