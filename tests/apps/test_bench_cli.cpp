// `peft bench` through the built program: the JSON line has torch_vit_bench.py's keys with sane
// values (shapes, parameter counts and the analytic FLOP count are checked exactly), and bad
// usage exits 2.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/apps/cli_util.h"

namespace peft {
namespace {

using testing::run_peft;

// The last non-empty line of stdout, parsed (cli.md: --json puts the summary there).
nlohmann::json last_json_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nlohmann::json::parse(nl == std::string::npos ? s : s.substr(nl + 1));
}

TEST(BenchCli, LinearInferTinyPrintsTheTorchKeys) {
  auto r = run_peft("bench --config tiny --method linear --phase infer --threads 1 --warmup 0 --steps 1 --json", "bench_linear");
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j;
  ASSERT_NO_THROW(j = last_json_line(r.out)) << r.out;
  for (const char* k : {"config", "mode", "M", "threads", "phase", "batch", "median_s", "min_s", "gflop_per_step", "gflops",
                        "trainable", "params", "peak_rss_mb"})
    EXPECT_TRUE(j.contains(k)) << "missing key " << k << " in " << j.dump();
  EXPECT_EQ(j["config"], "tiny");
  EXPECT_EQ(j["mode"], "linear");
  EXPECT_EQ(j["M"], 0);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["phase"], "infer");
  EXPECT_EQ(j["batch"], 32);
  // Same model as torch_vit_bench.py tiny: 5,362,762 parameters, the head (192*10 + 10) trains.
  EXPECT_EQ(j["params"], 5362762);
  EXPECT_EQ(j["trainable"], 1930);
  // The script's forward FLOPs: 0.730215168 GFLOP per image x 32 images.
  EXPECT_NEAR(j["gflop_per_step"].get<double>(), 23.366885376, 1e-9);
  const double med = j["median_s"], mn = j["min_s"];
  EXPECT_GT(mn, 0.0);
  EXPECT_LE(mn, med);  // one step: equal
  EXPECT_LT(med, 120.0);
  EXPECT_NEAR(j["gflops"].get<double>(), j["gflop_per_step"].get<double>() / med, 1e-6 * j["gflops"].get<double>());
  EXPECT_GT(j["peak_rss_mb"].get<double>(), 20.0);  // the model alone is 21 MB of float32
  EXPECT_LT(j["peak_rss_mb"].get<double>(), 4000.0);
  // The GEMMs the step actually ran (counted by blas::gemm) are the analytic count's bulk:
  // block linears, patch embedding and head are GEMMs; attention may or may not be.
  const double counted = j["gemm_gflop_counted_per_step"];
  EXPECT_GT(counted, 0.85 * j["gflop_per_step"].get<double>());
  EXPECT_LT(counted, 1.01 * j["gflop_per_step"].get<double>());
  // The sgemm probe ran on the block linears' shapes: rows = 32 images x 65 tokens.
  ASSERT_TRUE(j.contains("sgemm_shapes"));
  EXPECT_EQ(j["sgemm_shapes"]["mlp.fc1"]["M"], 32 * 65);
  EXPECT_EQ(j["sgemm_shapes"]["mlp.fc1"]["N"], 768);
  EXPECT_GT(j["sgemm_gflops"].get<double>(), 0.0);
  // A readable line precedes the JSON.
  EXPECT_NE(r.out.find("bench tiny linear"), std::string::npos) << r.out;
}

TEST(BenchCli, TrainStepFlopsFollowTheScript) {
  // vpt (the script's name) = vpt-deep; M = 1 keeps it quick. The script's formula for vpt, M=1:
  // T = 66 tokens; fwd/img = pe + 24*T*D^2*L + 4*T^2*D*L + head; train = fwd + lin + 2 att + 2 head.
  auto r = run_peft("bench --config tiny --method vpt --prompts 1 --phase train --threads 1 --warmup 0 --steps 1 "
                    "--no-gemm-probe --json",
                    "bench_vpt");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = last_json_line(r.out);
  EXPECT_EQ(j["mode"], "vpt-deep");
  EXPECT_EQ(j["M"], 1);
  EXPECT_EQ(j["phase"], "train");
  const double D = 192, L = 12, T = 66, Np = 64;
  const double pe = 2 * Np * 48 * D, lin = L * 2 * T * D * 12 * D, att = L * 2 * 2 * T * T * D, head = 2 * D * 10;
  const double expect = 32 * ((pe + lin + att + head) + lin + 2 * att + 2 * head);
  EXPECT_NEAR(j["gflop_per_step"].get<double>(), expect / 1e9, 1e-9);
  EXPECT_EQ(j["trainable"], 12 * 192 + 1930);  // vpt.prompts [12, 1, 192] + head
  EXPECT_FALSE(j.contains("sgemm_gflops"));
}

TEST(BenchCli, MergedLoraIsAPlainVitWithTheSameLogits) {
  auto r = run_peft("bench --config tiny --method lora --phase infer --merged --threads 1 --warmup 0 --steps 1 "
                    "--no-gemm-probe --json",
                    "bench_merged");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = last_json_line(r.out);
  EXPECT_EQ(j["merged"], true);
  EXPECT_GE(j["merged_max_abs_diff"].get<double>(), 0.0);
  EXPECT_LT(j["merged_max_abs_diff"].get<double>(), 1e-4);  // folded in float64, rounded once
  // The timed model is the plain ViT: the GEMMs it ran are exactly the plain forward's.
  EXPECT_NEAR(j["gemm_gflop_counted_per_step"].get<double>(), j["gflop_per_step"].get<double>(),
              0.15 * j["gflop_per_step"].get<double>());
  // Only with inference and a mergeable method.
  auto bad = run_peft("bench --config tiny --method lora --phase train --merged --threads 1 --warmup 0 --steps 1",
                      "bench_merged_train");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--merged"), std::string::npos) << bad.err;
  bad = run_peft("bench --config tiny --method vpt-deep --phase infer --merged --threads 1 --warmup 0 --steps 1",
                 "bench_merged_vpt");
  EXPECT_EQ(bad.status, 2);
}

TEST(BenchCli, BadUsageExitsTwo) {
  auto r = run_peft("bench --config tiny --method nosuch --phase infer --threads 1 --warmup 0 --steps 1", "bench_bad");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("peft: error:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nosuch"), std::string::npos) << r.err;
  r = run_peft("bench --config huge --method linear --phase infer --threads 1 --warmup 0 --steps 1", "bench_cfg");
  EXPECT_EQ(r.status, 2);
  r = run_peft("bench --config tiny --method linear --phase infer --threads 1 --warmup 0", "bench_nosteps");
  EXPECT_EQ(r.status, 2);  // --steps is required (cli.md)
  r = run_peft("bench --config tiny --method linear --phase infer --threads 1 --warmup 0 --steps 0", "bench_zero");
  EXPECT_EQ(r.status, 1);  // a bad value
  EXPECT_NE(r.err.find("--steps"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace peft
