// DataLoader: epoch coverage, seeded shuffling, resume, prefetch parity and error propagation; few-shot and VTAB splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>

#include "core/error.h"
#include "data/loader.h"
#include "data/procedural.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::data;

namespace {

// Example i is a 1x2x2 image filled with i; label i % K. Optionally throws IOError on one index.
class IndexDataset : public Dataset {
 public:
  IndexDataset(int64_t n, int64_t K, int64_t fail_at = -1) : n_(n), K_(K), fail_at_(fail_at) {}
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return K_; }
  std::vector<std::string> class_names() const override {
    std::vector<std::string> c;
    for (int64_t k = 0; k < K_; ++k) c.push_back("class" + std::to_string(k));
    return c;
  }
  int64_t image_size() const override { return 2; }
  int64_t channels() const override { return 1; }
  int64_t label(int64_t i) const override { return i % K_; }
  Image load(int64_t i) const override {
    if (i == fail_at_) throw IOError("index_dataset: cannot read example " + std::to_string(i));
    Image img(2, 2, 1);
    std::fill(img.pixels.begin(), img.pixels.end(), static_cast<float>(i));
    return img;
  }
  std::string describe() const override { return "index"; }

 private:
  int64_t n_, K_, fail_at_;
};

std::vector<Batch> run_epoch(DataLoader& loader, int64_t epoch, int64_t first = 0) {
  loader.start_epoch(epoch, first);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

std::vector<int64_t> flat_indices(const std::vector<Batch>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.indices.begin(), b.indices.end());
  return all;
}

}  // namespace

TEST(DataLoader, BatchesCoverTheEpochOnce) {
  auto ds = std::make_shared<IndexDataset>(23, 3);
  for (bool prefetch : {false, true}) {
    LoaderOptions o;
    o.batch_size = 5;
    o.seed = 1;
    o.prefetch = prefetch;
    DataLoader loader(ds, o);
    EXPECT_EQ(loader.num_batches(), 5);
    auto batches = run_epoch(loader, 0);
    ASSERT_EQ(batches.size(), 5u);
    EXPECT_EQ(batches.back().images.sizes(), (Shape{3, 1, 2, 2}));  // 23 = 4*5 + 3
    std::vector<int64_t> all = flat_indices(batches);
    std::sort(all.begin(), all.end());
    for (int64_t i = 0; i < 23; ++i) EXPECT_EQ(all[static_cast<size_t>(i)], i);
    for (const auto& b : batches) {  // rows carry their own example
      ASSERT_EQ(b.labels.dtype(), DType::i64);
      const auto imgs = b.images.to_vector<float>();
      const auto labels = b.labels.to_vector<int64_t>();
      for (size_t r = 0; r < b.indices.size(); ++r) {
        EXPECT_EQ(imgs[r * 4 + 3], static_cast<float>(b.indices[r]));
        EXPECT_EQ(labels[r], b.indices[r] % 3);
      }
    }
  }
  LoaderOptions o;
  o.batch_size = 5;
  o.drop_last = true;
  DataLoader loader(ds, o);
  EXPECT_EQ(loader.num_batches(), 4);
  auto batches = run_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(flat_indices(batches).size(), 20u);
  for (const auto& b : batches) EXPECT_EQ(b.images.size(0), 5);
}

TEST(DataLoader, ShufflingIsSeededPerEpoch) {
  auto ds = std::make_shared<IndexDataset>(40, 4);
  LoaderOptions o;
  o.batch_size = 8;
  o.seed = 3;
  DataLoader a(ds, o), b(ds, o);
  o.seed = 4;
  DataLoader c(ds, o);
  const auto a0 = flat_indices(run_epoch(a, 0)), a1 = flat_indices(run_epoch(a, 1));
  EXPECT_EQ(a0, flat_indices(run_epoch(b, 0)));
  EXPECT_EQ(a1, flat_indices(run_epoch(b, 1)));
  EXPECT_NE(a0, a1);
  EXPECT_NE(a0, flat_indices(run_epoch(c, 0)));
  EXPECT_EQ(a0, a.epoch_order(0));
  std::vector<int64_t> identity(40);
  for (int64_t i = 0; i < 40; ++i) identity[static_cast<size_t>(i)] = i;
  EXPECT_NE(a0, identity);
  o.shuffle = false;
  DataLoader plain(ds, o);
  EXPECT_EQ(flat_indices(run_epoch(plain, 5)), identity);
}

