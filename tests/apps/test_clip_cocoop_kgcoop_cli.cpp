// `peft check` for cocoop and kgcoop (the real binary) equals the PyTorch reference fixture
// (tools/reference/clip_reference_cocoop_kgcoop.py), --kg-texts / --kg-weight are read, bad flags
// are one-line errors; `peft clip-train --method cocoop|kgcoop` runs on clip-micro with procedural
// data and writes the method's adapter.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/tensor.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "core/io/safetensors.h"
#include "tests/apps/cli_util.h"

namespace peft {
namespace {

namespace fs = std::filesystem;
using testing::run_peft;
using testing::TempDir;

const std::string kFix = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip-cocoop-kgcoop/";

std::string check_args(const std::string& method, const std::string& extra, const std::string& out) {
  return "check --config " + kFix + "config.json --weights " + kFix + "weights.safetensors --method " + method +
         " --inputs " + kFix + "inputs.safetensors --texts " + kFix + "texts.txt --out " + out + " " + extra;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.to_vector<float>()) m = std::max(m, std::abs(double(v)));
  return m;
}

double max_diff(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) m = std::max(m, std::abs(double(x[i]) - y[i]));
  return m;
}

void expect_reference(const std::string& out, const std::string& expected) {
  SCOPED_TRACE(expected);
  auto got = nn::read_tensors(out), exp = nn::read_tensors(kFix + expected);
  std::vector<std::string> want, have;
  for (auto& [n, _] : exp)
    if (n.rfind("grad.", 0) == 0) want.push_back(n);
  for (auto& [n, _] : got)
    if (n.rfind("grad.", 0) == 0) have.push_back(n);
  EXPECT_EQ(have, want);  // exactly the trainable tensors; nothing of the frozen CLIP
  for (const std::string n : {"logits", "loss"}) EXPECT_LE(max_diff(got.at(n), exp.at(n)), 1e-4 + 1e-3 * max_abs(exp.at(n))) << n;
  for (const std::string& n : want) {
    if (got.count(n)) {
      EXPECT_LE(max_diff(got.at(n), exp.at(n)), 1e-4 + 1e-3 * max_abs(exp.at(n))) << n;
    }
  }
}

TEST(ClipCoCoOpKgCoOpCli, CheckMatchesTheReference) {
  TempDir dir("peft_cocoop_cli");
  const std::string co = dir / "cocoop.safetensors";
  auto r = run_peft(check_args("cocoop", "--adapter " + kFix + "adapter_cocoop.safetensors", co), "cocoop");
  ASSERT_EQ(r.status, 0) << r.err;
  expect_reference(co, "expected_cocoop.safetensors");
  EXPECT_EQ(SafetensorsFile::open(co).metadata().at("method"), "cocoop");
  // KgCoOp: the loss includes w * (1 - mean cos); --kg-texts and --kg-weight are read.
  const std::string kg = dir / "kgcoop.safetensors";
  r = run_peft(check_args("kgcoop", "--adapter " + kFix + "adapter_kgcoop.safetensors", kg), "kgcoop");
  ASSERT_EQ(r.status, 0) << r.err;
  expect_reference(kg, "expected_kgcoop.safetensors");
  const std::string kg2 = dir / "kgcoop_kg.safetensors";
  r = run_peft(check_args("kgcoop",
                          "--adapter " + kFix + "adapter_kgcoop.safetensors --kg-texts " + kFix + "kg_texts.txt --kg-weight 2.5",
                          kg2),
               "kgcoop2");
  ASSERT_EQ(r.status, 0) << r.err;
  expect_reference(kg2, "expected_kgcoop-kg.safetensors");
  EXPECT_EQ(SafetensorsFile::open(kg2).metadata().at("kg_weight"), "2.5");
}

