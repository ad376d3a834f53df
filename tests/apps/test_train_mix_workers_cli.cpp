// peft train / pretrain with timm's --mixup/--cutmix, --workers and --layer-decay, end to end:
// mixed runs train (finite loss, no train top-1 in metrics.jsonl or the epoch lines), --workers 1,
// 2 and 3 write byte-identical adapters (PNG folder, random resized crops, mixup), --layer-decay 1
// changes nothing while 0.5 does, and bad values are one-line errors with exit 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/image.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/vit.h"
#include "tests/apps/cli_util.h"

namespace fs = std::filesystem;
using namespace peft;
using namespace peft::testing;

namespace {

// An ImageFolder of 3 classes x 6 images of 40 x 48 (decoded and cropped to 16 px by the loader),
// a 16 px model config and its base weights.
class TrainMixWorkers : public ::testing::Test {
 protected:
  static fs::path dir;
  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("peft_mix_workers_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    const char* classes[] = {"red", "green", "blue"};
    for (int c = 0; c < 3; ++c) {
      fs::create_directories(dir / "data" / classes[c]);
      for (int i = 0; i < 6; ++i) {
        data::Image img(40, 48, 3);
        for (int64_t y = 0; y < 40; ++y)
          for (int64_t x = 0; x < 48; ++x)
            for (int64_t k = 0; k < 3; ++k)
              img.at(y, x, k) = k == c ? 0.5f + 0.5f * static_cast<float>((x * (i + 1) + y) % 7) / 7.0f
                                       : static_cast<float>((x + y * i) % 5) / 10.0f;
        data::save_png(img, (dir / "data" / classes[c] / ("img" + std::to_string(i) + ".png")).string());
      }
    }
    std::ofstream(dir / "micro.json")
        << R"({"image_size": 16, "patch_size": 4, "dim": 16, "depth": 2, "heads": 2, "num_classes": 3})";
    nn::VisionTransformer base(nn::load_vit_config((dir / "micro.json").string()), 0);
    nn::save_weights(base, (dir / "base.safetensors").string());
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }

  // peft train on the folder; `extra` adds options. Returns the result; the run writes DIR/out.
  static CliResult train(const std::string& method, const std::string& out, const std::string& extra, int seed = 4) {
    const std::string d = dir.string();
    return run_peft("train --config " + d + "/micro.json --weights " + d + "/base.safetensors --method " + method +
                        " --data " + d + "/data --val " + d + "/data --epochs 2 --batch 6 --lr 1e-2 --out " + d + "/" +
                        out + " --no-progress --threads 1 --seed " + std::to_string(seed) + " " + extra,
                    out);
  }
  static std::string file(const std::string& out, const std::string& name) {
    return read_file((dir / out / name).string());
  }
};
fs::path TrainMixWorkers::dir;

std::vector<nlohmann::json> metrics(const std::string& text) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

TEST_F(TrainMixWorkers, MixupAndCutmixTrainEndToEnd) {
  for (const std::string mode : {"batch", "pair", "elem"}) {
    const std::string out = "mix_" + mode;
    CliResult r = train("lora", out, "--mixup 0.8 --cutmix 1.0 --mixup-mode " + mode + " --smoothing 0.1");
    ASSERT_EQ(r.status, 0) << r.err;
    const auto rows = metrics(file(out, "metrics.jsonl"));
    ASSERT_EQ(rows.size(), 2u);
    for (const auto& row : rows) {
      EXPECT_TRUE(row["train_top1"].is_null()) << row.dump();  // not measured while mixing (timm)
      EXPECT_TRUE(std::isfinite(row["train_loss"].get<double>()));
      EXPECT_TRUE(row["val_top1"].is_number());
    }
    const size_t at = r.out.find("epoch 2/2  train loss");
    ASSERT_NE(at, std::string::npos) << r.out;
    EXPECT_EQ(r.out.substr(at, 40).find("top1"), std::string::npos) << r.out;  // the loss alone, then val
    EXPECT_FALSE(file(out, "adapter.safetensors").empty());
  }
  // without mixing the same run reports its train top-1
  CliResult plain = train("lora", "plain", "");
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_TRUE(metrics(file("plain", "metrics.jsonl"))[0]["train_top1"].is_number());
  // mixing without --val: no top-1 at all; the curves show the loss alone (pretrain, layer decay)
  const std::string d = dir.string();
  CliResult pre = run_peft("pretrain --config " + d + "/micro.json --data " + d + "/data --epochs 1 --batch 6 --out " + d +
                               "/mix_pre --no-progress --threads 1 --mixup 1 --layer-decay 0.9",
                           "mix_pre");
  ASSERT_EQ(pre.status, 0) << pre.err;
  EXPECT_FALSE(file("mix_pre", "curves.png").empty());
  EXPECT_NE(pre.out.find("pretrain: layer decay 0.9"), std::string::npos) << pre.out;
  // a linear probe with mixing does not cache features (the images change every batch)
  CliResult lin = train("linear", "mix_linear", "--cutmix 1.0");
  ASSERT_EQ(lin.status, 0) << lin.err;
  EXPECT_NE(lin.out.find("not cached: --mixup/--cutmix"), std::string::npos) << lin.out;
}

TEST_F(TrainMixWorkers, WorkersGiveBitIdenticalTraining) {
  const std::string opts = "--augment rrc,flip --mixup 0.8 --cutmix 1.0 --mixup-mode elem --workers ";
  CliResult one = train("lora", "w1", opts + "1");
  ASSERT_EQ(one.status, 0) << one.err;
  const std::string a = file("w1", "adapter-last.safetensors");
  ASSERT_FALSE(a.empty());
  for (const std::string w : {"2", "3"}) {
    CliResult many = train("lora", "w" + w, opts + w);
    ASSERT_EQ(many.status, 0) << many.err;
    EXPECT_TRUE(file("w" + w, "adapter-last.safetensors") == a) << "adapters differ between --workers 1 and " << w;
    EXPECT_TRUE(file("w" + w, "metrics.jsonl").size() > 0);
  }
  // and the adapter does depend on the seed-driven augmentation (a different seed differs)
  CliResult other = train("lora", "w1s", opts + "1", 5);
  ASSERT_EQ(other.status, 0) << other.err;
  EXPECT_FALSE(file("w1s", "adapter-last.safetensors") == a);
}

// --resume checks the mixing and layer decay of the run (peft/train/run_settings.h), not --workers.
TEST_F(TrainMixWorkers, ResumeChecksMixupAndLayerDecayButNotWorkers) {
  ASSERT_EQ(train("lora", "rs", "--mixup 0.8 --layer-decay 0.9").status, 0);
  CliResult other_mix = train("lora", "rs", "--mixup 0.5 --layer-decay 0.9 --resume");
  EXPECT_EQ(other_mix.status, 2);
  EXPECT_NE(other_mix.err.find("--resume: --mixup/--cutmix differs"), std::string::npos) << other_mix.err;
  CliResult other_decay = train("lora", "rs", "--mixup 0.8 --resume");
  EXPECT_EQ(other_decay.status, 2);
  EXPECT_NE(other_decay.err.find("--resume: --layer-decay differs"), std::string::npos) << other_decay.err;
  CliResult workers = train("lora", "rs", "--mixup 0.8 --layer-decay 0.9 --workers 2 --resume");
  EXPECT_EQ(workers.status, 0) << workers.err;
  EXPECT_NE(workers.out.find("the run is finished"), std::string::npos) << workers.out;
}

TEST_F(TrainMixWorkers, LayerDecayOneChangesNothingAndHalfDoes) {
  CliResult none = train("full", "ld_none", "");
  CliResult one = train("full", "ld_one", "--layer-decay 1");
  CliResult half = train("full", "ld_half", "--layer-decay 0.5");
  ASSERT_EQ(none.status, 0) << none.err;
  ASSERT_EQ(one.status, 0) << one.err;
  ASSERT_EQ(half.status, 0) << half.err;
  EXPECT_TRUE(file("ld_none", "adapter-last.safetensors") == file("ld_one", "adapter-last.safetensors"));
  EXPECT_FALSE(file("ld_none", "adapter-last.safetensors") == file("ld_half", "adapter-last.safetensors"));
  EXPECT_NE(half.out.find("layer decay 0.5: lr x0.5^(3 - layer)"), std::string::npos) << half.out;
}

TEST_F(TrainMixWorkers, BadValuesAreOneLineErrors) {
  for (const auto& [extra, want] : std::vector<std::pair<std::string, std::string>>{
           {"--layer-decay 1.5", "--layer-decay: must be in (0, 1]"},
           {"--workers 0", "--workers: must be >= 1"},
           {"--mixup -1", "--mixup: must be finite and >= 0"},
           {"--mixup 1 --mixup-mode rows", "--mixup-mode: unknown mode 'rows' (batch | pair | elem)"},
           {"--cutmix 1 --mixup-switch-prob 2", "--mixup-switch-prob: must be in [0, 1]"}}) {
    CliResult r = train("lora", "bad", extra);
    EXPECT_EQ(r.status, 1) << extra << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("peft: error: " + want, 0), 0u) << extra << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
