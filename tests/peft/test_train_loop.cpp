// The training loop a timm user expects (issue 19): gradient accumulation equals the larger
// batch for several methods, the EMA follows its formula, schedules follow theirs, the best
// epoch's weights are the ones kept, early stopping stops where it should, a finished run is not
// re-run, and every epoch prints its line (stdout) and extends metrics.jsonl / metrics.csv / curves.png.
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "autograd/grad_mode.h"
#include "data/procedural.h"
#include "nn/optim/lr_schedule.h"
#include "peft/method.h"
#include "peft/train/metrics_log.h"
#include "peft/train/model_ema.h"
#include "peft/trainer.h"
#include "tests/peft/method_testing.h"
#include "tests/testing.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

nn::ViTConfig small_config() {
  nn::ViTConfig c;
  c.image_size = 16; c.patch_size = 4; c.dim = 16; c.depth = 2; c.heads = 2; c.num_classes = 6;
  return c;
}

std::unique_ptr<nn::VisionTransformer> model_with(const std::string& method) {
  auto vit = std::make_unique<nn::VisionTransformer>(small_config(), 7);
  Generator gen(8);
  MethodOptions o;
  o.prompts = 2;
  o.rank = 2;
  apply_method(*vit, method, o, 6, gen);
  testing::randomize_trainable(*vit, 9);  // LoRA's B and friends away from zero: every tensor matters
  return vit;
}

data::DatasetPtr shapes(int64_t n, data::Split split) {
  return std::make_shared<data::ProceduralDataset>("shapes", n, 16, 1, split);
}

TrainConfig base_config() {
  TrainConfig t;
  t.epochs = 2;
  t.batch = 8;
  t.lr = 1e-2;
  t.warmup_epochs = 0.5;
  t.seed = 3;
  t.progress = false;
  return t;
}

std::map<std::string, std::vector<float>> trainable(const nn::VisionTransformer& m) {
  std::map<std::string, std::vector<float>> out;
  for (auto& [n, p] : m.named_parameters())
    if (p.requires_grad()) out[n] = p.to_vector<float>();
  return out;
}

double max_diff(const std::map<std::string, std::vector<float>>& a, const std::map<std::string, std::vector<float>>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (auto& [n, x] : a) {
    const auto& y = b.at(n);
    for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(static_cast<double>(x[i]) - y[i]));
  }
  return m;
}

