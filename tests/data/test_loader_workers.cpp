// DataLoader --workers: every batch is bit-identical for 1, 2 and 5 decoding threads (with
// random augmentation, original-image crops, prefetch on and off, a mid-epoch resume); the
// first failing row's error is the one raised, whatever thread met it; workers < 1 is refused.
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/loader.h"
#include "data/procedural.h"
#include "tests/testing.h"

namespace peft::data {
namespace {

std::vector<Batch> epoch_batches(DataLoader& loader, int64_t epoch, int64_t first = 0) {
  loader.start_epoch(epoch, first);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

TEST(LoaderWorkers, BatchesAreIdenticalForAnyNumberOfWorkers) {
  auto ds = std::make_shared<ProceduralDataset>("mixed", 37, 24, 3, Split::train);
  Preprocess p;
  p.size = 24;
  LoaderOptions o;
  o.batch_size = 8;
  o.seed = 21;
  set_pipeline(o, parse_augment("rrc,flip,shift:2"), p);
  DataLoader one(ds, o);
  const auto want = epoch_batches(one, 1);
  for (int64_t w : {2, 5}) {
    for (bool prefetch : {true, false}) {
      o.workers = w;
      o.prefetch = prefetch;
      DataLoader many(ds, o);
      const auto got = epoch_batches(many, 1);
      ASSERT_EQ(got.size(), want.size());
      for (size_t k = 0; k < got.size(); ++k) {
        EXPECT_EQ(got[k].indices, want[k].indices) << w << " workers, batch " << k;
        EXPECT_EQ(got[k].labels.to_vector<int64_t>(), want[k].labels.to_vector<int64_t>());
        EXPECT_EQ(got[k].images.to_vector<float>(), want[k].images.to_vector<float>()) << w << " workers, batch " << k;
      }
      const auto tail = epoch_batches(many, 1, 3);  // a resumed epoch too
      EXPECT_EQ(tail.front().images.to_vector<float>(), want[3].images.to_vector<float>());
    }
  }
}

// Example i fails to load for every i in `bad`; with 4 workers any of them may fail first in time.
class FailingDataset : public ProceduralDataset {
 public:
  explicit FailingDataset(std::vector<int64_t> bad) : ProceduralDataset("shapes", 12, 8, 0, Split::train), bad_(bad) {}
  Image load(int64_t i) const override {
    for (int64_t b : bad_)
      if (i == b) throw IOError("failing_dataset: cannot read example " + std::to_string(i));
    return ProceduralDataset::load(i);
  }

 private:
  std::vector<int64_t> bad_;
};

TEST(LoaderWorkers, TheFirstFailingRowIsReported) {
  LoaderOptions o;
  o.batch_size = 12;
  o.shuffle = false;
  o.workers = 4;
  DataLoader loader(std::make_shared<FailingDataset>(std::vector<int64_t>{9, 2, 7}), o);
  for (int k = 0; k < 5; ++k) {
    loader.start_epoch(0);
    Batch b;
    EXPECT_THROW_MSG(loader.next(b), IOError, "cannot read example 2");
  }
}

TEST(LoaderWorkers, RefusesFewerThanOneWorker) {
  LoaderOptions o;
  o.workers = 0;
  EXPECT_THROW_MSG(DataLoader(std::make_shared<ProceduralDataset>("shapes", 4, 8, 0, Split::train), o), ValueError,
                   "workers", "--workers");
}

}  // namespace
}  // namespace peft::data
