// gelu_linear: y = gelu(h) W^T + b, saving h only and recomputing gelu(h) for dW.
#include "autograd/ops/gelu_linear.h"

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/unary.h"
#include "autograd/ops/view.h"
#include "core/kernels/gelu.h"
#include "core/kernels/gemm_view.h"

namespace peft {

namespace {
// a = gelu(h) for a contiguous h, no autograd.
Tensor gelu_raw(const Tensor& h) {
  Tensor a = empty_uninitialized(h.sizes(), h.dtype());
  dispatch_float(h.dtype(), "gelu_linear", [&](auto tag) {
    using T = decltype(tag);
    kernels::gelu_forward(h.data<T>(), a.data<T>(), h.numel());
  });
  return a;
}
}  // namespace

Tensor gelu_linear(Tensor h, const Tensor& w, const Tensor& b) {
  if (!h.defined() || !is_floating(h.dtype()) || h.dim() < 1 || w.dim() != 2 || h.size(-1) != w.size(1) ||
      h.numel() == 0 || w.numel() == 0)
    return linear(gelu(h), w, b);  // the composed ops check the arguments and handle empty dims
  const bool records = grad_enabled() && (h.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()));
  if (!records && h.is_contiguous() && h.is_sole_owner()) {
    // Nobody else can see h: overwrite it with gelu(h) and feed it to the GEMM.
    dispatch_float(h.dtype(), "gelu_linear", [&](auto tag) {
      using T = decltype(tag);
      kernels::gelu_forward(h.data<T>(), h.data<T>(), h.numel());
    });
    NoGradGuard raw;
    return linear(h, w, b);
  }
  const Tensor hc = h.is_contiguous() ? h : h.clone();
  const int64_t hidden = w.size(1), outf = w.size(0), R = hc.numel() / hidden;
  Tensor y;
  {
    NoGradGuard raw;  // a = gelu(h) lives only until the GEMM has read it
    y = linear(gelu_raw(hc), w, b);
  }
  autograd::Recorder rec("gelu_linear", {h, w, b});
  if (!rec) return y;
  const bool nh = rec.needs(0), nw = rec.needs(1), nb = rec.needs(2);
  const Tensor hs = (nh || nw) ? hc.detach() : Tensor();
  const Tensor ws = nh ? (w.is_contiguous() ? w : w.clone()) : Tensor();
  // ws is w itself (not a per-call clone), or a bfloat16 weight: read through weight_view.
  const bool w_is_param = nh && (w.is_contiguous() || w.dtype() == DType::bf16);
  rec.save({hs, ws});
  const Shape hshape = h.sizes(), wshape = w.sizes();
  rec.finish(y, [=](const Tensor& g0) -> std::vector<Tensor> {
    Tensor g = g0.is_contiguous() ? g0 : g0.clone();  // [R, out]
    Tensor gh, gw, gb;
    dispatch_float(g.dtype(), "gelu_linear backward", [&](auto tag) {
      using T = decltype(tag);
      kernels::MatView<T> G{g.template data<T>(), R, outf, false, outf};
      if (nw) {  // dW [out, hidden] = g^T gelu(h), gelu(h) recomputed
        Tensor a = gelu_raw(hs);
        gw = empty_uninitialized(wshape, g.dtype());
        kernels::gemm(G.t(), kernels::MatView<T>{a.template data<T>(), R, hidden, false, hidden}, gw.template data<T>(),
                      hidden);
      }
      if (nh) {  // da = g W, then dh = da * gelu'(h) in place
        Tensor da = empty_uninitialized(hshape, g.dtype());
        bf16::WeightCopy keep;  // --precision bf16: W's copy, rounded once (core/bf16_weights.h)
        const kernels::MatView<T> W = w_is_param ? kernels::weight_view<T>(ws, keep)
                                                 : kernels::MatView<T>{ws.template data<T>(), outf, hidden, false, hidden};
        kernels::gemm(G, W, da.template data<T>(), hidden);
        kernels::gelu_backward(da.template data<T>(), hs.template data<T>(), da.template data<T>(), da.numel());
        gh = da;
      }
    });
    if (nb) gb = sum(reshape(g, {R, outf}), {0});
    return {gh, gw, gb};
  });
  return y;
}

}  // namespace peft
