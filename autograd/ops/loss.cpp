// cross_entropy: fused log_softmax + NLL with label smoothing; backward (softmax - target) / B.
#include "autograd/ops/loss.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "core/error.h"
#include "core/threads.h"

namespace peft {

namespace {

void check_cross_entropy(const Tensor& logits, const Tensor& labels, double s) {
  if (!logits.defined() || !labels.defined())
    throw ValueError("cross_entropy: undefined tensor argument. Hint: pass logits [B, K] and labels [B]");
  const std::string shapes =
      fmt::format("logits {}, labels {}", shape_str(logits.sizes()), shape_str(labels.sizes()));
  if (!is_floating(logits.dtype()))
    throw DTypeError(fmt::format("cross_entropy: logits must be float32 or float64 (got {} {}; {}). Hint: convert "
                                 "with .to()",
                                 dtype_name(logits.dtype()), shape_str(logits.sizes()), shapes));
  if (labels.dtype() != DType::i64)
    throw DTypeError(fmt::format("cross_entropy: labels must be int64 class indices (got {} {}; {}). Hint: use "
                                 "from_vector_i64",
                                 dtype_name(labels.dtype()), shape_str(labels.sizes()), shapes));
  if (logits.dim() != 2 || labels.dim() != 1 || labels.size(0) != logits.size(0))
    throw ShapeError(fmt::format("cross_entropy: shapes do not match (got {}, expected logits [B, K] and labels "
                                 "[B]). Hint: flatten extra dims of the logits into the batch",
                                 shapes));
  if (logits.size(0) == 0)
    throw ShapeError(fmt::format("cross_entropy: empty batch (got {}). Hint: the mean over zero samples is undefined",
                                 shapes));
  if (!(s >= 0.0 && s <= 1.0))
    throw ValueError(fmt::format("cross_entropy: label_smoothing must be in [0, 1] (got {}). Hint: 0.1 is usual", s));
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, double label_smoothing) {
  check_cross_entropy(logits, labels, label_smoothing);
  // logits: [B, K], labels: [B]
  const int64_t B = logits.size(0), K = logits.size(1);
  Tensor lc = labels.is_contiguous() ? labels : labels.clone();
  const int64_t* lab = lc.data<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    if (lab[b] < 0 || lab[b] >= K)
      throw ValueError(fmt::format("cross_entropy: label {} at index {} is out of range for {} classes (expected 0 <= "
                                   "label < {}; logits {}). Hint: check the dataset's class count",
                                   lab[b], b, K, K, shape_str(logits.sizes())));

  Tensor xc = logits.is_contiguous() ? logits : logits.clone();
  Tensor lse = empty({B}, DType::f64);  // log-sum-exp per row: with x it gives softmax in backward
  const double s = label_smoothing;
  double total = 0;
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* x = xc.data<T>();
    double* l = lse.data<double>();
#pragma omp parallel for reduction(+ : total) if (B * K > kParallelGrain)
    for (int64_t b = 0; b < B; ++b) {
      const T* xr = x + b * K;
      // Shift by the row max so that exp never overflows.
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t k = 0; k < K; ++k) m = xr[k] > m ? xr[k] : m;
      double se = 0, sx = 0;
      for (int64_t k = 0; k < K; ++k) {
        se += std::exp(xr[k] - m);
        sx += xr[k];
      }
      const double lz = m + std::log(se);
      l[b] = lz;
      // -log p_y = lz - x_y; the uniform part -mean_k log p_k = lz - mean_k x_k.
      const double nll = lz - xr[lab[b]];
      const double smooth = lz - sx / static_cast<double>(K);
      total += (1.0 - s) * nll + s * smooth;
    }
  });
  Tensor loss = scalar_tensor(total / static_cast<double>(B), logits.dtype());

  autograd::Recorder rec("cross_entropy", {logits, labels});
  if (rec) {
    // Save x (usually the caller's own buffer, so no extra memory), the labels and one lse per
    // row, rather than a [B, K] softmax.
    Tensor xs = xc.detach(), ls = lc.detach(), lz = lse;
    rec.save({xs, ls, lz});
    const Shape xshape = logits.sizes();
    rec.finish(loss, [=](const Tensor& g) -> std::vector<Tensor> {
      const double scale = g.item() / static_cast<double>(B);
      Tensor dx = empty(xshape, xs.dtype());
      dispatch_float(xs.dtype(), "cross_entropy backward", [&](auto tag) {
        using T = decltype(tag);
        const T* x = xs.data<T>();
        const int64_t* lb = ls.data<int64_t>();
        const double* l = lz.data<double>();
        T* d = dx.data<T>();
        const double off = s / static_cast<double>(K);  // the uniform share of the target
#pragma omp parallel for if (B * K > kParallelGrain)
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t k = 0; k < K; ++k) {
            // target = (1 - s) onehot(y) + s / K
            const double target = (k == lb[b] ? 1.0 - s : 0.0) + off;
            d[b * K + k] = static_cast<T>(scale * (std::exp(x[b * K + k] - l[b]) - target));
          }
        }
      });
      return {dx, Tensor()};
    });
  }
  return loss;
}

}  // namespace peft
