// --checkpoint-activations (alias --grad-checkpointing) from the command line: pretrain and train
// write weights bit-identical to the same run without it (dropout and drop-path on: the recompute
// replays their draws), and bench reports the flag in its JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/apps/cli_util.h"

using namespace peft::testing;

namespace {

const char* kConfig = R"({"image_size": 16, "patch_size": 4, "dim": 16, "depth": 2, "heads": 2, "num_classes": 4,
  "drop_path": 0.2, "dropout": 0.1})";

std::string pretrain_args(const std::string& cfg, const std::string& out) {
  return "pretrain --config " + cfg + " --data procedural:shapes --train-size 48 --val-size 16 --epochs 1 --batch 8 " +
         "--augment flip --no-progress --threads 1 --seed 5 --out " + out;
}

TEST(CheckpointActivationsCli, PretrainAndTrainGiveTheSameWeights) {
  TempDir tmp("peft_ckpt_cli");
  const std::string cfg = tmp / "cfg.json";
  {
    std::ofstream(cfg) << kConfig;
  }
  auto plain = run_peft(pretrain_args(cfg, tmp / "plain"), "ckpt_plain");
  ASSERT_EQ(plain.status, 0) << plain.err;
  auto ckpt = run_peft(pretrain_args(cfg, tmp / "ckpt") + " --checkpoint-activations", "ckpt_on");
  ASSERT_EQ(ckpt.status, 0) << ckpt.err;
  EXPECT_EQ(plain.out.find("activations checkpointed"), std::string::npos);
  EXPECT_NE(ckpt.out.find("pretrain: activations checkpointed per block"), std::string::npos) << ckpt.out;
  const std::string w = read_file(tmp / "plain/weights.safetensors");
  ASSERT_FALSE(w.empty());
  EXPECT_TRUE(w == read_file(tmp / "ckpt/weights.safetensors")) << "pretrain weights differ";

  // Fine-tune with prompt dropout (vpt-deep) on top, timm's flag name.
  auto train = [&](const std::string& out, const std::string& extra) {
    return run_peft("train --weights " + (tmp / "plain/weights.safetensors") + " --config " + cfg +
                        " --method vpt-deep --prompts 2 --prompt-dropout 0.2 --data procedural:shapes --train-size 48 "
                        "--val-size 16 --epochs 1 --batch 8 --no-progress --threads 1 --seed 6 --out " +
                        out + extra,
                    "ckpt_train");
  };
  auto a = train(tmp / "ta", "");
  ASSERT_EQ(a.status, 0) << a.err;
  auto b = train(tmp / "tb", " --grad-checkpointing");
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_NE(b.out.find("train: activations checkpointed per block"), std::string::npos) << b.out;
  const std::string ad = read_file(tmp / "ta/adapter.safetensors");
  ASSERT_FALSE(ad.empty());
  EXPECT_TRUE(ad == read_file(tmp / "tb/adapter.safetensors")) << "adapters differ";
}

TEST(CheckpointActivationsCli, CompareMeasuresTheCheckpointedStep) {
  TempDir tmp("peft_ckpt_cmp");
  const std::string cfg = tmp / "cfg.json";
  {
    std::ofstream(cfg) << kConfig;
  }
  auto peak = [&](const std::string& extra) {
    auto r = run_peft("compare --threads 1 --config " + cfg + " --methods full,vpt-deep --prompts 2 --batch 4 --steps 1 --json" +
                          extra,
                      "ckpt_compare");
    EXPECT_EQ(r.status, 0) << r.err;
    std::string out = r.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    auto j = nlohmann::json::parse(out.substr(out.rfind('\n') + 1));  // --json: the last line
    std::vector<int64_t> peaks;
    for (auto& m : j["methods"]) peaks.push_back(m["train_peak_bytes"].get<int64_t>());
    return peaks;
  };
  const auto plain = peak(""), ckpt = peak(" --checkpoint-activations");
  ASSERT_EQ(plain.size(), 2u);
  ASSERT_EQ(ckpt.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_LT(ckpt[i], plain[i]) << "method " << i;  // tensor bytes: exact counters
}

TEST(CheckpointActivationsCli, BenchReportsTheFlag) {
  auto r = run_peft("bench --config tiny --method lora --phase train --threads 1 --warmup 0 --steps 1 --no-gemm-probe "
                    "--json --checkpoint-activations",
                    "ckpt_bench");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string last = r.out.substr(r.out.rfind('{'));
  auto j = nlohmann::json::parse(last);
  EXPECT_TRUE(j["checkpoint_activations"].get<bool>());
  EXPECT_NE(r.out.find("activations checkpointed per block"), std::string::npos);
}

}  // namespace
