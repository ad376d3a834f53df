// peft/clip_pretrain.h and peft/clip_demo.h on clip-micro with the smallest sizes: contrastive
// pretraining lowers its loss; the demo loop at 1 shot x 2 methods gives exactly those rows with
// the methods' own trainable counts, and its table, CSV and JSON render them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/blas.h"
#include "core/error.h"
#include "data/procedural.h"
#include "nn/clip.h"
#include "peft/clip_demo.h"
#include "peft/clip_methods.h"
#include "tests/testing.h"
#include "peft/clip_pretrain.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

TEST(ClipPretrain, MatchesItsPairsAndEndsInEvalMode) {
  // One batch of 32 pairs trained 40 steps: past CLIP's early plateau at chance (log 32 = 3.47,
  // every caption equally likely), the loss falls well below it.
  nn::CLIP clip(nn::load_clip_config("clip-micro"), 3);
  ClipPretrainConfig c;
  c.images = 32;
  c.epochs = 40;
  c.batch = 32;
  c.lr = 2e-3;
  c.seed = 3;
  std::vector<std::string> lines;
  const ClipPretrainResult r = pretrain_clip(clip, c, [&](const std::string& s) { lines.push_back(s); });
  ASSERT_EQ(r.epoch_loss.size(), 40u);
  EXPECT_EQ(lines.size(), 40u);
  EXPECT_NE(lines.back().find("epoch 40/40"), std::string::npos) << lines.back();
  EXPECT_LT(r.last_loss(), std::log(32.0) - 1.0) << ::testing::PrintToString(r.epoch_loss);
  EXPECT_FALSE(clip.is_training());
}

TEST(ClipPretrain, LossOfOnePairIsZeroAndOfABatchNearLogB) {
  // One pair: each direction is a softmax over one logit. A batch at temperature multiplier 1:
  // cosines in [-1, 1] keep every probability within e^2 of uniform, so the loss is log B +- 2.
  nn::CLIP clip(nn::load_clip_config("clip-micro"), 4);
  clip.eval();
  Generator g(4);
  const int64_t S = clip.cfg.vision.image_size;
  std::vector<std::string> prompts;
  for (int64_t k = 0; k < 4; ++k) prompts.push_back("a photo of a " + data::procedural_task("colors").classes[k] + ".");
  const Tensor tokens = nn::TextTokenizer(clip.cfg.text, "").tokenize(prompts);
  {
    NoGradGuard ng;
    clip.logit_scale.fill_(0.0);
  }
  Tensor images = randn({4, 3, S, S}, g);
  EXPECT_NEAR(clip_contrastive_loss(clip, narrow(images, 0, 0, 1), narrow(tokens, 0, 0, 1)).item(), 0.0, 1e-6);
  const double l = clip_contrastive_loss(clip, images, tokens).item();
  EXPECT_NEAR(l, std::log(4.0), 2.0);
}

class ClipDemoLib : public ::testing::Test {
 protected:
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir = fs::temp_directory_path() / ("peft_clip_demo_" + std::to_string(::getpid()));
};

TEST_F(ClipDemoLib, OneShotTwoMethodsGiveTheirRows) {
  ClipDemoConfig c;
  c.out = dir.string();
  c.quick = true;
  c.shots = {1};
  c.methods = {"linear-probe", "taskres"};
  const ClipDemoReport r = run_clip_demo(c);
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0].method, "linear-probe");
  EXPECT_EQ(r.rows[1].method, "taskres");
  const int64_t K = 8, E = 64;  // procedural:colors, clip-micro
  EXPECT_EQ(r.num_classes, K);
  EXPECT_EQ(r.rows[0].trainable, K * E + K);  // W, b
  EXPECT_EQ(r.rows[1].trainable, K * E);      // the residual R
  for (const ClipDemoRow& row : r.rows) {
    ASSERT_EQ(row.top1.size(), 1u);
    EXPECT_GE(row.top1[0], 0.0);
    EXPECT_LE(row.top1[0], 100.0);
  }
  for (const char* f : {"clip.safetensors", "clip.json", "prompts.txt"}) EXPECT_TRUE(fs::exists(dir / f)) << f;
  const std::string table = clip_demo_table(c, r);
  EXPECT_NE(table.find("1-shot"), std::string::npos) << table;
  EXPECT_NE(table.find("\ntaskres "), std::string::npos) << table;
  EXPECT_EQ(table.find("zeroshot "), std::string::npos) << table;
  EXPECT_EQ(clip_demo_csv(r).rfind("method,trainable,shots_1,time_s\nlinear-probe,520,", 0), 0u) << clip_demo_csv(r);
  const auto js = nlohmann::json::parse(clip_demo_json(r));
  ASSERT_EQ(js.size(), 2u);
  EXPECT_EQ(js[1]["trainable_params"], K * E);
  EXPECT_EQ(js[1]["top1"]["1"].get<double>(), r.rows[1].top1[0]);
}

// --precision bf16: every CLIP method runs (each make_clip_head stores the frozen towers' linear
// weights in bf16, nn/bf16_storage.h; methods that wrap in_proj, clip-lora and maple, compute in
// float32 beside them) and gives a row, on the shared CLIP and on the image methods' own copies.
TEST_F(ClipDemoLib, EveryMethodRunsUnderBf16Precision) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  ClipDemoConfig c;
  c.out = dir.string();
  c.quick = true;
  c.shots = {1};
  ClipDemoReport r;
  {
    testing::Bf16Scope bf;
    r = run_clip_demo(c);
  }
  EXPECT_EQ(r.rows.size(), clip_method_registry().size() + 1);  // and the linear probe
  for (const ClipDemoRow& row : r.rows) {
    ASSERT_EQ(row.top1.size(), 1u) << row.method;
    EXPECT_TRUE(std::isfinite(row.top1[0])) << row.method;
  }
}

TEST_F(ClipDemoLib, RefusesAnUnknownMethodOrNoShotsBeforeWriting) {
  ClipDemoConfig c;
  c.out = dir.string();
  c.quick = true;
  c.methods = {"nope"};
  EXPECT_THROW(run_clip_demo(c), ValueError);
  c.methods = {};
  c.shots = {};
  EXPECT_THROW(run_clip_demo(c), ValueError);
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace peft
