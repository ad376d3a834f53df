// run_bench: the model of the bench shapes, the --merged fold, the timed step loop, counters and
// peaks, the FLOP count, the sgemm probe and the FMA peak (see bench.h).
#include "peft/bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/blas.h"
#include "core/counters.h"
#include "core/cpu_peak.h"
#include "core/error.h"
#include "core/process_stats.h"
#include "core/random.h"
#include "core/threads.h"
#include "nn/optim/optimizer.h"
#include "nn/vit.h"
#include "peft/merge.h"
#include "peft/method.h"
#include "peft/script_flops.h"

namespace peft {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);  // Python's statistics.median
}

void check_request(const BenchRequest& req, const std::string& method) {
  if (!is_vision_method(method)) throw MethodError(fmt::format("--method: unknown method '{}'", req.method));
  if (req.steps < 1) throw ValueError(fmt::format("--steps: must be >= 1 (got {})", req.steps));
  if (req.warmup < 0) throw ValueError(fmt::format("--warmup: must be >= 0 (got {})", req.warmup));
  if (req.prompts < 0) throw ValueError(fmt::format("--prompts: must be >= 0 (got {})", req.prompts));
  if (req.merged && (req.phase != "infer" || !vision_method(method).mergeable))
    throw MethodError(fmt::format("--merged: needs --phase infer and a mergeable method (ssf, lora); got {} {}", method,
                                  req.phase));
}

// The timed model: the method's model, or with --merged the plain ViT its folded weights load into.
struct BenchModel {
  std::unique_ptr<nn::VisionTransformer> vit, plain;
  nn::VisionTransformer& timed() { return plain ? *plain : *vit; }
};

// --merged: a deployed SSF/LoRA model is a plain ViT with folded weights. Give the adapters random
// values (LoRA's B starts at 0, which would make the fold trivial), fold them, load the plain
// state dict into a ViT without slots; returns the largest logit difference of the two.
double fold_into_plain(BenchModel& m, const nn::ViTConfig& c, const Tensor& x, uint64_t seed) {
  nn::VisionTransformer& vit = *m.vit;
  Generator adapter_gen(seed + 4);
  for (auto& [name, t] : vit.named_parameters())
    if (t.requires_grad() && name.rfind("head.", 0) != 0) {
      NoGradGuard ng;
      t.copy_(add(t, randn(t.sizes(), adapter_gen, t.dtype(), 0.0, 0.02)));
    }
  vit.eval();
  Tensor before;
  {
    NoGradGuard ng;
    before = vit.forward(x);
  }
  merge_adapters(vit);
  m.plain = std::make_unique<nn::VisionTransformer>(c, seed);
  std::map<std::string, Tensor> sd;
  for (auto& [n, t] : plain_state_dict(vit)) sd[n] = t;
  m.plain->load_state_dict(sd);
  m.plain->eval();
  NoGradGuard ng;
  return max_abs_diff(m.plain->forward(x), before);
}

// Runs `warmup` untimed and `steps` timed steps; fills the times, counters and peaks.
void time_steps(nn::VisionTransformer& model, const Tensor& x, const Tensor& y, bool train, const BenchRequest& req,
                BenchResult& r) {
  std::unique_ptr<nn::AdamW> opt;
  if (train) {
    model.train();
    // The script: AdamW(lr=1e-4, weight_decay=0.05) on every trainable tensor. param_groups
    // exempts 1-d tensors from decay; that changes no cost worth measuring.
    opt = std::make_unique<nn::AdamW>(nn::param_groups(model.named_parameters(), 0.05), 1e-4);
  } else {
    model.eval();
  }
  auto step = [&] {
    if (train) {
      // The script's backward(); step(); zero_grad(set_to_none) with the same AdamW math, fused:
      // each tensor is updated and its gradient freed as soon as backward has finished it, so a
      // full fine-tune never holds a model's worth of gradients (nor caches their blocks).
      opt->step_in_backward(cross_entropy(model.forward(x), y));
    } else {
      NoGradGuard ng;
      Tensor logits = model.forward(x);
    }
  };
  for (int64_t i = 0; i < req.warmup; ++i) step();
  reset_gemm_counters();
  reset_peak_bytes();
  for (int64_t i = 0; i < req.steps; ++i) {
    auto t0 = Clock::now();
    step();
    r.step_s.push_back(seconds_between(t0, Clock::now()));
  }
  r.gemm_flops_counted_per_step = static_cast<double>(counters().gemm_flops.load()) / static_cast<double>(req.steps);
  r.peak_rss_mb = peak_rss_mb();  // before the GEMM probe allocates its buffers
  // The most tensor memory alive at once during the timed steps (parameters included): what the
  // freeze masks decide; RSS adds the program, the libraries and the allocator's slack.
  r.peak_tensor_mb = static_cast<double>(counters().peak_bytes.load()) / (1024.0 * 1024.0);
  r.median_s = median(r.step_s);
  r.min_s = *std::min_element(r.step_s.begin(), r.step_s.end());
  double total = 0;
  for (double v : r.step_s) total += v;
  r.mean_s = total / static_cast<double>(r.step_s.size());
}