TEST(ClipCoCoOpKgCoOpCli, BadFlagsAreOneLineErrors) {
  TempDir dir("peft_cocoop_cli");
  const std::string out = dir / "bad.safetensors";
  const std::string two = dir / "two_lines.txt";
  std::ofstream(two) << "a red circle\na blue square\n";
  const std::string small = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip/";
  struct Row {
    std::string args;
    int code;
    std::vector<std::string> fragments;
  };
  const std::vector<Row> rows = {
      {check_args("kgcoop", "--kg-texts " + two, out), 1, {"two_lines.txt", "texts.txt", "2 prompts"}},
      {check_args("kgcoop", "--kg-texts " + (dir / "missing.txt"), out), 1, {"missing.txt"}},
      {check_args("coop", "--kg-texts " + two, out), 1, {"--kg-texts", "kgcoop"}},
      {check_args("kgcoop", "--kg-weight -1", out), 1, {"--kg-weight"}},
      {check_args("cocoop", "--prompts 0", out), 2, {"--prompts"}},
      {check_args("cocoop", "--prompts 6", out), 1, {"cocoop", "line 3", "EOT"}},
      {"check --config " + small + "config.json --weights " + small + "weights.safetensors --method cocoop --prompts 2 "
       "--inputs " + small + "inputs.safetensors --texts " + kFix + "texts.txt --out " + out,
       1, {"cocoop", "embed_dim 8"}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.args);
    auto r = run_peft(row.args, "bad");
    EXPECT_EQ(r.status, row.code) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    for (const std::string& f : row.fragments) EXPECT_NE(r.err.find(f), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
}

TEST(ClipCoCoOpKgCoOpCli, ClipTrainRunsOnClipMicro) {
  TempDir dir("peft_cocoop_cli");
  // Untrained clip-micro weights: the run's plumbing is under test, not its accuracy.
  nn::CLIP clip(nn::load_clip_config("clip-micro"), 3);
  const std::string weights = dir / "clip.safetensors";
  nn::save_weights(clip, weights);
  const std::string texts = dir / "prompts.txt", kg = dir / "kg.txt";
  {
    std::ofstream t(texts), k(kg);
    for (const char* c : {"red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"}) {
      t << "a photo of a " << c << " object\n";
      k << "a " << c << " shape\n";
    }
  }
  for (const std::string method : {"cocoop", "kgcoop"}) {
    SCOPED_TRACE(method);
    const std::string out = dir / ("train_" + method);
    std::string args = "clip-train --config clip-micro --weights " + weights + " --method " + method +
                       " --data procedural:colors --train-size 48 --val-size 16 --shots 2 --epochs 2 --batch 8 "
                       "--threads 1 --texts " + texts + " --out " + out + " --json";
    if (method == "kgcoop") args += " --kg-texts " + kg + " --kg-weight 4";
    auto r = run_peft(args, method);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("\"top1\""), std::string::npos) << r.out;
    auto adapter = SafetensorsFile::open(out + "/adapter.safetensors");
    const std::vector<std::string> want =
        method == "kgcoop"
            ? std::vector<std::string>{"coop.ctx"}
            : std::vector<std::string>{"cocoop.ctx", "cocoop.meta_net.linear1.bias", "cocoop.meta_net.linear1.weight",
                                       "cocoop.meta_net.linear2.bias", "cocoop.meta_net.linear2.weight"};
    std::vector<std::string> names = adapter.names();
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, want);
    EXPECT_EQ(adapter.metadata().at("method"), method);
    EXPECT_EQ(adapter.metadata().at("prompts"), "4");
    if (method == "kgcoop") {
      EXPECT_EQ(adapter.metadata().at("kg_weight"), "4");
    }
    // clip-eval rebuilds the head from the adapter (cocoop: u per image, no cached classifier).
    auto e = run_peft("clip-eval --config clip-micro --weights " + weights + " --adapter " + out +
                          "/adapter.safetensors --data procedural:colors --val-size 16 --threads 1",
                      method + "_eval");
    EXPECT_EQ(e.status, 0) << e.err;
  }
}

}  // namespace
}  // namespace peft
