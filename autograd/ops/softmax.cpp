// softmax and log_softmax: fused row kernels over the last dim; other dims go through a transpose.
#include "autograd/ops/softmax.h"

#include <fmt/format.h>

#include "autograd/node.h"
#include "autograd/ops/view.h"
#include "core/error.h"
#include "core/kernels/softmax.h"

namespace peft {

namespace {

// x viewed as [rows, n] over its last dim (a 0-d tensor is one row of one element).
void rows_cols(const Tensor& x, int64_t& rows, int64_t& n) {
  n = x.dim() == 0 ? 1 : x.size(-1);
  rows = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) rows *= x.size(d);
}

// The last-dim case: x: [..., N] -> y: [..., N] contiguous.
Tensor softmax_last(const char* op, const Tensor& x, bool log) {
  Tensor xc = x.is_contiguous() ? x : x.clone();  // raw copy: the node below is recorded on x
  Tensor y = empty_uninitialized(x.sizes(), x.dtype());  // the kernels write every element
  int64_t rows = 0, n = 0;
  rows_cols(x, rows, n);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    kernels::softmax_forward<T>(xc.data<T>(), y.data<T>(), rows, n, log);
  });
  autograd::Recorder rec(op, {x});
  if (rec) {
    // Both gradients need only the output (softmax: y; log_softmax: exp(y)), never x.
    Tensor ys = y.detach();
    rec.save({ys});
    rec.finish(y, [op, ys, rows, n, log](const Tensor& g0) -> std::vector<Tensor> {
      Tensor g = g0.is_contiguous() ? g0 : g0.clone();  // e.g. the stride-0 gradient of a sum
      Tensor dx = empty_uninitialized(ys.sizes(), ys.dtype());
      dispatch_float(ys.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        kernels::softmax_backward<T>(g.data<T>(), ys.data<T>(), dx.data<T>(), rows, n, log);
      });
      return {dx};
    });
  }
  return y;
}

Tensor softmax_any(const char* op, const Tensor& x, int64_t dim, bool log) {
  if (!x.defined()) throw ValueError(fmt::format("{}: undefined tensor argument. Hint: pass a defined tensor", op));
  if (!is_floating(x.dtype()))
    throw DTypeError(fmt::format("{}: expected a float32 or float64 tensor, got {} {}. Hint: convert with .to()", op,
                                 dtype_name(x.dtype()), shape_str(x.sizes())));
  const int64_t nd = x.dim(), lo = nd == 0 ? -1 : -nd, hi = nd == 0 ? 0 : nd - 1;
  if (dim < lo || dim > hi)
    throw ShapeError(fmt::format("{}: dim {} out of range for input {} (expected {}..{}). Hint: -1 is the last dim",
                                 op, dim, shape_str(x.sizes()), lo, hi));
  const int64_t d = wrap_dim(dim, nd, op);
  if (x.dim() == 0 || d == x.dim() - 1) return softmax_last(op, x, log);
  // Another dim: move it last (a differentiable view), run the fused kernel, move it back. The
  // copy into a contiguous result keeps callers' fast paths (and is rare: attention and losses
  // use the last dim).
  return contiguous(transpose(softmax_last(op, transpose(x, d, -1), log), d, -1));
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_any("softmax", x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_any("log_softmax", x, dim, true); }

}  // namespace peft
