// measure_cost: counts, FLOPs, times and memory of one model + method (issue 5).
#include "peft/cost.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "autograd/backward.h"
#include "core/counters.h"
#include "core/error.h"
#include "core/process_stats.h"
#include "core/random.h"
#include "nn/optim/optimizer.h"

namespace peft {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

bool is_head(const std::string& name) { return name.rfind("head.", 0) == 0; }

}  // namespace

CostReport measure_cost(nn::VisionTransformer& vit, int64_t batch, int steps) {
  if (!vit.head) throw ValueError("measure_cost: the model has no head (num_classes 0). Hint: give the config num_classes > 0");
  if (batch <= 0 || steps <= 0)
    throw ValueError(fmt::format("measure_cost: batch and steps must be positive (got batch {}, steps {})", batch, steps));
  const nn::ViTConfig& c = vit.cfg;
  CostReport r;
  r.batch = batch;
  for (auto& [name, t] : vit.named_parameters()) {
    r.total += t.numel();
    if (t.requires_grad()) r.trainable += t.numel();
    if (!is_head(name)) r.backbone += t.numel();
  }
  r.trainable_pct = r.backbone > 0 ? 100.0 * static_cast<double>(r.trainable) / static_cast<double>(r.backbone) : 0.0;

  // A seeded random batch: costs do not depend on the pixel values.
  Generator gen(1234);
  Tensor images = randn({batch, c.in_chans, c.image_size, c.image_size}, gen);  // [B, C, S, S]
  std::vector<int64_t> lab(static_cast<size_t>(batch));
  for (auto& l : lab) l = static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(vit.head->out_features));
  Tensor labels = from_vector_i64(lab, {batch});

  // Snapshot of what training changes, restored at the end.
  const bool was_training = vit.is_training();
  const auto drop_state = vit.drop_gen.state();
  std::vector<std::pair<Tensor, Tensor>> saved;  // (parameter, copy)
  for (auto& [_, t] : vit.named_parameters())
    if (t.requires_grad()) saved.emplace_back(t, t.clone());

  // FLOPs: every GEMM (linears, patch embedding, attention's QK^T and PV) goes through
  // blas::gemm, which counts 2*M*N*K. One eval-mode no_grad forward; it also warms up.
  {
    NoGradGuard ng;
    vit.eval();
    reset_gemm_counters();
    vit.forward(images);
    r.flops_per_image = counters().gemm_flops.load() / batch;
  }

  // Inference: median forward time and the peak live bytes of one forward.
  {
    NoGradGuard ng;
    vit.eval();
    std::vector<double> times;
    for (int s = 0; s < steps; ++s) {
      reset_peak_bytes();
      auto t0 = Clock::now();
      Tensor logits = vit.forward(images);
      times.push_back(seconds_since(t0));
      r.infer_peak_bytes = std::max(r.infer_peak_bytes, counters().peak_bytes.load());
    }
    r.infer_batch_s = median(times);
  }

  // Training: forward + cross-entropy + backward + AdamW step, like peft train. The first step
  // is not timed (it allocates the optimizer's moments) but its memory counts: the moments live
  // from then on, so later steps see them in the live bytes as well.
  {
    vit.train();
    nn::AdamW opt(nn::param_groups(vit.named_parameters(), 0.05), 1e-3);
    reset_peak_rss();
    std::vector<double> times;
    for (int s = 0; s <= steps; ++s) {
      reset_peak_bytes();
      auto t0 = Clock::now();
      Tensor logits = vit.forward(images);
      Tensor loss = cross_entropy(logits, labels);
      opt.zero_grad();
      opt.step_in_backward(loss);  // as `peft train` steps
      const double dt = seconds_since(t0);
      if (s > 0) times.push_back(dt);
      r.train_peak_bytes = std::max(r.train_peak_bytes, counters().peak_bytes.load());
    }
    r.train_step_s = median(times);
    r.peak_rss_mb = peak_rss_mb();
    opt.zero_grad();
  }

  for (auto& [p, copy] : saved) {
    NoGradGuard ng;
    Tensor(p).copy_(copy);
  }
  vit.zero_grad();
  vit.drop_gen.set_state(drop_state);
  vit.train(was_training);
  return r;
}

std::string format_cost_table(const std::vector<CostReport>& reports) {
  constexpr double MiB = 1024.0 * 1024.0;
  std::string s = fmt::format("{:<12} {:>5} {:>11} {:>9} {:>11} {:>9} {:>9} {:>10} {:>10} {:>9}\n", "method", "M",
                              "trainable", "% backb.", "MFLOPs/img", "step ms", "infer ms", "train MiB", "infer MiB",
                              "RSS MiB");
  for (const CostReport& r : reports)
    s += fmt::format("{:<12} {:>5} {:>11} {:>8.3f}% {:>11.3f} {:>9.2f} {:>9.2f} {:>10.2f} {:>10.2f} {:>9.1f}\n", r.method,
                     r.prompts, r.trainable, r.trainable_pct, static_cast<double>(r.flops_per_image) / 1e6,
                     r.train_step_s * 1e3, r.infer_batch_s * 1e3, static_cast<double>(r.train_peak_bytes) / MiB,
                     static_cast<double>(r.infer_peak_bytes) / MiB, r.peak_rss_mb);
  return s;
}

std::string cost_csv_header() {
  return "method,prompts,batch,trainable,backbone,total,trainable_pct,flops_per_image,train_step_s,infer_batch_s,"
         "train_peak_bytes,infer_peak_bytes,peak_rss_mb";
}

std::string cost_csv_row(const CostReport& r) {
  return fmt::format("{},{},{},{},{},{},{:.6g},{},{:.6g},{:.6g},{},{},{:.6g}", r.method, r.prompts, r.batch, r.trainable,
                     r.backbone, r.total, r.trainable_pct, r.flops_per_image, r.train_step_s, r.infer_batch_s,
                     r.train_peak_bytes, r.infer_peak_bytes, r.peak_rss_mb);
}

std::string format_cost_csv(const std::vector<CostReport>& reports) {
  std::string s = cost_csv_header() + "\n";
  for (const CostReport& r : reports) s += cost_csv_row(r) + "\n";
  return s;
}

}  // namespace peft
