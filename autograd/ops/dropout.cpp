// Inverted dropout: a mask drawn from an explicit Generator, saved for backward (no hidden RNG state).
#include "autograd/ops/dropout.h"

#include <fmt/format.h>

#include "autograd/node.h"
#include "autograd/ops/elementwise.h"
#include "core/error.h"
#include "core/kernels/map.h"

namespace peft {

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  if (!(p >= 0.0 && p < 1.0))  // also rejects NaN
    throw ValueError(fmt::format("dropout: probability p = {} is outside [0, 1) (input {}). Hint: p is the "
                                 "fraction of elements zeroed; p = 1 would zero everything",
                                 p, x.defined() ? shape_str(x.sizes()) : "undefined"));
  if (!x.defined()) throw ValueError("dropout: undefined input");
  if (!training || p == 0.0) return x;  // evaluation: exactly the identity, nothing drawn or recorded

  // mask: 0 with probability p, else 1/(1-p), so that E[out] = x and eval needs no rescaling.
  // Drawn sequentially in row-major order: the same seed gives the same mask on any thread count.
  Tensor mask = empty(x.sizes(), x.dtype());
  const int64_t n = x.numel();
  dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    T* m = mask.data<T>();
    const T keep = static_cast<T>(1.0 / (1.0 - p));
    for (int64_t i = 0; i < n; ++i) m[i] = gen.uniform() < p ? T(0) : keep;
  });
  Tensor out;
  dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    out = kernels::binary_map<T>(x, mask, x.sizes(), [](T a, T b) { return a * b; });
  });
  autograd::Recorder rec("dropout", {x});
  if (rec) {
    rec.save({mask});
    rec.finish(out, [mask](const Tensor& g) -> std::vector<Tensor> { return {mul(g, mask)}; });
  }
  return out;
}

}  // namespace peft
