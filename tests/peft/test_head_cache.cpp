// Cached backbone features for head-only training (peft/head_cache.h, the trainer's cached path):
// the cached and the ordinary loop give the same head and metrics, the backbone encodes each
// image once, augmentation / dropout / a trainable backbone / the memory limit turn the cache
// off, and a run interrupted mid-epoch resumes to the same result.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

#include "autograd/grad_mode.h"
#include "core/counters.h"
#include "data/procedural.h"
#include "nn/checkpoint.h"
#include "peft/head_cache.h"
#include "peft/method.h"
#include "peft/trainer.h"
#include "tests/testing.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

nn::ViTConfig small_config() {
  nn::ViTConfig c;
  c.image_size = 16; c.patch_size = 4; c.dim = 16; c.depth = 2; c.heads = 2; c.num_classes = 6;
  return c;
}

// A base model with a fresh head and only the head trainable (method linear).
std::unique_ptr<nn::VisionTransformer> linear_model(const nn::ViTConfig& c, const std::string& method = "linear") {
  auto vit = std::make_unique<nn::VisionTransformer>(c, 7);
  Generator gen(8);
  apply_method(*vit, method, MethodOptions{}, 6, gen);
  return vit;
}

data::DatasetPtr shapes(int64_t n, data::Split split) {
  return std::make_shared<data::ProceduralDataset>("shapes", n, 16, 1, split);
}

TrainConfig three_epochs(bool cache) {
  TrainConfig t;
  t.epochs = 3;
  t.batch = 8;  // 60 images: 7 full batches and one of 4
  t.lr = 1e-2;
  t.warmup_epochs = 0.5;
  t.seed = 3;
  t.progress = false;
  t.feature_cache = cache;
  return t;
}

double max_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector<float>(), y = b.to_vector<float>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(static_cast<double>(x[i]) - y[i]));
  return m;
}

void expect_same_head(nn::VisionTransformer& a, nn::VisionTransformer& b) {
  EXPECT_LE(max_diff(a.head->weight, b.head->weight), 1e-5);
  EXPECT_LE(max_diff(a.head->bias, b.head->bias), 1e-5);
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> out;
  for (std::string line; std::getline(f, line);) out.push_back(line);
  return out;
}