fs::path temp_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("peft_train_loop_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// ---- gradient accumulation

TEST(TrainLoop, AccumulationEqualsTheLargerBatch) {
  // 44 images: batches of 16 are 16, 16, 12; of 8 they are 8 x 5 and 4, grouped in pairs.
  auto train = shapes(44, data::Split::train);
  for (std::string method : {"linear", "lora", "vpt-deep", "ssf"}) {
    auto big = model_with(method), accum = model_with(method);
    TrainConfig tb = base_config();
    tb.batch = 16;
    tb.feature_cache = false;
    // SGD: its update is linear in the gradient, so the weights compare the gradients. AdamW
    // divides by sqrt(v), which turns rounding noise in a near-zero gradient element into a step
    // of size lr in either direction.
    tb.optimizer = "sgd";
    TrainConfig ta = tb;
    ta.batch = 8;
    ta.accum_steps = 2;
    TrainResult rb = train_model(*big, train, nullptr, tb);
    TrainResult ra = train_model(*accum, train, nullptr, ta);
    EXPECT_LE(max_diff(trainable(*big), trainable(*accum)), 1e-6) << method;
    EXPECT_NEAR(ra.train.loss, rb.train.loss, 1e-6) << method;
    // A different grouping is a different run: the test can tell the two apart.
    auto other = model_with(method);
    TrainConfig t1 = ta;
    t1.accum_steps = 1;
    train_model(*other, train, nullptr, t1);
    EXPECT_GT(max_diff(trainable(*big), trainable(*other)), 1e-4) << method;
  }
}

// ---- EMA

TEST(TrainLoop, EmaFollowsItsFormula) {
  Tensor w = from_vector({1.0, 2.0}, {2});
  std::vector<nn::ParamSpec> p = {{"w", w, 0.0}};
  ModelEma ema(p, 0.9);
  std::vector<double> expect = {1.0, 2.0};
  for (int k = 1; k <= 5; ++k) {
    w.copy_(from_vector({1.0 + k, 2.0 - k}, {2}));
    ema.update(p);
    expect[0] = 0.9 * expect[0] + 0.1 * (1.0 + k);
    expect[1] = 0.9 * expect[1] + 0.1 * (2.0 - k);
  }
  auto got = ema.weights()[0].to_vector<float>();
  EXPECT_NEAR(got[0], expect[0], 1e-5);
  EXPECT_NEAR(got[1], expect[1], 1e-5);
  ema.swap(p);  // the model now holds the average, the EMA the live weights
  EXPECT_NEAR(w.to_vector<float>()[0], expect[0], 1e-5);
  EXPECT_EQ(ema.weights()[0].to_vector<float>()[0], 6.0f);
}

TEST(TrainLoop, EmaWithDecayZeroIsTheLiveModel) {
  auto train = shapes(32, data::Split::train), val = shapes(16, data::Split::val);
  auto plain = model_with("lora"), avg = model_with("lora");
  TrainConfig t = base_config();
  TrainResult rp = train_model(*plain, train, val, t);
  t.model_ema = true;
  t.model_ema_decay = 0.0;
  TrainResult ra = train_model(*avg, train, val, t);
  EXPECT_EQ(max_diff(trainable(*plain), trainable(*avg)), 0.0);
  EXPECT_EQ(ra.val.top1, rp.val.top1);
}

// ---- schedules

TEST(LrSchedule, EveryScheduleFollowsItsFormula) {
  nn::LrSchedule s;
  s.peak = 1.0;
  s.warmup_updates = 4;
  s.total_updates = 24;
  s.updates_per_epoch = 4;
  // cosine with zero warm-up start and floor: the original warm-up + cosine, bit for bit
  for (int64_t u = 0; u < 26; ++u) EXPECT_EQ(nn::scheduled_lr(s, u), nn::warmup_cosine_lr(u, 4, 24, 1.0)) << u;
  s.warmup_lr = 0.2;
  s.min_lr = 0.1;
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 0), 0.2 + 0.8 * 1 / 4);
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 4), 1.0);
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 14), 0.1 + 0.45 * (1 + std::cos(M_PI * 10 / 20)));
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 24), 0.1);
  s.kind = "step";
  s.decay_epochs = 2;
  s.decay_rate = 0.5;
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 7), 1.0);    // epoch 1
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 8), 0.5);    // epoch 2
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 17), 0.25);  // epoch 4
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 100), 0.1);  // floored at min_lr
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 100), 1.0);
  s.kind = "plateau";
  EXPECT_DOUBLE_EQ(nn::scheduled_lr(s, 10, 2), 0.25);
  // patience 1: a reduction on the 2nd epoch in a row without a gain, then the count restarts
  EXPECT_EQ(nn::plateau_reductions({10, 20, 20, 20, 20, 20, 30, 30}, 1), 2);
  EXPECT_EQ(nn::plateau_reductions({10, 20, 20}, 1), 0);
  EXPECT_EQ(nn::plateau_reductions({10, 10.0005}, 0), 1);  // below the 1e-4 relative threshold
  s.kind = "linear";
  EXPECT_THROW_MSG(nn::check_lr_schedule(s), ValueError, "--sched", "linear");
}

// ---- best checkpoint, early stopping, finished runs, output

// save_weights that records what each file would hold.
struct Saved {
  std::map<std::string, std::map<std::string, std::vector<float>>> files;
  void attach(TrainConfig& t, nn::VisionTransformer& m) {
    t.save_weights = [this, &m](const std::string& path) { files[fs::path(path).filename().string()] = trainable(m); };
  }
};

