// `peft compare`, `peft sweep` and `peft attention` end to end through the built program on a
// tiny config (image 16, patch 4, dim 16, depth 2, heads 2): exit codes, tables, the CSV, JSON
// and PNG files they write, and the numbers in them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "data/image.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/vit.h"
#include "peft/method.h"
#include "tests/apps/cli_util.h"

namespace peft {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::run_peft;

struct Tiny {
  fs::path dir;
  std::string config, weights;
  Tiny() {
    dir = fs::temp_directory_path() / ("peft_compare_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
    config = (dir / "tiny.json").string();
    std::ofstream(config) << R"({"arch": "vit", "style": "timm", "image_size": 16, "patch_size": 4, "in_chans": 3,
      "dim": 16, "depth": 2, "heads": 2, "mlp_ratio": 4.0, "num_classes": 3})";
    weights = (dir / "base.safetensors").string();
    nn::VisionTransformer vit(nn::load_vit_config(config), 5);
    nn::save_weights(vit, weights);
  }
  ~Tiny() { fs::remove_all(dir); }
  std::string operator/(const std::string& f) const { return (dir / f).string(); }
};

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  for (std::string f; std::getline(ss, f, ',');) out.push_back(f);
  if (!line.empty() && line.back() == ',') out.push_back("");
  return out;
}

nlohmann::json last_json(const std::string& out) { return nlohmann::json::parse(lines(out).back()); }

TEST(CompareCli, TableCsvAndJson) {
  Tiny t;
  auto r = run_peft("compare --threads 1 --config " + t.config + " --weights " + t.weights +
                    " --methods linear,vpt-deep,cvpt,lora --prompts 4 --batch 2 --steps 1 --csv " + (t / "c.csv") +
                    " --json-out " + (t / "c.json") + " --json", "compare");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("MFLOPs/img"), std::string::npos);
  const auto csv = lines(read_file(t / "c.csv"));
  ASSERT_EQ(csv.size(), 5u);
  EXPECT_EQ(fields(csv[1])[0], "linear");
  EXPECT_EQ(fields(csv[2])[0], "vpt-deep");
  EXPECT_EQ(fields(csv[2])[1], "4");
  const nlohmann::json j = last_json(r.out);
  EXPECT_EQ(nlohmann::json::parse(read_file(t / "c.json")), j);  // --json-out holds the --json summary
  ASSERT_EQ(j["methods"].size(), 4u);
  const auto& lin = j["methods"][0];
  const auto& deep = j["methods"][1];
  EXPECT_EQ(lin["trainable"], 3 * 16 + 3);  // the head only
  EXPECT_GT(deep["flops_per_image"].get<int64_t>(), lin["flops_per_image"].get<int64_t>());
  EXPECT_EQ(deep["trainable"], 3 * 16 + 3 + 2 * 4 * 16);  // head + vpt.prompts [L, M, D]
  for (const auto& m : j["methods"]) {
    EXPECT_GT(m["train_step_s"].get<double>(), 0);
    EXPECT_GT(m["train_peak_bytes"].get<int64_t>(), 0);
  }
}

TEST(CompareCli, AllMethodsByDefault) {
  Tiny t;
  auto r = run_peft("compare --threads 1 --config " + t.config + " --batch 2 --steps 1 --prompts 2 --rank 2 --bottleneck 4 --json", "compare_all");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(last_json(r.out)["methods"].size(), peft::vision_method_registry().size());
}