fs::path temp_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("peft_head_cache_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// ---------------------------------------------------------------- the cache itself

TEST(HeadFeatureCache, EncodesOnlyMissingRowsAndMatchesTheBackbone) {
  auto vit = linear_model(small_config());
  Generator g(5);
  Tensor images = randn({4, 3, 16, 16}, g);
  Tensor want;
  {
    NoGradGuard ng;
    want = vit->forward_features(images);
  }
  HeadFeatureCache cache(10, 16);
  EXPECT_FALSE(cache.complete());
  // Examples 2 and 7 first, then a batch where they are cached and 1, 4 are not.
  Tensor first = cache.features(*vit, {2, 7, 2, 7}, images);  // rows 0, 1 encode; 2, 3 repeat them
  EXPECT_EQ(cache.encoded(), 2);
  EXPECT_LE(max_diff(narrow(first, 0, 0, 2), narrow(want, 0, 0, 2)), 1e-5);
  EXPECT_LE(max_diff(narrow(first, 0, 2, 2), narrow(want, 0, 0, 2)), 1e-5);
  Tensor second = cache.features(*vit, {1, 2, 4, 7}, images);
  EXPECT_EQ(cache.encoded(), 4);
  EXPECT_LE(max_diff(second, cat({narrow(want, 0, 0, 1), narrow(want, 0, 0, 1), narrow(want, 0, 2, 1),
                                      narrow(want, 0, 1, 1)}, 0)), 1e-5);
  EXPECT_FALSE(second.requires_grad());
  EXPECT_LE(max_diff(cache.gather({4, 1}), cat({narrow(want, 0, 2, 1), narrow(want, 0, 0, 1)}, 0)), 1e-5);
  EXPECT_THROW_MSG(cache.gather({3}), StateError, "example 3 is not cached");
  EXPECT_THROW_MSG(cache.features(*vit, {0, 10, 1, 2}, images), ValueError, "out of range");
}

// ---------------------------------------------------------------- when the cache is used

TEST(HeadCachePlan, OnlyForAFrozenBackboneWithoutRandomness) {
  auto train = shapes(60, data::Split::train), val = shapes(20, data::Split::val);
  auto vit = linear_model(small_config());
  HeadCachePlan on = plan_head_cache(*vit, train, val, "none", true);
  EXPECT_TRUE(on.on) << on.why_not;
  EXPECT_EQ(on.bytes, (60 + 20) * 16 * 4);
  EXPECT_NE(plan_head_cache(*vit, train, val, "flip", true).why_not.find("--augment flip"), std::string::npos);
  EXPECT_NE(plan_head_cache(*vit, train, val, "shift:2", true).why_not.find("--augment"), std::string::npos);
  EXPECT_EQ(plan_head_cache(*vit, train, val, "none", false).why_not, "--no-feature-cache");
  HeadCachePlan big = plan_head_cache(*vit, train, val, "none", true, /*limit_bytes=*/1000);
  EXPECT_FALSE(big.on);
  EXPECT_NE(big.why_not.find("would take"), std::string::npos) << big.why_not;

  nn::ViTConfig drop = small_config();
  drop.dropout = 0.1;
  EXPECT_NE(plan_head_cache(*linear_model(drop), train, val, "none", true).why_not.find("dropout"), std::string::npos);
  nn::ViTConfig dpath = small_config();
  dpath.drop_path = 0.1;
  EXPECT_NE(plan_head_cache(*linear_model(dpath), train, val, "none", true).why_not.find("drop-path"), std::string::npos);
  for (const char* m : {"bitfit", "ssf", "full"})
    EXPECT_NE(plan_head_cache(*linear_model(small_config(), m), train, val, "none", true).why_not.find("trainable"),
              std::string::npos)
        << m;
}

// ---------------------------------------------------------------- the trainer's cached path

TEST(HeadCacheTraining, CachedLoopMatchesTheOrdinaryLoopAndEncodesEachImageOnce) {
  auto train = shapes(60, data::Split::train), val = shapes(20, data::Split::val);
  fs::path dir = temp_dir("match");

  auto plain = linear_model(small_config());
  reset_gemm_counters();
  TrainResult rp = train_model(*plain, train, val, three_epochs(false));
  const int64_t plain_flops = counters().gemm_flops.load();

  auto cached = linear_model(small_config());
  TrainConfig tc = three_epochs(true);
  tc.out_dir = dir.string();
  reset_gemm_counters();
  TrainResult rc = train_model(*cached, train, val, tc);
  const int64_t cached_flops = counters().gemm_flops.load();

  EXPECT_FALSE(rp.feature_cache);
  EXPECT_EQ(rp.backbone_images, 0);
  EXPECT_TRUE(rc.feature_cache);
  EXPECT_EQ(rc.backbone_images, 60 + 20);  // every train and val image once
  // The ordinary loop runs the backbone over train + val in each of 3 epochs, the cached one once.
  EXPECT_LT(cached_flops * 5, plain_flops * 2) << cached_flops << " vs " << plain_flops;

  expect_same_head(*plain, *cached);
  EXPECT_EQ(rc.steps, rp.steps);
  EXPECT_NEAR(rc.train.loss, rp.train.loss, 1e-5);
  EXPECT_NEAR(rc.train.top1, rp.train.top1, 1e-9);
  EXPECT_NEAR(rc.val.loss, rp.val.loss, 1e-5);
  EXPECT_NEAR(rc.val.top1, rp.val.top1, 1e-9);
  EXPECT_EQ(rc.train.n, 60);
  EXPECT_EQ(rc.val.n, 20);

  auto lines = read_lines(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find("\"feature_cache\":\"computed\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"feature_cache\":\"cached\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("\"feature_cache\":\"cached\""), std::string::npos) << lines[2];
  fs::remove_all(dir);
}

TEST(HeadCacheTraining, AugmentationAndTheMemoryLimitFallBackToTheOrdinaryLoop) {
  auto train = shapes(60, data::Split::train);
  auto a = linear_model(small_config());
  TrainConfig flip = three_epochs(true);
  flip.epochs = 1;
  flip.augment = "flip";
  TrainResult ra = train_model(*a, train, nullptr, flip);
  EXPECT_FALSE(ra.feature_cache);
  EXPECT_EQ(ra.backbone_images, 0);

  auto b = linear_model(small_config()), c = linear_model(small_config());
  TrainConfig small = three_epochs(true);
  small.epochs = 2;
  small.feature_cache_limit = 100;  // bytes: far below 60 x 16 floats
  TrainResult rb = train_model(*b, train, nullptr, small);
  TrainConfig plain = three_epochs(false);
  plain.epochs = 2;
  TrainResult rc = train_model(*c, train, nullptr, plain);
  EXPECT_FALSE(rb.feature_cache);
  expect_same_head(*b, *c);
  EXPECT_EQ(rb.train.loss, rc.train.loss);
}

// A dataset whose load() fails after `limit` images: a run that dies mid-epoch.
class FailingDataset : public data::Dataset {
 public:
  FailingDataset(data::DatasetPtr base, int64_t limit) : base_(std::move(base)), limit_(limit) {}
  int64_t size() const override { return base_->size(); }
  int64_t num_classes() const override { return base_->num_classes(); }
  std::vector<std::string> class_names() const override { return base_->class_names(); }
  int64_t image_size() const override { return base_->image_size(); }
  int64_t channels() const override { return base_->channels(); }
  int64_t label(int64_t i) const override { return base_->label(i); }
  data::Image load(int64_t i) const override {
    if (loads_.fetch_add(1) >= limit_) throw std::runtime_error("simulated crash");
    return base_->load(i);
  }
  std::string describe() const override { return base_->describe(); }

 private:
  data::DatasetPtr base_;
  int64_t limit_;
  mutable std::atomic<int64_t> loads_{0};  // test-only state; the loader loads from one thread at a time
};

TEST(HeadCacheTraining, RunInterruptedMidEpochResumesToTheSameHead) {
  auto train = shapes(60, data::Split::train), val = shapes(20, data::Split::val);
  fs::path a = temp_dir("resume_a"), b = temp_dir("resume_b");

  auto whole = linear_model(small_config());
  TrainConfig ta = three_epochs(true);
  ta.out_dir = a.string();
  ta.save_every = 2;
  train_model(*whole, train, val, ta);

  // The same run dies while the loader builds batch 5 of epoch 1 (images 40..47).
  auto crashed = linear_model(small_config());
  TrainConfig tb = ta;
  tb.out_dir = b.string();
  EXPECT_THROW(train_model(*crashed, std::make_shared<FailingDataset>(train, 40), val, tb), std::runtime_error);
  {
    auto sd = nn::read_tensors((b / "checkpoint.safetensors").string());
    auto progress = sd.at("progress").to_vector<int64_t>();
    EXPECT_EQ(progress[0], 0);  // inside the first epoch
    EXPECT_GT(progress[1], 0);
    EXPECT_LT(progress[1], 8);
  }

  // A fresh process resumes: the cache starts empty and still encodes every image exactly once.
  auto resumed = linear_model(small_config());
  tb.resume = true;
  TrainResult rr = train_model(*resumed, train, val, tb);
  EXPECT_TRUE(rr.feature_cache);
  EXPECT_EQ(rr.backbone_images, 60 + 20);
  expect_same_head(*whole, *resumed);

  auto la = read_lines(a / "metrics.jsonl"), lb = read_lines(b / "metrics.jsonl");
  ASSERT_EQ(la.size(), 3u);
  ASSERT_EQ(lb.size(), 3u);
  // The epoch after the resume encodes the images the interrupted epoch had passed.
  EXPECT_NE(lb[1].find("\"feature_cache\":\"computed\""), std::string::npos) << lb[1];
  EXPECT_NE(lb[2].find("\"feature_cache\":\"cached\""), std::string::npos) << lb[2];
  fs::remove_all(a);
  fs::remove_all(b);
}

}  // namespace
}  // namespace peft
