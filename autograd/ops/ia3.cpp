// (IA)^3's fused ops: ia3_qkv_linear (the k/v scales as an epilogue of the qkv GEMM) and
// gelu_scale_linear (fc2(gelu(h) * l), GELU recomputed as in gelu_linear), forward and backward.
#include "autograd/ops/ia3.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/index.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/unary.h"
#include "autograd/ops/view.h"
#include "core/error.h"
#include "core/kernels/fast_math.h"
#include "core/kernels/gemm_view.h"
#include "core/threads.h"

namespace peft {

namespace {

using kernels::contiguous_raw;
using kernels::rows_of;

// Columns per segment of the GELU backward's product buffer (on the stack).
constexpr int64_t kCols = 256;

// Streams rows [0, R), one contiguous range per thread, each range summing into its own zeroed
// double accumulator [C] (acc is null when out is); out[c] = the ranges' sums added in range
// order, so the result depends only on the thread count. Rows are read in memory order: a
// column-block order re-walks the rows with a stride that cost ~2x in the GELU sweep.
template <class T, class Body>
void rows_with_column_sums(int64_t R, int64_t C, bool parallel, T* out, Body body) {
  const int64_t parts = parallel ? std::min<int64_t>(std::max(1, omp_get_max_threads()), R) : 1;
  std::vector<double> acc(out ? static_cast<size_t>(parts * C) : 0, 0.0);
#pragma omp parallel for num_threads(static_cast<int>(parts)) if (parts > 1)
  for (int64_t p = 0; p < parts; ++p) body(R * p / parts, R * (p + 1) / parts, out ? acc.data() + p * C : nullptr);
  if (!out) return;
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0;
    for (int64_t p = 0; p < parts; ++p) sum += acc[static_cast<size_t>(p * C + c)];
    out[c] = static_cast<T>(sum);
  }
}

// The loop bodies below are templates shared by the float and double kernels; always inlined, so
// that each target_clones copy of a float kernel compiles them for its own vector width.
#define PEFT_IA3_INLINE inline __attribute__((always_inline))

// ---------------------------------------------------------------------------------------------
// ia3_qkv_linear kernels. z is the GEMM output [R, 3D]; only its k/v block [R, 2D] is scaled.

// One row's k/v block of n = 2D values: z_kv[i] = y[i] (when z_kv), y[i] *= s[i].
template <class T>
PEFT_IA3_INLINE void kv_epilogue_body(T* y, const T* s, T* z_kv, int64_t n) {
  if (z_kv) std::memcpy(z_kv, y, static_cast<size_t>(n) * sizeof(T));
  for (int64_t i = 0; i < n; ++i) y[i] *= s[i];
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void kv_epilogue(float* y, const float* s, float* z_kv,
                                                                               int64_t n) {
  kv_epilogue_body(y, s, z_kv, n);
}
void kv_epilogue(double* y, const double* s, double* z_kv, int64_t n) { kv_epilogue_body(y, s, z_kv, n); }

// One row's segment of the k/v block: acc[i] += g[i] z[i] (when z), gs[i] = g[i] s[i] (when gs).
template <class T>
PEFT_IA3_INLINE void kv_backward_body(const T* g, const T* z, const T* s, T* gs, int64_t n, double* acc) {
  if (z)
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<double>(g[i]) * static_cast<double>(z[i]);
  if (gs)
    for (int64_t i = 0; i < n; ++i) gs[i] = g[i] * s[i];
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void kv_backward(const float* g, const float* z,
                                                                               const float* s, float* gs, int64_t n,
                                                                               double* acc) {
  kv_backward_body(g, z, s, gs, n, acc);
}
void kv_backward(const double* g, const double* z, const double* s, double* gs, int64_t n, double* acc) {
  kv_backward_body(g, z, s, gs, n, acc);
}

// One sweep over g [R, 3D]: gs = g * [1 | l_k | l_v] (when gs) and dl[c] = sum_r g[r, D + c]
// z_kv[r, c] for c in [0, 2D) (when dl), summed in double.
template <class T>
void qkv_backward_sweep(const T* g, const T* z_kv, const T* s_kv, T* gs, T* dl, int64_t R, int64_t D) {
  const int64_t C = 3 * D, K = 2 * D;
  rows_with_column_sums(R, K, R * C > kParallelGrain, dl, [&](int64_t r0, int64_t r1, double* acc) {
    for (int64_t r = r0; r < r1; ++r) {
      if (gs) std::memcpy(gs + r * C, g + r * C, static_cast<size_t>(D) * sizeof(T));  // q: unscaled
      kv_backward(g + r * C + D, acc ? z_kv + r * K : nullptr, s_kv, gs ? gs + r * C + D : nullptr, K, acc);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// gelu_scale_linear kernels: the float32 GELU is core/kernels/gelu.cpp's (same fast erf/exp, so
// the fused op equals gelu_linear at l = 1); float64 calls libm (the gradcheck path).

constexpr float kInvSqrt2f = 0.70710678118654752440f, kInvSqrt2Pif = 0.39894228040143267794f;
constexpr double kInvSqrt2 = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794;

// Phi(v) and exp(-v^2 / 2) (the GELU's cdf and its derivative's exp), one exp for both.
PEFT_IA3_INLINE void gelu_parts(float v, float& cdf, float& e) {
  const float z = v * kInvSqrt2f;
  e = kernels::exp_fast(-z * z);
  cdf = 0.5f * (1.0f + kernels::erf_with_exp(z, e));
}
PEFT_IA3_INLINE void gelu_parts(double v, double& cdf, double& e) {
  cdf = 0.5 * (1.0 + std::erf(v * kInvSqrt2));
  e = std::exp(-0.5 * v * v);
}

// One row: a[i] = gelu(h[i]) * l[i].
template <class T>
PEFT_IA3_INLINE void gelu_scale_body(const T* h, const T* l, T* a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T cdf, e;
    gelu_parts(h[i], cdf, e);
    a[i] = h[i] * cdf * l[i];
  }
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void gelu_scale_row(const float* h, const float* l,
                                                                                  float* a, int64_t n) {
  gelu_scale_body(h, l, a, n);
}
void gelu_scale_row(const double* h, const double* l, double* a, int64_t n) { gelu_scale_body(h, l, a, n); }

// a [R, F] = gelu(h) * l, rows split across the team.
template <class T>
void gelu_scale_rows(const T* h, const T* l, T* a, int64_t R, int64_t F) {
#pragma omp parallel for if (R * F > kParallelGrain)
  for (int64_t r = 0; r < R; ++r) gelu_scale_row(h + r * F, l, a + r * F, F);
}

// One row segment of da = g W (n <= kCols): acc[i] += da[i] gelu(h[i]) (dl, when acc), then
// da[i] = da[i] l[i] gelu'(h[i]) (dh in place, when l). gelu' = Phi + v phi. The products go
// through a T buffer and only then into the double sums: a loop that mixed float and double
// would run the GELU polynomial at the double vector width, half the float one.
template <class T, bool kSum, bool kDh>
PEFT_IA3_INLINE void gelu_scale_backward_body(T* da, const T* h, const T* l, int64_t n, double* acc) {
  const T inv_sqrt_2pi = std::is_same_v<T, float> ? T(kInvSqrt2Pif) : T(kInvSqrt2Pi);
  T prod[kCols];
  for (int64_t i = 0; i < n; ++i) {
    const T v = h[i];
    T cdf, e;
    gelu_parts(v, cdf, e);
    if constexpr (kSum) prod[i] = da[i] * (v * cdf);
    if constexpr (kDh) da[i] = da[i] * l[i] * (cdf + v * inv_sqrt_2pi * e);
  }
  if constexpr (kSum)
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<double>(prod[i]);
}
template <class T>
PEFT_IA3_INLINE void gelu_scale_backward_any(T* da, const T* h, const T* l, int64_t n, double* acc) {
  if (acc && l)
    gelu_scale_backward_body<T, true, true>(da, h, l, n, acc);
  else if (acc)
    gelu_scale_backward_body<T, true, false>(da, h, l, n, acc);
  else if (l)
    gelu_scale_backward_body<T, false, true>(da, h, l, n, acc);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void gelu_scale_backward(float* da, const float* h,
                                                                                       const float* l, int64_t n,
                                                                                       double* acc) {
  gelu_scale_backward_any(da, h, l, n, acc);
}
void gelu_scale_backward(double* da, const double* h, const double* l, int64_t n, double* acc) {
  gelu_scale_backward_any(da, h, l, n, acc);
}

// One sweep over da [R, F]: dl (when dl) and dh in place (when l).
template <class T>
void gelu_scale_backward_sweep(T* da, const T* h, const T* l, T* dl, int64_t R, int64_t F) {
  rows_with_column_sums(R, F, R * F > kParallelGrain, dl, [&](int64_t r0, int64_t r1, double* acc) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c0 = 0; c0 < F; c0 += kCols)
        gelu_scale_backward(da + r * F + c0, h + r * F + c0, l ? l + c0 : nullptr, std::min(kCols, F - c0),
                            acc ? acc + c0 : nullptr);
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ia3_qkv_linear: y = [z_q | l_k z_k | l_v z_v], z = x W^T + b.
//
//   forward   z = x W^T + b (the linear GEMM, bias first), then one pass over each row's k/v
//             block while it is hot: keep z_kv [R, 2D] (only for dl) and scale it in place.
//   backward  gs = g * [1 | l_k | l_v]           [R, 3D] (for dx, dW, db)
//             [dl_k | dl_v] = sum_r g_kv * z_kv   [2D]    (same sweep over g)
//             dx = gs W [R, in], dW = gs^T x [3D, in], db = sum_r gs [3D]
Tensor ia3_qkv_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& l_k, const Tensor& l_v) {
  if (!l_k.defined() || !l_v.defined() || l_k.dim() != 1 || l_v.dim() != 1 || l_k.size(0) != l_v.size(0) ||
      w.dim() != 2 || w.size(0) != 3 * l_k.size(0))
    throw ShapeError(fmt::format(
        "ia3_qkv_linear: l_k {} and l_v {} do not fit weight {} (expected l_k, l_v [D] and the fused qkv weight [3D, in])",
        l_k.defined() ? shape_str(l_k.sizes()) : "undefined", l_v.defined() ? shape_str(l_v.sizes()) : "undefined",
        shape_str(w.sizes())));
  // A weight stored in bfloat16 (frozen, --precision bf16) computes in float32.
  const DType wdt = compute_dtype(w.dtype());
  if (l_k.dtype() != wdt || l_v.dtype() != wdt)
    throw DTypeError(fmt::format("ia3_qkv_linear: l_k/l_v dtypes ({}, {}) differ from the weight's ({})",
                                 dtype_name(l_k.dtype()), dtype_name(l_v.dtype()), dtype_name(w.dtype())));
  const int64_t D = l_k.size(0), in = w.size(1), outf = 3 * D;
  const bool fused = x.defined() && is_floating(x.dtype()) && kernels::weight_pairs_with(x, w) && x.dim() >= 1 &&
                     x.size(-1) == in && x.numel() > 0 && in > 0 && D > 0;
  // Empty dims have no BLAS layout: the composed ops handle them (and check x).
  if (!fused) return mul(linear(x, w, b), cat({ones({D}, l_k.dtype()), l_k, l_v}, 0));
  const int64_t R = x.numel() / in;
  Tensor y, s_kv;  // y starts as z; s_kv = [l_k | l_v] [2D]
  {
    NoGradGuard raw;  // the GEMM and the scale vector only; this op records its own node below
    y = linear(x, w, b);
    s_kv = cat({l_k, l_v}, 0);
  }
  autograd::Recorder rec("ia3_qkv_linear", {x, w, b, l_k, l_v});
  const bool nx = rec.needs(0), nw = rec.needs(1), nb = rec.needs(2), nk = rec.needs(3), nv = rec.needs(4);
  const bool nl = nk || nv, ngs = nx || nw || nb;
  Tensor z_kv = nl ? empty_uninitialized({R, 2 * D}, y.dtype()) : Tensor();
  dispatch_float(y.dtype(), "ia3_qkv_linear", [&](auto tag) {
    using T = decltype(tag);
    T* py = y.data<T>();
    const T* s = s_kv.data<T>();
    T* pz = nl ? z_kv.data<T>() : nullptr;
#pragma omp parallel for if (R * 2 * D > kParallelGrain)
    for (int64_t r = 0; r < R; ++r) kv_epilogue(py + r * outf + D, s, pz ? pz + r * 2 * D : nullptr, 2 * D);
  });
  if (!rec) return y;
  // Save only what the needed gradients read: z_kv for dl, the scales for gs, x for dW, W for dx.
  const Tensor zs = z_kv, ss = ngs ? s_kv : Tensor(), xs = nw ? contiguous_raw(x) : Tensor(),
               ws = nx ? contiguous_raw(w) : Tensor();
  // ws is w itself (or a bfloat16 weight): its bf16 form comes from weight_view.
  const bool w_is_param = nx && (ws.impl() == w.impl() || ws.dtype() == DType::bf16);
  rec.save({zs, ss, xs, ws});
  const Shape xshape = x.sizes();
  rec.finish(y, [=](const Tensor& g0) -> std::vector<Tensor> {
    const Tensor g = contiguous_raw(g0);  // [R, 3D]
    Tensor gs = ngs ? empty_uninitialized({R, outf}, g.dtype()) : Tensor();
    Tensor dl = nl ? empty_uninitialized({2 * D}, g.dtype()) : Tensor();
    Tensor gx, gw, gb, gk, gv;
    dispatch_float(g.dtype(), "ia3_qkv_linear backward", [&](auto tag) {
      using T = decltype(tag);
      qkv_backward_sweep<T>(g.data<T>(), nl ? zs.data<T>() : nullptr, ngs ? ss.data<T>() : nullptr,
                            ngs ? gs.data<T>() : nullptr, nl ? dl.data<T>() : nullptr, R, D);
      if (nx) {  // dx [R, in] = gs W
        gx = empty_uninitialized(xshape, g.dtype());
        bf16::WeightCopy keep;  // --precision bf16: W's copy, rounded once (core/bf16_weights.h)
        kernels::gemm(rows_of<T>(gs, R, outf),
                      w_is_param ? kernels::weight_view<T>(ws, keep) : rows_of<T>(ws, outf, in), gx.data<T>(), in);
      }
      if (nw) {  // dW [3D, in] = gs^T x: only when W trains
        gw = empty_uninitialized({outf, in}, g.dtype());
        kernels::gemm(rows_of<T>(gs, R, outf).t(), rows_of<T>(xs, R, in), gw.data<T>(), in);
      }
    });
    if (nb) gb = sum(gs, {0});
    if (nk) gk = slice(dl, 0, 0, D).clone();
    if (nv) gv = slice(dl, 0, D, 2 * D).clone();
    return {gx, gw, gb, gk, gv};
  });
  return y;
}

// ---------------------------------------------------------------------------------------------
// gelu_scale_linear: y = (gelu(h) * l) W^T + b.
//
//   forward   a = gelu(h) * l [R, F] in one pass, y = a W^T + b; a is dropped after the GEMM
//             (or written over h when nothing records and the caller handed over h).
//   backward  da = g W [R, F] (for dh and dl), then one sweep over it, GELU recomputed from h:
//               dl = sum_r da * gelu(h),  dh = da * l * gelu'(h) (in place)
//             dW = g^T (gelu(h) * l) (a recomputed), db = sum_r g
Tensor gelu_scale_linear(Tensor h, const Tensor& l, const Tensor& w, const Tensor& b) {
  if (!l.defined() || l.dim() != 1 || w.dim() != 2 || l.size(0) != w.size(1))
    throw ShapeError(fmt::format("gelu_scale_linear: scale {} does not fit weight {} (expected l [hidden] for weight "
                                 "[out, hidden])",
                                 l.defined() ? shape_str(l.sizes()) : "undefined", shape_str(w.sizes())));
  const DType wdt = compute_dtype(w.dtype());  // bf16: a frozen weight computes in float32
  if (l.dtype() != wdt)
    throw DTypeError(fmt::format("gelu_scale_linear: scale dtype {} differs from the weight's ({})",
                                 dtype_name(l.dtype()), dtype_name(w.dtype())));
  const int64_t F = w.size(1), outf = w.size(0);
  const bool fused = h.defined() && is_floating(h.dtype()) && kernels::weight_pairs_with(h, w) && h.dim() >= 1 &&
                     h.size(-1) == F && h.numel() > 0 && outf > 0 && F > 0;
  if (!fused) return linear(mul(gelu(h), l), w, b);  // the composed ops check h and empty dims
  const int64_t R = h.numel() / F;
  const Tensor lc = contiguous_raw(l);
  const bool records = grad_enabled() && (h.requires_grad() || l.requires_grad() || w.requires_grad() ||
                                          (b.defined() && b.requires_grad()));
  const bool in_place = !records && h.is_contiguous() && h.is_sole_owner();  // nobody else sees h
  const Tensor hc = contiguous_raw(h);
  Tensor y;
  {
    Tensor a = in_place ? hc : empty_uninitialized(h.sizes(), h.dtype());  // lives until the GEMM has read it
    dispatch_float(h.dtype(), "gelu_scale_linear", [&](auto tag) {
      using T = decltype(tag);
      gelu_scale_rows<T>(hc.data<T>(), lc.data<T>(), a.data<T>(), R, F);
    });
    NoGradGuard raw;
    y = linear(a, w, b);
  }
  autograd::Recorder rec("gelu_scale_linear", {h, l, w, b});
  if (!rec) return y;
  const bool nh = rec.needs(0), nl = rec.needs(1), nw = rec.needs(2), nb = rec.needs(3);
  // h for every gradient but db (GELU is recomputed from it), l for dh and dW, W for da.
  const Tensor hs = (nh || nl || nw) ? hc.detach() : Tensor(), ls = (nh || nw) ? lc.detach() : Tensor(),
               ws = (nh || nl) ? contiguous_raw(w) : Tensor();
  const bool w_is_param = (nh || nl) && (ws.impl() == w.impl() || ws.dtype() == DType::bf16);
  rec.save({hs, ls, ws});
  const Shape hshape = h.sizes(), wshape = w.sizes();
  rec.finish(y, [=](const Tensor& g0) -> std::vector<Tensor> {
    const Tensor g = contiguous_raw(g0);  // [R, out]
    Tensor gh, gl, gw, gb;
    dispatch_float(g.dtype(), "gelu_scale_linear backward", [&](auto tag) {
      using T = decltype(tag);
      auto G = rows_of<T>(g, R, outf);
      if (nw) {  // dW [out, F] = g^T (gelu(h) * l), the scaled activation recomputed
        Tensor a = empty_uninitialized({R, F}, g.dtype());
        gelu_scale_rows<T>(hs.data<T>(), ls.data<T>(), a.data<T>(), R, F);
        gw = empty_uninitialized(wshape, g.dtype());
        kernels::gemm(G.t(), rows_of<T>(a, R, F), gw.data<T>(), F);
      }
      if (nh || nl) {  // da = g W, then dl and dh (in place) in one sweep
        Tensor da = empty_uninitialized(hshape, g.dtype());
        bf16::WeightCopy keep;  // --precision bf16: W's copy, rounded once (core/bf16_weights.h)
        kernels::gemm(G, w_is_param ? kernels::weight_view<T>(ws, keep) : rows_of<T>(ws, outf, F), da.data<T>(), F);
        if (nl) gl = empty_uninitialized({F}, g.dtype());
        gelu_scale_backward_sweep<T>(da.data<T>(), hs.data<T>(), nh ? ls.data<T>() : nullptr,
                                     nl ? gl.data<T>() : nullptr, R, F);
        if (nh) gh = da;
      }
    });
    if (nb) gb = sum(reshape(g, {R, outf}), {0});
    return {gh, gl, gw, gb};
  });
  return y;
}

}  // namespace peft
