// `peft bench` (cli.md): times one training step or one inference batch of a ViT with a PEFT
// method, with the same model shapes, batch, loss, optimizer and FLOP count as the PyTorch
// baseline ../bench/torch_vit_bench.py `one`, so that the two print comparable JSON lines.
// Beside it, it measures OpenBLAS sgemm on the model's main GEMM shapes (through blas::gemm), so
// the whole step's arithmetic rate can be read against what the machine's GEMM reaches.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <nlohmann/json.hpp>
#include <vector>

#include "apps/peft/commands.h"
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
#include "nn/config.h"
#include "nn/optim/optimizer.h"
#include "nn/vit.h"
#include "peft/merge.h"
#include "peft/method.h"

namespace peft::app {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);  // Python's statistics.median
}

struct BenchArgs {
  std::string config, method, phase;
  int64_t prompts = 10;
  int64_t warmup = 0, steps = 0;
  bool gemm_probe = true;
  bool merged = false;  // ssf / lora, infer: fold the adapters and time the plain ViT that results
};

// torch_vit_bench.py's mode names are accepted too; "vpt" there is VPT-deep.
std::string canonical_method(const std::string& m) { return m == "vpt" ? "vpt-deep" : m; }

// Prompt methods (vpt-*, cvpt, prefix): the registry says which read --prompts.
bool uses_prompts(const std::string& m) { return vision_method(m).uses("prompts"); }

// ---------------------------------------------------------------------------------------------
// Analytic FLOPs: a faithful C++ copy of torch_vit_bench.py fwd_flops_per_image and
// train_flops_per_image (2 FLOPs per multiply-add; matmuls, convs and attention only). Its modes
// map as: vpt-deep = "vpt", the rest by name. Methods the script does not have follow its rules:
//  - vpt-shallow: as "vpt" (the M prompt tokens run through every block, the prompts are input
//    to block 0, so data-gradients flow through the whole backbone);
//  - bitfit: as "ssf" (trainable biases everywhere: data-grads through every block linear, no
//    weight-grad GEMMs; a bias gradient is a sum, not a GEMM);
//  - adaptformer, adapter: their down/up projections are an extra term like "lora" (fwd 1x,
//    data-grad 1x, weight-grad 1x), with the backbone's data-grads as in "ssf";
//  - prefix: the M prefix keys/values add T*M columns to QK^T and AV (no projection; the
//    attention's backward as for "att"); the sequence keeps T = 1+N rows.
struct FwdFlops {
  double pe = 0, lin = 0, att = 0, head = 0, lora = 0, extra_lin = 0, extra_att = 0, adapter = 0;
  double sum() const { return pe + lin + att + head + lora + extra_lin + extra_att + adapter; }
};

FwdFlops fwd_flops_per_image(const nn::ViTConfig& c, int64_t batch, const std::string& mode, int64_t M,
                             const MethodOptions& o) {
  const double D = static_cast<double>(c.dim), depth = static_cast<double>(c.depth), p = static_cast<double>(c.patch_size);
  const double Np = static_cast<double>(c.num_patches());
  const bool prompt_tokens = mode == "vpt-deep" || mode == "vpt-shallow";
  const double T = 1 + Np + (prompt_tokens ? static_cast<double>(M) : 0.0);
  const double B = static_cast<double>(batch);
  const double r = static_cast<double>(o.rank), b = static_cast<double>(o.bottleneck);
  FwdFlops f;
  f.pe = 2 * Np * (static_cast<double>(c.in_chans) * p * p) * D;
  f.lin = depth * 2 * T * D * (3 * D + D + 4 * D + 4 * D);  // qkv, proj, fc1, fc2 = 24 T D^2
  f.att = depth * 2 * (2 * T * T * D);                     // QK^T + AV
  f.head = 2 * D * static_cast<double>(c.num_classes);
  f.lora = mode == "lora" ? depth * 2 * T * r * (D + 3 * D) : 0;  // A: D->r, B: r->3D on qkv
  if (mode == "cvpt" && M > 0) {
    const double Tq = 1 + Np, Md = static_cast<double>(M);
    // q proj + out proj per image; prompt k/v projection once per batch (amortised / B)
    f.extra_lin = depth * (2 * Tq * D * D * 2 + 2 * Md * D * 2 * D / B);
    f.extra_att = depth * 2 * (2 * Tq * Md * D);
  }
  if (mode == "prefix" && M > 0) f.extra_att = depth * 2 * (2 * T * static_cast<double>(M) * D);  // prefix columns
  f.adapter = mode == "adaptformer" || mode == "adapter" ? depth * 2 * T * D * b * 2 : 0;  // down D->b, up b->D
  return f;
}