TEST(CompareCli, Sweep) {
  Tiny t;
  auto r = run_peft("sweep --threads 1 --config " + t.config + " --weights " + t.weights +
                    " --methods vpt-deep,cvpt --prompts 1,8 --data procedural:shapes --epochs 1 --train-size 16 "
                    "--val-size 16 --batch 4 --steps 1 --out " + (t / "sw"), "sweep");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto csv = lines(read_file(t / "sw/sweep.csv"));
  ASSERT_EQ(csv.size(), 6u);  // header, the M = 0 baseline, 2 methods x 2 counts
  EXPECT_EQ(fields(csv[1])[0], "linear");
  EXPECT_EQ(fields(csv[1])[1], "0");
  int64_t prev_flops = 0;
  for (size_t i = 1; i < csv.size(); ++i) {
    const auto f = fields(csv[i]);
    ASSERT_EQ(f.size(), 10u) << csv[i];
    const double top1 = std::stod(f[9]);
    EXPECT_GE(top1, 0.0);
    EXPECT_LE(top1, 100.0);
    if (i == 2 || i == 3) {  // vpt-deep, M = 1 then 8: FLOPs grow
      EXPECT_GT(std::stoll(f[3]), prev_flops);
    }
    if (i <= 3) prev_flops = std::stoll(f[3]);
  }
  for (const char* png : {"flops.png", "memory.png", "step_time.png", "accuracy.png"}) {
    const data::Image img = data::load_image(t / ("sw/" + std::string(png)), 3);
    EXPECT_EQ(img.W, 640) << png;
    EXPECT_EQ(img.H, 420) << png;
  }
}

TEST(CompareCli, SweepWithoutDataHasNoAccuracy) {
  Tiny t;
  auto r = run_peft("sweep --threads 1 --config " + t.config + " --methods cvpt --prompts 2 --batch 2 --steps 1 --out " + (t / "sw") + " --json", "sweep2");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(fs::exists(t / "sw/accuracy.png"));
  EXPECT_TRUE(fs::exists(t / "sw/flops.png"));
  const auto j = last_json(r.out);
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_TRUE(j["rows"][1]["top1"].is_null());
}

TEST(CompareCli, Attention) {
  Tiny t;
  auto r = run_peft("attention --threads 1 --config " + t.config + " --weights " + t.weights + " --prompts 2,6 --batch 3 --out " +
                    (t / "at") + " --json", "attention");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto csv = lines(read_file(t / "at/attention.csv"));
  ASSERT_EQ(csv.size(), 1u + 2 * 3);  // layers x {0, 2, 6}
  for (size_t i = 1; i < csv.size(); ++i) {
    const auto f = fields(csv[i]);
    ASSERT_EQ(f.size(), 3u);
    const double share = std::stod(f[2]);
    EXPECT_GE(share, 0.0);
    EXPECT_LE(share, 1.0);
    if (f[1] == "0") EXPECT_EQ(share, 0.0);
    else EXPECT_GT(share, 0.0);  // softmax: every prompt key gets some mass
  }
  const auto j = last_json(r.out);
  EXPECT_EQ(j["prompts"], nlohmann::json::parse("[0, 2, 6]"));
  ASSERT_EQ(j["share"].size(), 2u);
  for (const auto& row : j["share"]) EXPECT_LT(row[1].get<double>(), row[2].get<double>());  // more prompts, more mass
  const data::Image img = data::load_image(t / "at/attention.png", 3);
  EXPECT_GT(img.W, 3 * 40);
  EXPECT_GT(img.H, 2 * 40);
}

TEST(CompareCli, AttentionTrained) {
  Tiny t;
  auto r = run_peft("attention --threads 1 --config " + t.config + " --weights " + t.weights +
                    " --prompts 3 --data procedural:shapes --epochs 1 --train-size 8 --batch 4", "attention2");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("trained 1 epochs"), std::string::npos);
  EXPECT_NE(r.out.find("M=3"), std::string::npos);
}

TEST(CompareCli, UsageErrors) {
  Tiny t;
  auto r = run_peft("compare --threads 1 --config " + t.config + " --methods linear,nope", "bad1");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("unknown method 'nope'"), std::string::npos) << r.err;
  r = run_peft("sweep --threads 1 --config " + t.config + " --methods lora", "bad2");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no prompts"), std::string::npos) << r.err;
  r = run_peft("sweep --threads 1 --config " + t.config + " --prompts 1,x", "bad3");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--prompts: 'x'"), std::string::npos) << r.err;
  r = run_peft("attention --threads 1 --config " + t.config + " --weights " + t.weights + " --epochs 1", "bad4");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--epochs needs --data"), std::string::npos) << r.err;
  r = run_peft("compare --threads 1 --config " + t.config + " --batch 0", "bad5");
  EXPECT_EQ(r.status, 2);
  r = run_peft("attention --threads 1 --config " + t.config + " --weights " + (t / "missing.safetensors"), "bad6");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("peft: error: ", 0), 0u);
}

}  // namespace
}  // namespace peft
