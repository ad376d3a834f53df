// layer_norm over the last dim: fused kernel; saves mean/rstd per row (and x, w only when needed).
#include "autograd/ops/layer_norm.h"

#include <fmt/format.h>

#include <cmath>

#include "autograd/node.h"
#include "core/error.h"
#include "core/kernels/layer_norm.h"

namespace peft {

namespace {

void check_param(const char* what, const Tensor& p, const Tensor& x) {
  if (!p.defined()) return;
  if (p.dim() != 1 || p.size(0) != x.size(-1))
    throw ShapeError(fmt::format("layer_norm: {} {} does not match input {} (expected [{}]). Hint: the {} has one "
                                 "entry per feature of the last dim",
                                 what, shape_str(p.sizes()), shape_str(x.sizes()), x.size(-1), what));
  if (p.dtype() != x.dtype())
    throw DTypeError(fmt::format("layer_norm: {} is {} {} but input is {} {}. Hint: convert with .to()", what,
                                 dtype_name(p.dtype()), shape_str(p.sizes()), dtype_name(x.dtype()),
                                 shape_str(x.sizes())));
}

Tensor contiguous_or_undefined(const Tensor& t) {
  if (!t.defined()) return t;
  return t.is_contiguous() ? t : t.clone();
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  if (!x.defined()) throw ValueError("layer_norm: undefined input tensor. Hint: pass a defined tensor");
  if (!is_floating(x.dtype()))
    throw DTypeError(fmt::format("layer_norm: expected a float32 or float64 input, got {} {}. Hint: convert with .to()",
                                 dtype_name(x.dtype()), shape_str(x.sizes())));
  if (x.dim() < 1)
    throw ShapeError(fmt::format("layer_norm: input {} has no last dim to normalise (expected [..., D])",
                                 shape_str(x.sizes())));
  check_param("weight", weight, x);
  check_param("bias", bias, x);
  if (!(eps >= 0) || !std::isfinite(eps))
    throw ValueError(fmt::format("layer_norm: eps must be finite and >= 0 (got {}). Hint: the usual value is 1e-5", eps));

  // x: [..., D] seen as [R, D].
  const int64_t D = x.size(-1);
  const int64_t R = D == 0 ? 0 : x.numel() / D;
  Tensor xc = contiguous_or_undefined(x), wc = contiguous_or_undefined(weight), bc = contiguous_or_undefined(bias);
  Tensor y = empty_uninitialized(x.sizes(), x.dtype());  // the kernels write every element
  Tensor mean = empty_uninitialized({R}, DType::f64), rstd = empty_uninitialized({R}, DType::f64);
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    kernels::layer_norm_forward<T>(xc.data<T>(), wc.defined() ? wc.template data<T>() : nullptr,
                                   bc.defined() ? bc.template data<T>() : nullptr, y.data<T>(), mean.data<double>(),
                                   rstd.data<double>(), R, D, eps);
  });

  autograd::Recorder rec("layer_norm", {x, weight, bias});
  if (rec) {
    const bool nx = rec.needs(0), nw = rec.needs(1), nb = rec.needs(2);
    // dx needs x, w and the statistics; dw needs x and the statistics; db needs only g.
    Tensor xs = (nx || nw) ? xc.detach() : Tensor();
    Tensor ws = nx && wc.defined() ? wc.detach() : Tensor();
    Tensor ms = (nx || nw) ? mean : Tensor(), rs = (nx || nw) ? rstd : Tensor();
    rec.save({xs, ws, ms, rs});
    const Shape xshape = x.sizes();
    const Shape wshape = weight.defined() ? weight.sizes() : Shape{};
    const Shape bshape = bias.defined() ? bias.sizes() : Shape{};
    const DType dt = x.dtype();
    rec.finish(y, [=](const Tensor& g0) -> std::vector<Tensor> {
      Tensor g = g0.is_contiguous() ? g0 : g0.clone();
      Tensor dx = nx ? empty_uninitialized(xshape, dt) : Tensor();
      Tensor dw = nw ? empty_uninitialized(wshape, dt) : Tensor();
      Tensor db = nb ? empty_uninitialized(bshape, dt) : Tensor();
      dispatch_float(dt, "layer_norm backward", [&](auto tag) {
        using T = decltype(tag);
        kernels::layer_norm_backward<T>(g.data<T>(), xs.defined() ? xs.template data<T>() : nullptr,
                                        ws.defined() ? ws.template data<T>() : nullptr,
                                        ms.defined() ? ms.template data<double>() : nullptr,
                                        rs.defined() ? rs.template data<double>() : nullptr,
                                        nx ? dx.template data<T>() : nullptr, nw ? dw.template data<T>() : nullptr,
                                        nb ? db.template data<T>() : nullptr, R, D);
      });
      return {dx, dw, db};
    });
  }
  return y;
}

}  // namespace peft