double train_flops_per_image(const nn::ViTConfig& c, int64_t batch, const std::string& mode, int64_t M,
                             const MethodOptions& o) {
  const FwdFlops f = fwd_flops_per_image(c, batch, mode, M, o);
  const double fwd = f.sum();
  if (mode == "linear" || (uses_prompts(mode) && M == 0)) return fwd + 2 * f.head;  // backbone without graph
  const double lin = f.lin + f.extra_lin + f.lora + f.adapter;
  const double att = f.att + f.extra_att;
  double bwd = lin + 2 * att + 2 * f.head;
  if (mode == "full") bwd += f.lin + f.pe;  // weight grads of all block linears + patch embed
  if (mode == "lora") bwd += f.lora;        // weight grads of A, B
  if (mode == "adaptformer" || mode == "adapter") bwd += f.adapter;
  return fwd + bwd;
}

// ---------------------------------------------------------------------------------------------
// sgemm rate on the block linears' GEMM shapes, exactly the calls nn::Linear makes. Median over
// enough repetitions to fill ~0.2 s per shape (at least 3).
struct GemmRate {
  std::string name;
  int64_t M, N, K;
  double gflops;
  double seconds;  // median seconds per call
};

// Times blas::gemm on the block linears' GEMMs as the step runs them (rows = batch x tokens):
// the forward C = X W^T (NT) always; in training also the data gradient dX = dY W (NN) when
// gradients flow through the backbone, and the weight gradient dW = dY^T X (TN) when the
// weights train. Each shape is timed alone (median of repeated calls).
std::vector<GemmRate> probe_gemm(const nn::ViTConfig& c, int64_t rows, bool data_grad, bool weight_grad,
                                 Generator& gen) {
  const int64_t D = c.dim, H = c.mlp_hidden();
  struct Layer { const char* name; int64_t N, K; };
  const Layer layers[] = {{"attn.qkv", 3 * D, D}, {"attn.proj", D, D}, {"mlp.fc1", H, D}, {"mlp.fc2", D, H}};
  std::vector<GemmRate> out;
  for (const auto& l : layers) {
    // Buffers big enough for every GEMM of this layer: X/dX [rows, K], W/dW [N, K], Y/dY [rows, N].
    std::vector<float> X(static_cast<size_t>(rows * l.K)), W(static_cast<size_t>(l.N * l.K)),
        Y(static_cast<size_t>(rows * l.N));
    for (auto& v : X) v = static_cast<float>(gen.uniform() - 0.5);
    for (auto& v : W) v = static_cast<float>(gen.uniform() - 0.5);
    for (auto& v : Y) v = static_cast<float>(gen.uniform() - 0.5);
    struct Gemm { const char* kind; bool on; std::function<void()> call; int64_t M, N, K; };
    std::vector<float> Xout(X.size()), Wout(W.size());
    const Gemm gemms[] = {
        {"", true,
         [&] { blas::gemm(false, true, rows, l.N, l.K, 1.0f, X.data(), l.K, W.data(), l.K, 0.0f, Y.data(), l.N); },
         rows, l.N, l.K},
        {" dX", data_grad,
         [&] { blas::gemm(false, false, rows, l.K, l.N, 1.0f, Y.data(), l.N, W.data(), l.K, 0.0f, Xout.data(), l.K); },
         rows, l.K, l.N},
        {" dW", weight_grad,
         [&] { blas::gemm(true, false, l.N, l.K, rows, 1.0f, Y.data(), l.N, X.data(), l.K, 0.0f, Wout.data(), l.K); },
         l.N, l.K, rows}};
    for (const auto& g : gemms) {
      if (!g.on) continue;
      auto t0 = Clock::now();
      g.call();  // warm-up: pages in the buffers, wakes the threads
      const double first = std::max(seconds_between(t0, Clock::now()), 1e-6);
      const int reps = static_cast<int>(std::clamp(0.2 / first, 3.0, 50.0));
      std::vector<double> times;
      for (int i = 0; i < reps; ++i) {
        auto a = Clock::now();
        g.call();
        times.push_back(seconds_between(a, Clock::now()));
      }
      const double med = median(times);
      const double flops = 2.0 * static_cast<double>(g.M) * static_cast<double>(g.N) * static_cast<double>(g.K);
      out.push_back({std::string(l.name) + g.kind, g.M, g.N, g.K, flops / med / 1e9, med});
    }
  }
  return out;
}