// The script's count where it has a rule for the method (script_flops.h); else what the GEMMs ran.
void count_flops(const nn::ViTConfig& c, const MethodOptions& opts, bool train, BenchResult& r) {
  const std::optional<std::string> mode = script_flops_mode(r.method);
  r.flops_from_script = mode.has_value();
  if (!mode) {
    r.flops_per_step = r.gemm_flops_counted_per_step;
    return;
  }
  ScriptFlopsInput in{c, r.batch, *mode, r.M, opts.rank, opts.bottleneck};
  r.flops_per_step =
      (train ? script_train_flops_per_image(in) : script_fwd_flops_per_image(in).sum()) * static_cast<double>(r.batch);
}

// Does anything outside the head train (gradients flow through the backbone), and do the block
// linears' weights train (weight-gradient GEMMs)? Asked of the model, whatever the method.
bool backbone_trains(nn::VisionTransformer& m) {
  for (auto& [name, t] : m.named_parameters())
    if (t.requires_grad() && name.rfind("head.", 0) != 0) return true;
  return false;
}
bool block_linears_train(const nn::VisionTransformer& m) {
  for (const auto& blk : m.block_list)
    if (blk->attn->qkv->weight.requires_grad() || blk->mlp->fc1->weight.requires_grad()) return true;
  return false;
}

// sgemm probe on the block linears' shapes (rows = batch x the tokens this run's blocks see), with
// the step's rules: no backbone backward for a linear probe, weight gradients only when the block
// weights train.
void run_probe(nn::VisionTransformer& model, bool train, uint64_t seed, BenchResult& r) {
  const nn::ViTConfig& c = model.cfg;
  const int64_t tokens = 1 + c.num_patches() + (model.token_hook ? model.token_hook->added_tokens() : 0);
  Generator probe_gen(seed + 3);
  r.gemm_rates = probe_gemm(c, r.batch * tokens, train && backbone_trains(model), train && block_linears_train(model),
                            probe_gen);
  r.gemm_gflops = flop_weighted_gflops(r.gemm_rates);
}

}  // namespace

double BenchResult::peak_share() const {
  const double best = std::max(peak_avx2, peak_avx512);
  return best > 0 ? gflops() / best : 0.0;
}

BenchResult run_bench(const BenchRequest& req) {
  BenchResult r;
  r.request = req;
  r.method = method_from_script_mode(req.method);
  check_request(req, r.method);
  const nn::ViTConfig c = nn::load_vit_config(req.config == "tiny" ? "bench-tiny" : "bench-base");
  r.batch = req.config == "tiny" ? 32 : 8;

  // M as the script reports it: the prompt count for prompt methods, 0 otherwise. With M = 0 a
  // prompt method has nothing of its own to train (the script then builds no prompts and only
  // the head trains): that is the linear probe.
  const bool prompts = vision_method(r.method).uses("prompts");
  r.M = prompts ? req.prompts : 0;
  MethodOptions opts;  // defaults = the script's: LoRA rank 8 on attn.qkv with alpha = r
  apply_method_defaults(r.method, opts, {});  // and each method's own (adapter: bottleneck 8)
  opts.prompts = r.M;
  BenchModel m;
  m.vit = build_model(c, prompts && r.M == 0 ? "linear" : r.method, opts, c.num_classes, req.seed);
  r.params = m.vit->num_parameters(false);
  r.trainable = m.vit->num_parameters(true);
  m.vit->checkpoint_activations = req.checkpoint_activations;

  Generator data_gen(req.seed + 2);  // random images and labels, seeded
  Tensor x = randn({r.batch, c.in_chans, c.image_size, c.image_size}, data_gen);
  if (req.merged) r.merged_max_abs_diff = fold_into_plain(m, c, x, req.seed);
  std::vector<int64_t> labels(static_cast<size_t>(r.batch));
  for (auto& l : labels) l = static_cast<int64_t>(data_gen.next_u64() % static_cast<uint64_t>(c.num_classes));
  const Tensor y = from_vector_i64(labels, {r.batch});
  r.rss_build_mb = peak_rss_mb();

  const bool train = req.phase == "train";
  time_steps(m.timed(), x, y, train, req, r);
  count_flops(c, opts, train, r);
  if (req.gemm_probe) run_probe(m.timed(), train, req.seed, r);
  // The machine's float32 FMA peak on this run's thread count, measured now (register-only loops,
  // core/cpu_peak.h): the step's GFLOP/s as a share of the best ISA this CPU has.
  r.peak_threads = num_threads();
  r.peak_avx2 = cpu::fma_peak_gflops(cpu::Isa::avx2, r.peak_threads, 0.1);
  r.peak_avx512 = cpu::fma_peak_gflops(cpu::Isa::avx512, r.peak_threads, 0.1);
  return r;
}