TEST(DataLoader, ResumeMidEpochGivesTheSameBatches) {
  auto ds = std::make_shared<ProceduralDataset>("shapes", 30, 16, 0, Split::train);
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 11;
  o.transform = make_transform(parse_augment("rrc,flip,shift:2"), imagenet_normalization());
  DataLoader full(ds, o), resumed(ds, o);
  const auto all = run_epoch(full, 2);
  const auto tail = run_epoch(resumed, 2, 5);
  ASSERT_EQ(tail.size(), all.size() - 5);
  for (size_t k = 0; k < tail.size(); ++k) {
    EXPECT_EQ(tail[k].index, static_cast<int64_t>(k + 5));
    EXPECT_EQ(tail[k].indices, all[k + 5].indices);
    EXPECT_EQ(tail[k].images.to_vector<float>(), all[k + 5].images.to_vector<float>());
  }
  const Batch direct = full.make_batch(2, 3);
  EXPECT_EQ(direct.images.to_vector<float>(), all[3].images.to_vector<float>());
  EXPECT_THROW(full.make_batch(2, 8), ValueError);
  EXPECT_THROW(full.start_epoch(0, 9), ValueError);
}

TEST(DataLoader, PrefetchGivesTheSameBatches) {
  auto ds = std::make_shared<ProceduralDataset>("mixed", 37, 16, 2, Split::train);
  LoaderOptions o;
  o.batch_size = 6;
  o.seed = 5;
  o.transform = make_transform(parse_augment("flip,shift:3"), clip_normalization());
  o.prefetch = false;
  DataLoader sync(ds, o);
  o.prefetch = true;
  DataLoader async(ds, o);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    const auto s = run_epoch(sync, epoch), a = run_epoch(async, epoch);
    ASSERT_EQ(s.size(), a.size());
    for (size_t k = 0; k < s.size(); ++k) {
      EXPECT_EQ(s[k].images.to_vector<float>(), a[k].images.to_vector<float>());
      EXPECT_EQ(s[k].labels.to_vector<int64_t>(), a[k].labels.to_vector<int64_t>());
    }
  }
  // augmentation really ran: a different seed changes the pixels of the same examples
  o.seed = 6;
  DataLoader other(ds, o);
  o.shuffle = false;
  o.seed = 5;
  DataLoader ordered5(ds, o);
  o.seed = 6;
  DataLoader ordered6(ds, o);
  EXPECT_NE(run_epoch(ordered5, 0)[0].images.to_vector<float>(), run_epoch(ordered6, 0)[0].images.to_vector<float>());
  // an abandoned epoch (prefetch still running) is fine to restart and to destroy
  other.start_epoch(0);
  Batch b;
  ASSERT_TRUE(other.next(b));
  other.start_epoch(1);
  ASSERT_TRUE(other.next(b));
  EXPECT_EQ(b.epoch, 1);
}

