// l2_normalize composed from differentiable ops (sum, maximum, sqrt, div): no backward of its own.
#include "autograd/ops/normalize.h"

#include <fmt/format.h>

#include <cmath>

#include "autograd/ops/elementwise.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/unary.h"
#include "core/error.h"

namespace peft {

Tensor l2_normalize(const Tensor& x, int64_t dim, double eps) {
  if (!x.defined()) throw ValueError("l2_normalize: undefined tensor argument. Hint: pass a defined tensor");
  if (!is_floating(x.dtype()))
    throw DTypeError(fmt::format("l2_normalize: expected a float32 or float64 tensor, got {} {}. Hint: convert with "
                                 ".to()",
                                 dtype_name(x.dtype()), shape_str(x.sizes())));
  if (!(eps > 0) || !std::isfinite(eps))
    throw ValueError(fmt::format("l2_normalize: eps must be finite and > 0 (got {}). Hint: the usual value is 1e-12",
                                 eps));
  const int64_t nd = x.dim(), lo = nd == 0 ? -1 : -nd, hi = nd == 0 ? 0 : nd - 1;
  if (dim < lo || dim > hi)
    throw ShapeError(fmt::format("l2_normalize: dim {} out of range for input {} (expected {}..{}). Hint: -1 is the "
                                 "last dim",
                                 dim, shape_str(x.sizes()), lo, hi));
  const int64_t d = wrap_dim(dim, nd, "l2_normalize");
  // x: [..., N, ...] -> squared norm [..., 1, ...] (kept dim, so the division broadcasts).
  Tensor sq = sum(mul(x, x), {d}, true);
  // max(||x||, eps) == sqrt(max(||x||^2, eps^2)): clamping before the sqrt keeps the gradient
  // finite for an all-zero slice (sqrt's derivative at 0 is infinite, and 0 * inf is NaN).
  Tensor norm = sqrt(maximum(sq, scalar_tensor(eps * eps, x.dtype())));
  return div(x, norm);
}

}  // namespace peft