nlohmann::ordered_json bench_json(const BenchResult& r) {
  auto or_null = [](double v) { return v > 0 ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); };
  const BenchRequest& q = r.request;
  nlohmann::ordered_json s = {{"config", q.config},
                              {"mode", r.method},
                              {"M", r.M},
                              {"threads", num_threads()},
                              {"phase", q.phase},
                              {"precision", blas::precision_name(blas::precision())},
                              {"gemm_backend", blas::backend_name()},
                              {"batch", r.batch},
                              {"median_s", r.median_s},
                              {"min_s", r.min_s},
                              {"mean_s", r.mean_s},
                              {"n_steps", q.steps},
                              {"warmup", q.warmup},
                              {"gflop_per_step", r.flops_per_step / 1e9},
                              {"gflops", r.gflops()},
                              {"gemm_gflop_counted_per_step", r.gemm_flops_counted_per_step / 1e9},
                              {"trainable", r.trainable},
                              {"params", r.params},
                              {"rss_build_mb", r.rss_build_mb},
                              {"peak_rss_mb", r.peak_rss_mb},
                              {"peak_tensor_mb", r.peak_tensor_mb},
                              {"peak_gflops_avx2", or_null(r.peak_avx2)},
                              {"peak_gflops_avx512", or_null(r.peak_avx512)},
                              {"peak_share", or_null(r.peak_share())},
                              {"checkpoint_activations", q.checkpoint_activations}};
  if (q.merged) {
    s["merged"] = true;
    s["merged_max_abs_diff"] = r.merged_max_abs_diff;
  }
  if (q.gemm_probe) {
    s["sgemm_gflops"] = r.gemm_gflops;
    nlohmann::ordered_json shapes = nlohmann::ordered_json::object();
    for (auto& g : r.gemm_rates) shapes[g.name] = {{"M", g.M}, {"N", g.N}, {"K", g.K}, {"gflops", g.gflops}};
    s["sgemm_shapes"] = shapes;
  }
  return s;
}

std::string format_bench(const BenchResult& r) {
  const BenchRequest& q = r.request;
  std::string out = fmt::format(
      "bench {} {} M={} threads={} {} batch {}: median {:.1f} ms, min {:.1f} ms, {:.2f} GFLOP/step, {:.1f} GFLOP/s, "
      "{} / {} trainable, peak RSS {:.0f} MB (tensors {:.0f} MB){}\n",
      q.config, r.method, r.M, num_threads(), q.phase, r.batch, r.median_s * 1e3, r.min_s * 1e3, r.flops_per_step / 1e9,
      r.gflops(), r.trainable, r.params, r.peak_rss_mb, r.peak_tensor_mb,
      q.checkpoint_activations ? ", activations checkpointed per block" : "");
  out += fmt::format(
      "FMA peak ({} threads, register-only f32 loops, measured now): AVX2 {}, AVX-512 {}; step at {:.0f}% of the {} peak\n",
      r.peak_threads, r.peak_avx2 > 0 ? fmt::format("{:.1f} GFLOP/s", r.peak_avx2) : std::string("n/a"),
      r.peak_avx512 > 0 ? fmt::format("{:.1f} GFLOP/s", r.peak_avx512) : std::string("n/a (not on this CPU)"),
      100.0 * r.peak_share(), r.peak_avx512 > 0 ? "AVX-512" : "AVX2");
  if (q.gemm_probe) {
    std::string parts;
    for (auto& g : r.gemm_rates)
      parts += fmt::format("{}{} [{}x{}x{}] {:.1f}", parts.empty() ? "" : ", ", g.name, g.M, g.N, g.K, g.gflops);
    out += fmt::format("sgemm ({}, {} threads, the step's GEMM shapes [MxNxK]): {} GFLOP/s; FLOP-weighted {:.1f} GFLOP/s; "
                       "whole step at {:.0f}% of it\n",
                       blas::backend_name(), num_threads(), parts, r.gemm_gflops, 100.0 * r.gflops() / r.gemm_gflops);
  }
  return out;
}

}  // namespace peft
