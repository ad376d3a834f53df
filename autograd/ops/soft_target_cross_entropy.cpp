// soft_target_cross_entropy: sum_k -t * log_softmax(x), mean over the batch; both gradients.
#include "autograd/ops/soft_target_cross_entropy.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/view.h"
#include "core/error.h"
#include "core/threads.h"

namespace peft {

namespace {

void check_soft_target(const Tensor& logits, const Tensor& targets) {
  if (!logits.defined() || !targets.defined())
    throw ValueError("soft_target_cross_entropy: undefined tensor argument. Hint: pass logits [B, K] and targets [B, K]");
  const std::string shapes = fmt::format("logits {}, targets {}", shape_str(logits.sizes()), shape_str(targets.sizes()));
  if (!is_floating(logits.dtype()) || targets.dtype() != logits.dtype())
    throw DTypeError(fmt::format("soft_target_cross_entropy: logits and targets must be the same float dtype (got {} "
                                 "and {}; {}). Hint: convert the targets with .to(logits.dtype())",
                                 dtype_name(logits.dtype()), dtype_name(targets.dtype()), shapes));
  if (logits.dim() != 2 || logits.size(0) == 0)
    throw ShapeError(fmt::format("soft_target_cross_entropy: logits must be a non-empty [B, K] (got {}). Hint: "
                                 "flatten extra dims into the batch",
                                 shapes));
  const int64_t B = logits.size(0), K = logits.size(1), td = targets.dim();
  const bool fits = (td == 1 && targets.size(0) == K) ||
                    (td == 2 && targets.size(1) == K && (targets.size(0) == B || targets.size(0) == 1));
  if (!fits)
    throw ShapeError(fmt::format("soft_target_cross_entropy: targets do not broadcast to the logits (got {}, expected "
                                 "targets [B, K], [1, K] or [K]). Hint: one probability row per example",
                                 shapes));
}

}  // namespace

Tensor soft_target_cross_entropy(const Tensor& logits, const Tensor& targets) {
  check_soft_target(logits, targets);
  // x: [B, K]; t: targets expanded to [B, K] and made contiguous (a [K] target costs B*K here,
  // which is what the loss reads anyway).
  const int64_t B = logits.size(0), K = logits.size(1);
  Tensor xc = logits.is_contiguous() ? logits.detach() : logits.detach().clone();
  Tensor tc = expand(targets.detach(), logits.sizes()).clone();
  Tensor lse = empty({B}, DType::f64);  // log-sum-exp per row: log_softmax = x - lse
  double total = 0;
  dispatch_float(logits.dtype(), "soft_target_cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* x = xc.data<T>();
    const T* t = tc.data<T>();
    double* l = lse.data<double>();
#pragma omp parallel for reduction(+ : total) if (B * K > kParallelGrain)
    for (int64_t b = 0; b < B; ++b) {
      const T* xr = x + b * K;
      const T* tr = t + b * K;
      double m = -std::numeric_limits<double>::infinity();  // shift by the row max: exp never overflows
      for (int64_t k = 0; k < K; ++k) m = xr[k] > m ? xr[k] : m;
      double se = 0;
      for (int64_t k = 0; k < K; ++k) se += std::exp(xr[k] - m);
      const double lz = m + std::log(se);
      l[b] = lz;
      double row = 0;  // sum_k t (lz - x) = -sum_k t log_softmax(x)
      for (int64_t k = 0; k < K; ++k) row += tr[k] * (lz - xr[k]);
      total += row;
    }
  });
  Tensor loss = scalar_tensor(total / static_cast<double>(B), logits.dtype());

  autograd::Recorder rec("soft_target_cross_entropy", {logits, targets});
  if (rec) {
    // Both gradients read x and the row lse; only the logits' gradient reads t.
    const bool need_x = rec.needs(0), need_t = rec.needs(1);
    Tensor ts = need_x ? tc : Tensor();
    rec.save({xc, lse, ts});
    const Shape tshape = targets.sizes();
    rec.finish(loss, [=](const Tensor& g) -> std::vector<Tensor> {
      const double scale = g.item() / static_cast<double>(B);
      Tensor dx = need_x ? empty({B, K}, xc.dtype()) : Tensor();
      Tensor dt = need_t ? empty({B, K}, xc.dtype()) : Tensor();
      dispatch_float(xc.dtype(), "soft_target_cross_entropy backward", [&](auto tag) {
        using T = decltype(tag);
        const T* x = xc.data<T>();
        const T* t = need_x ? ts.data<T>() : nullptr;
        const double* l = lse.data<double>();
        T* px = need_x ? dx.data<T>() : nullptr;
        T* pt = need_t ? dt.data<T>() : nullptr;
#pragma omp parallel for if (B * K > kParallelGrain)
        for (int64_t b = 0; b < B; ++b) {
          const int64_t o = b * K;
          double tsum = 0;
          if (px)
            for (int64_t k = 0; k < K; ++k) tsum += t[o + k];
          for (int64_t k = 0; k < K; ++k) {
            const double logp = x[o + k] - l[b];
            if (px) px[o + k] = static_cast<T>(scale * (std::exp(logp) * tsum - t[o + k]));
            if (pt) pt[o + k] = static_cast<T>(-scale * logp);
          }
        }
      });
      return {dx, need_t ? sum_to(dt, tshape) : Tensor()};
    });
  }
  return loss;
}

}  // namespace peft