int run_bench(const BenchArgs& a, const Common& common) {
  const std::string method = canonical_method(a.method);
  if (!is_vision_method(method))
    throw UsageError(fmt::format("--method: unknown method '{}' (available: {}; also vpt = vpt-deep)", a.method,
                                 vision_method_list()));
  if (a.steps < 1) throw ValueError(fmt::format("--steps: must be >= 1 (got {})", a.steps));
  if (a.warmup < 0) throw ValueError(fmt::format("--warmup: must be >= 0 (got {})", a.warmup));
  if (a.prompts < 0) throw ValueError(fmt::format("--prompts: must be >= 0 (got {})", a.prompts));
  if (common.threads < 0) throw ValueError(fmt::format("--threads: must be >= 0 (got {})", common.threads));

  // The bench shapes (cli.md, torch_vit_bench.py CONFIGS): presets bench-tiny and bench-base.
  const nn::ViTConfig c = nn::load_vit_config(a.config == "tiny" ? "bench-tiny" : "bench-base");
  const int64_t batch = a.config == "tiny" ? 32 : 8;

  // M as the script reports it: the prompt count for prompt methods, 0 otherwise. With M = 0 a
  // prompt method has nothing of its own to train (the script then builds no prompts and only
  // the head trains): that is the linear probe.
  const int64_t M = uses_prompts(method) ? a.prompts : 0;
  MethodOptions opts;  // defaults = the script's: LoRA rank 8 on attn.qkv with alpha = r
  apply_method_defaults(method, opts, {});  // and each method's own (adapter: bottleneck 8)
  opts.prompts = M;
  const std::string attach = uses_prompts(method) && M == 0 ? "linear" : method;

  nn::VisionTransformer vit(c, common.seed);
  Generator gen(common.seed + 1);
  try {
    apply_method(vit, attach, opts, c.num_classes, gen);
  } catch (const MethodError& e) {
    throw UsageError(e.what());
  }
  const int64_t n_params = vit.num_parameters(false), n_train = vit.num_parameters(true);

  // Random images and labels, seeded.
  Generator data_gen(common.seed + 2);
  Tensor x = randn({batch, c.in_chans, c.image_size, c.image_size}, data_gen);

  // --merged: a deployed SSF/LoRA model is a plain ViT with folded weights. Give the adapters
  // random values (LoRA's B starts at 0, which would make the fold trivial), fold them, load the
  // plain state dict into a ViT without slots, check both give the same logits, time that model.
  std::unique_ptr<nn::VisionTransformer> plain;
  double merged_diff = -1;
  if (a.merged) {
    if (a.phase != "infer" || !is_mergeable_method(method))
      throw UsageError(fmt::format("--merged: needs --phase infer and a mergeable method (ssf, lora); got {} {}",
                                   method, a.phase));
    Generator adapter_gen(common.seed + 4);
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
    plain = std::make_unique<nn::VisionTransformer>(c, common.seed);
    std::map<std::string, Tensor> sd;
    for (auto& [n, t] : plain_state_dict(vit)) sd[n] = t;
    plain->load_state_dict(sd);
    plain->eval();
    NoGradGuard ng;
    merged_diff = max_abs_diff(plain->forward(x), before);
  }
  nn::VisionTransformer& model = plain ? *plain : vit;
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (auto& l : labels) l = static_cast<int64_t>(data_gen.next_u64() % static_cast<uint64_t>(c.num_classes));
  Tensor y = from_vector_i64(labels, {batch});
  const double rss_build = peak_rss_mb();

  const bool train = a.phase == "train";
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
      Tensor loss = cross_entropy(model.forward(x), y);
      // The script's backward(); step(); zero_grad(set_to_none) with the same AdamW math, fused:
      // each tensor is updated and its gradient freed as soon as backward has finished it, so a
      // full fine-tune never holds a model's worth of gradients (nor caches their blocks).
      opt->step_in_backward(loss);
    } else {
      NoGradGuard ng;
      Tensor logits = model.forward(x);
    }
  };

  for (int64_t i = 0; i < a.warmup; ++i) step();
  reset_gemm_counters();
  reset_peak_bytes();
  std::vector<double> times;
  for (int64_t i = 0; i < a.steps; ++i) {
    auto t0 = Clock::now();
    step();
    times.push_back(seconds_between(t0, Clock::now()));
  }
  const double gemm_counted = static_cast<double>(counters().gemm_flops.load()) / static_cast<double>(a.steps);
  const double peak_rss = peak_rss_mb();  // before the GEMM probe allocates its buffers
  // The most tensor memory alive at once during the timed steps (parameters included): what the
  // freeze masks decide; RSS adds the program, the libraries and the allocator's slack.
  const double peak_tensor_mb = static_cast<double>(counters().peak_bytes.load()) / (1024.0 * 1024.0);
  const double med = median(times), mn = *std::min_element(times.begin(), times.end());
  const double flops = (train ? train_flops_per_image(c, batch, method, M, opts)
                              : fwd_flops_per_image(c, batch, method, M, opts).sum()) *
                       static_cast<double>(batch);

  // GEMM probe on the block linears' shapes (rows = batch x tokens of this run).
  const int64_t tokens = 1 + c.num_patches() + ((method == "vpt-deep" || method == "vpt-shallow") ? M : 0);
  std::vector<GemmRate> rates;
  double gemm_gflops = 0;
  if (a.gemm_probe) {
    Generator probe_gen(common.seed + 3);
    // The same rule as the FLOP count: no backbone backward for the linear probe (or prompts
    // with M = 0); weight gradients only when the weights train.
    const bool backbone_backward = train && method != "linear" && !(uses_prompts(method) && M == 0);
    rates = probe_gemm(c, batch * tokens, backbone_backward, train && method == "full", probe_gen);
    double fl = 0, sec = 0;  // FLOP-weighted: one call of each shape, as one block runs them
    for (auto& r : rates) {
      fl += r.gflops * r.seconds;
      sec += r.seconds;
    }
    gemm_gflops = fl / sec;
  }

  // The machine's float32 FMA peak on this run's thread count, measured now (register-only loops,
  // core/cpu_peak.h): the step's GFLOP/s as a share of the best ISA this CPU has.
  const int peak_threads = num_threads();
  const double peak_avx2 = cpu::fma_peak_gflops(cpu::Isa::avx2, peak_threads, 0.1);
  const double peak_avx512 = cpu::fma_peak_gflops(cpu::Isa::avx512, peak_threads, 0.1);
  const double peak_best = std::max(peak_avx2, peak_avx512);
  const double peak_share = peak_best > 0 ? (flops / med / 1e9) / peak_best : 0.0;
  auto or_null = [](double v) { return v > 0 ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); };

  nlohmann::ordered_json s = {{"config", a.config},
                      {"mode", method},
                      {"M", M},
                      {"threads", num_threads()},
                      {"phase", a.phase},
                      {"precision", blas::precision_name(blas::precision())},
                      {"gemm_backend", blas::backend_name()},
                      {"batch", batch},
                      {"median_s", med},
                      {"min_s", mn},
                      {"mean_s", [&] {
                         double t = 0;
                         for (double v : times) t += v;
                         return t / static_cast<double>(times.size());
                       }()},
                      {"n_steps", a.steps},
                      {"warmup", a.warmup},
                      {"gflop_per_step", flops / 1e9},
                      {"gflops", flops / med / 1e9},
                      {"gemm_gflop_counted_per_step", gemm_counted / 1e9},
                      {"trainable", n_train},
                      {"params", n_params},
                      {"rss_build_mb", rss_build},
                      {"peak_rss_mb", peak_rss},
                      {"peak_tensor_mb", peak_tensor_mb},
                      {"peak_gflops_avx2", or_null(peak_avx2)},
                      {"peak_gflops_avx512", or_null(peak_avx512)},
                      {"peak_share", or_null(peak_share)}};
  if (a.merged) {
    s["merged"] = true;
    s["merged_max_abs_diff"] = merged_diff;  // logits of the folded plain ViT vs the adapter model
  }
  if (a.gemm_probe) {
    s["sgemm_gflops"] = gemm_gflops;
    nlohmann::ordered_json shapes = nlohmann::ordered_json::object();
    for (auto& r : rates) shapes[r.name] = {{"M", r.M}, {"N", r.N}, {"K", r.K}, {"gflops", r.gflops}};
    s["sgemm_shapes"] = shapes;
  }

  fmt::print("bench {} {} M={} threads={} {} batch {}: median {:.1f} ms, min {:.1f} ms, {:.2f} GFLOP/step, {:.1f} GFLOP/s, "
             "{} / {} trainable, peak RSS {:.0f} MB (tensors {:.0f} MB)\n",
             a.config, method, M, num_threads(), a.phase, batch, med * 1e3, mn * 1e3, flops / 1e9, flops / med / 1e9,
             n_train, n_params, peak_rss, peak_tensor_mb);
  fmt::print("FMA peak ({} threads, register-only f32 loops, measured now): AVX2 {}, AVX-512 {}; step at {:.0f}% of the {} peak\n",
             peak_threads, peak_avx2 > 0 ? fmt::format("{:.1f} GFLOP/s", peak_avx2) : std::string("n/a"),
             peak_avx512 > 0 ? fmt::format("{:.1f} GFLOP/s", peak_avx512) : std::string("n/a (not on this CPU)"),
             100.0 * peak_share, peak_avx512 > 0 ? "AVX-512" : "AVX2");
  if (a.gemm_probe) {
    std::string parts;
    for (auto& r : rates) parts += fmt::format("{}{} [{}x{}x{}] {:.1f}", parts.empty() ? "" : ", ", r.name, r.M, r.N, r.K, r.gflops);
    fmt::print("sgemm ({}, {} threads, the step's GEMM shapes [MxNxK]): {} GFLOP/s; FLOP-weighted {:.1f} GFLOP/s; "
               "whole step at {:.0f}% of it\n",
               blas::backend_name(), num_threads(), parts, gemm_gflops, 100.0 * (flops / med / 1e9) / gemm_gflops);
  }
  if (common.json) fmt::print("{}\n", s.dump());
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Common& common, Runner& run) {
  static BenchArgs a;
  auto* cmd = app.add_subcommand("bench", "time one training step or inference batch (compare: ../bench/torch_vit_bench.py)");
  cmd->add_option("--config", a.config, "tiny (32 px, patch 4, D192 L12 H3, 10 classes, batch 32) | base (224 px, "
                                        "patch 16, D768 L12 H12, 1000 classes, batch 8)")
      ->required()
      ->check(CLI::IsMember({"tiny", "base"}));
  cmd->add_option("--method", a.method, "PEFT method (peft methods; also torch_vit_bench.py's vpt = vpt-deep)")->required();
  cmd->add_option("--prompts", a.prompts, "prompts M (vpt-shallow, vpt-deep, cvpt, prefix; 0 = none, the linear probe)")
      ->capture_default_str();
  cmd->add_option("--phase", a.phase, "train (forward, cross-entropy, backward, AdamW step) | infer (no-grad forward)")
      ->required()
      ->check(CLI::IsMember({"train", "infer"}));
  cmd->add_option("--threads", common.threads, "compute threads (0 = number of cores)")->required();
  cmd->add_option("--warmup", a.warmup, "untimed steps first")->required();
  cmd->add_option("--steps", a.steps, "timed steps (median and min reported)")->required();
  cmd->add_option("--seed", common.seed, "random seed of the weights, method tensors, images and labels");
  cmd->add_flag("--json", common.json, "print the JSON summary (torch_vit_bench.py's keys) as the last stdout line");
  cmd->add_option("--precision", common.precision,
                  "f32 | bf16 (GEMM inputs in bfloat16, float32 accumulation; torch_vit_bench.py --precision bf16 "
                  "is PyTorch's CPU autocast)")
      ->capture_default_str();
  cmd->add_flag("--merged", a.merged,
                "ssf/lora with --phase infer: fold the adapters into the weights and time the plain ViT that results "
                "(compare with --method full --phase infer, the plain ViT)");
  cmd->add_flag("--no-gemm-probe", [](int64_t) { a.gemm_probe = false; }, "skip the sgemm rate measurement");
  cmd->callback([&run, &common] {
    run = [&common] { return run_bench(a, common); };
  });
}

}  // namespace peft::app
