// `peft bench` as a library call: one training step or one inference batch of a ViT with a PEFT
// method, timed with the model shapes, batch, loss, optimizer and FLOP count of the PyTorch peer
// ../bench/torch_vit_bench.py `one`, plus the sgemm rate on the step's GEMM shapes and the
// machine's FMA peak, so that the two programs print comparable JSON lines.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "peft/gemm_probe.h"

namespace peft {

struct BenchRequest {
  std::string config = "tiny";  // tiny | base: the script's CONFIGS (presets bench-tiny, bench-base)
  std::string method;           // a vision method or a script mode name (vpt = vpt-deep)
  std::string phase = "train";  // train (forward, cross-entropy, backward, AdamW) | infer (no-grad forward)
  int64_t prompts = 10;         // M, for the methods that read --prompts (0: the linear probe)
  int64_t warmup = 0, steps = 1;
  bool gemm_probe = true;
  bool merged = false;  // mergeable method, infer: fold the adapters and time the plain ViT that results
  // train: activation checkpointing per block (nn::VisionTransformer::checkpoint_activations):
  // less memory, one more block forward per step (the FLOP count stays the script's, without it)
  bool checkpoint_activations = false;
  uint64_t seed = 0;
};

struct BenchResult {
  BenchRequest request;
  std::string method;  // canonical name (vpt -> vpt-deep)
  int64_t M = 0;       // prompts as the script reports them: 0 for methods without prompts
  int64_t batch = 0;
  std::vector<double> step_s;  // each timed step
  double median_s = 0, min_s = 0, mean_s = 0;
  // FLOPs per step: the script's formula where it has one for the method (script_flops.h), else
  // the GEMM FLOPs the step counted. flops_from_script says which.
  double flops_per_step = 0;
  bool flops_from_script = false;
  double gemm_flops_counted_per_step = 0;  // what blas::gemm ran per timed step
  int64_t trainable = 0, params = 0;
  double rss_build_mb = 0, peak_rss_mb = 0, peak_tensor_mb = 0;
  double merged_max_abs_diff = -1;  // --merged: logits of the folded plain ViT vs the adapter model
  std::vector<GemmRate> gemm_rates;  // empty without the probe
  double gemm_gflops = 0;            // FLOP-weighted over gemm_rates
  int peak_threads = 0;
  double peak_avx2 = 0, peak_avx512 = 0;  // FMA peak GFLOP/s; 0 where the CPU lacks the ISA
  double gflops() const { return flops_per_step / median_s / 1e9; }
  double peak_share() const;  // gflops() over the best FMA peak (0 when none)
};

// Builds the model of the bench shapes with the method (seeded: weights `seed`, method tensors
// seed + 1, images and labels seed + 2), runs `warmup` untimed and `steps` timed steps and
// measures. Throws MethodError for an unknown method, bad method options or --merged with a
// training phase or a method that does not fold; ValueError for steps < 1, warmup < 0, prompts < 0.
BenchResult run_bench(const BenchRequest& req);

// The script's JSON keys (and ours: counters, peaks, the probe), in the order `peft bench --json`
// prints them.
nlohmann::ordered_json bench_json(const BenchResult& r);
// The readable lines: the step, the FMA peak, the sgemm probe (when it ran).
std::string format_bench(const BenchResult& r);

}  // namespace peft