TEST(DataLoader, ErrorsOnThePrefetchThreadReachTheCaller) {
  auto ds = std::make_shared<IndexDataset>(20, 2, /*fail_at=*/13);
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.prefetch = true;
  DataLoader loader(ds, o);
  loader.start_epoch(0);
  Batch b;
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(loader.next(b));  // batch 3 (examples 12..15) is prefetched and fails
  EXPECT_THROW_MSG(loader.next(b), IOError, std::string("example 13"));
  EXPECT_THROW(loader.next(b), IOError);  // the failing batch is retried, not skipped

  // a throwing transform is reported the same way
  auto good = std::make_shared<IndexDataset>(8, 2);
  o.transform = [](const Image& img, Generator&) -> Tensor {
    if (img.pixels[0] == 5.0f) throw ValueError("transform: bad example");
    return to_tensor(img);
  };
  DataLoader tl(good, o);
  tl.start_epoch(0);
  ASSERT_TRUE(tl.next(b));
  EXPECT_THROW_MSG(tl.next(b), ValueError, std::string("bad example"));
  // and a transform that changes the size is caught
  o.transform = [](const Image&, Generator&) { return zeros({1, 3, 3}); };
  DataLoader bad(good, o);
  bad.start_epoch(0);
  EXPECT_THROW_MSG(bad.next(b), ShapeError, std::string("[1, 3, 3]"));
}

TEST(DataLoader, MisuseErrors) {
  auto ds = std::make_shared<IndexDataset>(4, 2);
  LoaderOptions o;
  o.batch_size = 0;
  EXPECT_THROW(DataLoader(ds, o), ValueError);
  o.batch_size = 2;
  DataLoader loader(ds, o);
  Batch b;
  EXPECT_THROW(loader.next(b), StateError);
  EXPECT_THROW(DataLoader(nullptr, o), ValueError);
}

TEST(FewShot, PicksExactlyKPerClass) {
  IndexDataset ds(100, 4);
  const auto idx = few_shot_indices(ds, 5, 7);
  ASSERT_EQ(idx.size(), 20u);
  EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
  EXPECT_EQ(std::set<int64_t>(idx.begin(), idx.end()).size(), 20u);
  std::vector<int> per(4, 0);
  for (int64_t i : idx) per[static_cast<size_t>(ds.label(i))]++;
  EXPECT_EQ(per, (std::vector<int>{5, 5, 5, 5}));
  EXPECT_EQ(idx, few_shot_indices(ds, 5, 7));
  EXPECT_NE(idx, few_shot_indices(ds, 5, 8));
  // not simply the first k of each class
  EXPECT_NE(idx, few_shot_indices(IndexDataset(20, 4), 5, 7));
  EXPECT_EQ(few_shot_indices(ds, 25, 0).size(), 100u);
  EXPECT_THROW_MSG(few_shot_indices(IndexDataset(10, 4), 3, 0), ValueError, std::string("class2"),
                   std::string("2 examples"));
  EXPECT_THROW(few_shot_indices(ds, 0, 0), ValueError);
}

TEST(FewShot, Train800Val200) {
  IndexDataset big(1500, 3);
  const auto s = train800_val200(big, 1);
  EXPECT_EQ(s.train.size(), 800u);
  EXPECT_EQ(s.val.size(), 200u);
  std::set<int64_t> all(s.train.begin(), s.train.end());
  all.insert(s.val.begin(), s.val.end());
  EXPECT_EQ(all.size(), 1000u);  // disjoint
  EXPECT_LT(*all.rbegin(), 1500);
  EXPECT_GT(*all.rbegin(), 1000);  // drawn from the whole set, not its head
  EXPECT_EQ(s.train, train800_val200(big, 1).train);
  EXPECT_NE(s.train, train800_val200(big, 2).train);
  const auto small = train800_val200(IndexDataset(100, 3), 0);
  EXPECT_EQ(small.train.size(), 80u);
  EXPECT_EQ(small.val.size(), 20u);
  EXPECT_THROW(train800_val200(IndexDataset(1, 1), 0), ValueError);
}

TEST(FewShot, RandomPermutation) {
  Generator g(0);
  auto p = random_permutation(50, g);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
  int fixed = 0;
  for (int64_t i = 0; i < 50; ++i) fixed += p[static_cast<size_t>(i)] == i;
  EXPECT_LT(fixed, 10);
}
