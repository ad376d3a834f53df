// lora_linear: base GEMM + low-rank update accumulated into one output; backward reuses g B.
#include "autograd/ops/lora.h"

#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/view.h"
#include "core/error.h"
#include "core/kernels/gemm_view.h"

namespace peft {

namespace {
using kernels::contiguous_raw;
using kernels::rows_of;
}  // namespace

Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B, double scale) {
  if (!A.defined() || !B.defined() || A.dim() != 2 || B.dim() != 2 || w.dim() != 2 || A.size(1) != w.size(1) ||
      B.size(0) != w.size(0) || B.size(1) != A.size(0))
    throw ShapeError(fmt::format("lora_linear: A {} and B {} do not fit weight {} (expected A [r, in], B [out, r])",
                                 A.defined() ? shape_str(A.sizes()) : "undefined",
                                 B.defined() ? shape_str(B.sizes()) : "undefined", shape_str(w.sizes())));
  // A weight stored in bfloat16 (frozen, --precision bf16) computes in float32.
  const DType wdt = compute_dtype(w.dtype());
  if (A.dtype() != wdt || B.dtype() != wdt)
    throw DTypeError(fmt::format("lora_linear: A/B dtypes ({}, {}) differ from the weight's ({})",
                                 dtype_name(A.dtype()), dtype_name(B.dtype()), dtype_name(w.dtype())));
  const int64_t in = w.size(1), outf = w.size(0), r = A.size(0);
  const int64_t R = x.dim() >= 1 && x.size(-1) == in ? x.numel() / std::max<int64_t>(in, 1) : -1;
  // Empty dims have no BLAS layout: the composed ops handle them (and x's shape checks).
  if (R <= 0 || in == 0 || outf == 0 || r == 0)
    return add(linear(x, w, b), mul(linear(linear(x, A), B), scale));
  if (!kernels::weight_pairs_with(x, w))
    throw DTypeError(fmt::format("lora_linear: dtypes differ (input {}, weight {})", dtype_name(x.dtype()),
                                 dtype_name(w.dtype())));
  // y = bias + x W^T, then u = x A^T [R, r] and y += scale * u B^T (the same output buffer).
  Tensor y;
  {
    NoGradGuard raw;  // the base product only; this op records its own node below
    y = linear(x, w, b);
  }
  Tensor x2 = contiguous_raw(x), Ac = contiguous_raw(A), Bc = contiguous_raw(B), wc = contiguous_raw(w);
  Tensor u = empty_uninitialized({R, r}, x.dtype());
  dispatch_float(x.dtype(), "lora_linear", [&](auto tag) {
    using T = decltype(tag);
    auto X = rows_of<T>(x2, R, in);
    kernels::gemm(X, rows_of<T>(Ac, r, in).t(), u.data<T>(), r);                                 // u = x A^T
    kernels::gemm(rows_of<T>(u, R, r), rows_of<T>(Bc, outf, r).t(), y.data<T>(), outf, T(scale), T(1));  // y += s u B^T
  });

  autograd::Recorder rec("lora_linear", {x, w, b, A, B});
  if (!rec) return y;
  const bool nx = rec.needs(0), nw = rec.needs(1), nb = rec.needs(2), nA = rec.needs(3), nB = rec.needs(4);
  // Save only what the needed gradients read: x for dW and dA, u for dB, W/A for dx, B for g B.
  rec.save({(nw || nA) ? x2 : Tensor(), nB ? u : Tensor(), nx ? wc : Tensor(), nx ? Ac : Tensor(),
            (nx || nA) ? Bc : Tensor()});
  Tensor xs = (nw || nA) ? x2 : Tensor(), us = nB ? u : Tensor(), ws = nx ? wc : Tensor(), As = nx ? Ac : Tensor(),
         Bs = (nx || nA) ? Bc : Tensor();
  const Shape xshape = x.sizes();
  // ws is w itself (not a per-call copy), or a bfloat16 weight: read through weight_view.
  const bool w_is_param = wc.impl() == w.impl() || wc.dtype() == DType::bf16;
  rec.finish(y, [=](const Tensor& g0) -> std::vector<Tensor> {
    Tensor g = contiguous_raw(g0);  // [R, out]
    Tensor gx, gw, gb, gA, gB;
    dispatch_float(g.dtype(), "lora_linear backward", [&](auto tag) {
      using T = decltype(tag);
      auto G = rows_of<T>(g, R, outf);
      const T s = T(scale);
      Tensor gu;  // scale * g B: [R, r], shared by dA and dx
      if (nx || nA) {
        gu = empty_uninitialized({R, r}, g.dtype());
        kernels::gemm(G, rows_of<T>(Bs, outf, r), gu.data<T>(), r, s);
      }
      if (nB) {  // dB [out, r] = s g^T u
        gB = empty_uninitialized({outf, r}, g.dtype());
        kernels::gemm(G.t(), rows_of<T>(us, R, r), gB.data<T>(), r, s);
      }
      if (nA) {  // dA [r, in] = (s g B)^T x
        gA = empty_uninitialized({r, in}, g.dtype());
        kernels::gemm(rows_of<T>(gu, R, r).t(), rows_of<T>(xs, R, in), gA.data<T>(), in);
      }
      if (nw) {  // dW [out, in] = g^T x
        gw = empty_uninitialized({outf, in}, g.dtype());
        kernels::gemm(G.t(), rows_of<T>(xs, R, in), gw.data<T>(), in);
      }
      if (nx) {  // dx [R, in] = g W + (s g B) A
        gx = empty_uninitialized(xshape, g.dtype());
        bf16::WeightCopy keep;  // --precision bf16: W's copy, rounded once (core/bf16_weights.h)
        const kernels::MatView<T> W = w_is_param ? kernels::weight_view<T>(ws, keep) : rows_of<T>(ws, outf, in);
        kernels::gemm(G, W, gx.data<T>(), in);
        kernels::gemm(rows_of<T>(gu, R, r), rows_of<T>(As, r, in), gx.data<T>(), in, T(1), T(1));
      }
    });
    if (nb) gb = sum(reshape(g, {R, outf}), {0});
    return {gx, gw, gb, gA, gB};
  });
  return y;
}

}  // namespace peft