TEST(TrainLoop, TheKeptWeightsAreTheBestEpochs) {
  auto train = shapes(48, data::Split::train), val = shapes(24, data::Split::val);
  auto m = model_with("lora");
  fs::path dir = temp_dir("best");
  TrainConfig t = base_config();
  t.epochs = 5;
  t.lr = 3e-2;
  t.out_dir = dir.string();
  t.save_every_epochs = 1;
  Saved saved;
  saved.attach(t, *m);
  TrainResult r = train_model(*m, train, val, t);

  std::ifstream f(dir / "metrics.jsonl");
  std::vector<double> top1;
  for (std::string line; std::getline(f, line);) top1.push_back(nlohmann::json::parse(line)["val_top1"].get<double>());
  ASSERT_EQ(top1.size(), 5u);
  const int64_t best = std::max_element(top1.begin(), top1.end()) - top1.begin() + 1;  // the first maximum
  EXPECT_EQ(r.best_epoch, best);
  EXPECT_EQ(r.val.top1, top1[static_cast<size_t>(best - 1)]);
  EXPECT_EQ(r.last_val.top1, top1.back());
  ASSERT_EQ(saved.files.size(), 7u);  // 5 epochs + best + last
  EXPECT_EQ(max_diff(saved.files.at("adapter.safetensors"), saved.files.at(fmt::format("adapter-epoch{}.safetensors", best))), 0.0);
  EXPECT_EQ(max_diff(saved.files.at("adapter-last.safetensors"), saved.files.at("adapter-epoch5.safetensors")), 0.0);
  EXPECT_EQ(max_diff(trainable(*m), saved.files.at("adapter.safetensors")), 0.0);  // the model ends on the best
  EXPECT_TRUE(fs::exists(dir / "metrics.csv"));
  EXPECT_TRUE(fs::exists(dir / "curves.png"));
  fs::remove_all(dir);
}

TEST(TrainLoop, EarlyStoppingStopsAfterPatienceEpochsWithoutGain) {
  auto train = shapes(32, data::Split::train), val = shapes(16, data::Split::val);
  auto m = model_with("linear");
  TrainConfig t = base_config();
  t.epochs = 10;
  t.lr = 1e-12;  // nothing moves: epoch 1 stays the best
  t.patience = 2;
  TrainResult r = train_model(*m, train, val, t);
  EXPECT_EQ(r.best_epoch, 1);
  EXPECT_EQ(r.epochs_run, 3);
  t.patience = 0;
  auto n = model_with("linear");
  EXPECT_EQ(train_model(*n, train, val, t).epochs_run, 10);
  EXPECT_THROW_MSG(train_model(*n, train, nullptr, [&] { auto u = t; u.patience = 2; return u; }()), ValueError,
                   "--patience", "--val");
}

TEST(TrainLoop, EveryEpochPrintsItsLineAndResumingAFinishedRunChangesNothing) {
  auto train = shapes(32, data::Split::train), val = shapes(16, data::Split::val);
  auto m = model_with("linear");
  fs::path dir = temp_dir("finished");
  TrainConfig t = base_config();
  t.out_dir = dir.string();
  ::testing::internal::CaptureStdout();
  train_model(*m, train, val, t);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("epoch 1/2  train loss"), std::string::npos) << out;
  EXPECT_NE(out.find("epoch 2/2  train loss"), std::string::npos) << out;
  EXPECT_NE(out.find("best "), std::string::npos) << out;

  auto read = [](const fs::path& p) { std::ifstream f(p, std::ios::binary); return std::string(std::istreambuf_iterator<char>(f), {}); };
  const std::string metrics = read(dir / "metrics.jsonl"), ckpt = read(dir / "checkpoint.safetensors");
  auto again = model_with("linear");
  t.resume = true;
  TrainResult r = train_model(*again, train, val, t);
  EXPECT_TRUE(r.finished_before);
  EXPECT_EQ(r.epochs_run, 2);
  EXPECT_EQ(read(dir / "metrics.jsonl"), metrics);
  EXPECT_EQ(read(dir / "checkpoint.safetensors"), ckpt);
  fs::remove_all(dir);
}

TEST(MetricsLog, CsvHasTheJsonKeysInOrderAndEmptyCellsForNull) {
  std::vector<nlohmann::json> rows = {
      {{"epoch", 1}, {"step", 4}, {"lr", 0.5}, {"train_loss", 1.5}, {"train_top1", 25.0}, {"val_loss", nullptr},
       {"val_top1", nullptr}, {"images_per_s", 10.0}, {"elapsed_s", 2.0}, {"feature_cache", "computed"}}};
  EXPECT_EQ(metrics_csv(rows),
            "epoch,step,lr,train_loss,train_top1,val_loss,val_top1,images_per_s,elapsed_s,feature_cache\n"
            "1,4,0.5,1.5,25.0,,,10.0,2.0,computed\n");
}

}  // namespace
}  // namespace peft
