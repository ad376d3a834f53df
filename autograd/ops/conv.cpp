// Patch-embedding convolution (stride = kernel = P) as im2col + one GEMM; col2im for the input gradient.
#include "autograd/ops/conv.h"

#include <fmt/format.h>

#include <algorithm>

#include "autograd/node.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/view.h"
#include "core/error.h"
#include "core/kernels/gemm_view.h"
#include "core/threads.h"

namespace peft {

namespace {

// Geometry of one call: image [B, C, H, W], P x P patches on a gh x gw grid, N = gh*gw tokens,
// each unfolded into K = C*P*P values (channel-major, then patch row, then patch column: the
// order of w [D, C, P, P] flattened to [D, K]).
struct PatchDims {
  int64_t B, C, H, W, P, D, gh, gw, N, K;
};

// cols [B*N, K]: row (b*N + r*gw + c) is patch (r, c) of image b. x may have any strides.
template <class T>
void im2col(const Tensor& x, const PatchDims& d, T* cols) {
  const T* xb = static_cast<const T*>(x.impl()->storage->data) + x.offset();
  const Shape& st = x.strides();
  const int64_t rows = d.B * d.N;
#pragma omp parallel for if (rows * d.K > kParallelGrain)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / d.N, r = (row % d.N) / d.gw, c = row % d.gw;
    T* out = cols + row * d.K;
    for (int64_t ci = 0; ci < d.C; ++ci)
      for (int64_t pi = 0; pi < d.P; ++pi) {
        const T* src = xb + b * st[0] + ci * st[1] + (r * d.P + pi) * st[2] + c * d.P * st[3];
        for (int64_t pj = 0; pj < d.P; ++pj) *out++ = src[pj * st[3]];
      }
  }
}

// The inverse of im2col for non-overlapping patches: every pixel belongs to exactly one patch,
// so dx is a plain scatter (no accumulation). dx is contiguous [B, C, H, W].
template <class T>
void col2im(const T* dcols, const PatchDims& d, T* dx) {
  const int64_t rows = d.B * d.N;
#pragma omp parallel for if (rows * d.K > kParallelGrain)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / d.N, r = (row % d.N) / d.gw, c = row % d.gw;
    const T* in = dcols + row * d.K;
    for (int64_t ci = 0; ci < d.C; ++ci)
      for (int64_t pi = 0; pi < d.P; ++pi) {
        T* dst = dx + ((b * d.C + ci) * d.H + r * d.P + pi) * d.W + c * d.P;
        for (int64_t pj = 0; pj < d.P; ++pj) dst[pj] = *in++;
      }
  }
}

PatchDims check_args(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (!x.defined() || !w.defined())
    throw ValueError("conv2d_patch: undefined input or weight. Hint: x [B, C, H, W], w [D, C, P, P]");
  if (x.dim() != 4 || w.dim() != 4 || w.size(2) != w.size(3) || w.size(2) < 1)
    throw ShapeError(fmt::format("conv2d_patch: bad ranks (got x {}, w {}, expected x [B, C, H, W], w [D, C, P, P]). "
                                 "Hint: batch single images with unsqueeze(x, 0)",
                                 shape_str(x.sizes()), shape_str(w.sizes())));
  PatchDims d{};
  d.B = x.size(0), d.C = x.size(1), d.H = x.size(2), d.W = x.size(3), d.P = w.size(2), d.D = w.size(0);
  if (w.size(1) != d.C)
    throw ShapeError(fmt::format("conv2d_patch: input has {} channels, weight expects {} (got x {}, w {}). "
                                 "Hint: images are [B, C, H, W]",
                                 d.C, w.size(1), shape_str(x.sizes()), shape_str(w.sizes())));
  if (d.H % d.P != 0 || d.W % d.P != 0)
    throw ShapeError(fmt::format("conv2d_patch: image size {}x{} is not divisible by patch size {} (got x {}, w {}). "
                                 "Hint: resize or crop the image to a multiple of {}",
                                 d.H, d.W, d.P, shape_str(x.sizes()), shape_str(w.sizes()), d.P));
  if (b.defined() && (b.dim() != 1 || b.size(0) != d.D))
    throw ShapeError(fmt::format("conv2d_patch: bias {} does not match weight {} (expected [{}])", shape_str(b.sizes()),
                                 shape_str(w.sizes()), d.D));
  if (x.dtype() != w.dtype() || (b.defined() && b.dtype() != x.dtype()))
    throw DTypeError(fmt::format("conv2d_patch: dtypes differ (x {} {}, w {} {}). Hint: convert with .to()",
                                 dtype_name(x.dtype()), shape_str(x.sizes()), dtype_name(w.dtype()),
                                 shape_str(w.sizes())));
  d.gh = d.H / d.P, d.gw = d.W / d.P, d.N = d.gh * d.gw, d.K = d.C * d.P * d.P;
  return d;
}

}  // namespace

Tensor conv2d_patch(const Tensor& x, const Tensor& w, const Tensor& b) {
  const PatchDims d = check_args(x, w, b);
  const int64_t R = d.B * d.N;
  Tensor wc = w.is_contiguous() ? w : w.clone();  // viewed as [D, K]
  Tensor cols = empty({R, d.K}, x.dtype());         // cols: [B*N, K]
  Tensor y = empty({d.B, d.N, d.D}, x.dtype());     // y: [B, N, D]
  dispatch_float(x.dtype(), "conv2d_patch", [&](auto tag) {
    using T = decltype(tag);
    im2col<T>(x, d, cols.data<T>());
    T* py = y.data<T>();
    T beta = 0;
    if (b.defined()) {  // start from the bias and let the GEMM accumulate onto it
      Tensor bc = b.is_contiguous() ? b : b.clone();
      const T* pb = bc.template data<T>();
      for (int64_t r = 0; r < R; ++r) std::copy(pb, pb + d.D, py + r * d.D);
      beta = 1;
    }
    kernels::MatView<T> X{cols.data<T>(), R, d.K, false, d.K}, Wm{wc.data<T>(), d.D, d.K, false, d.K};
    kernels::gemm(X, Wm.t(), py, d.D, T(1), beta);  // y [R, D] = cols [R, K] W^T [K, D]
  });

  autograd::Recorder rec("conv2d_patch", {x, w, b});
  if (rec) {
    const bool nx = rec.needs(0), nw = rec.needs(1), nb = rec.needs(2);
    // cols feed only dW; W feeds only dx. A frozen patch embed keeps neither alive.
    Tensor cs = nw ? cols : Tensor(), ws = nx ? wc.detach() : Tensor();
    rec.save({cs, ws});
    Shape wshape = w.sizes();
    rec.finish(y, [=](const Tensor& g0) -> std::vector<Tensor> {
      Tensor g = g0.is_contiguous() ? g0 : g0.clone();  // dY: [B, N, D] as [R, D]
      Tensor gx, gw, gb;
      dispatch_float(g.dtype(), "conv2d_patch backward", [&](auto tag) {
        using T = decltype(tag);
        kernels::MatView<T> G{g.template data<T>(), R, d.D, false, d.D};
        if (nw) {  // dW [D, K] = dY^T [D, R] cols [R, K]
          gw = empty(wshape, g.dtype());
          kernels::MatView<T> X{cs.template data<T>(), R, d.K, false, d.K};
          kernels::gemm(G.t(), X, gw.template data<T>(), d.K);
        }
        if (nx) {  // dcols [R, K] = dY [R, D] W [D, K], then scattered back to pixels
          Tensor dcols = empty({R, d.K}, g.dtype());
          kernels::MatView<T> Wm{ws.template data<T>(), d.D, d.K, false, d.K};
          kernels::gemm(G, Wm, dcols.template data<T>(), d.K);
          gx = empty({d.B, d.C, d.H, d.W}, g.dtype());
          col2im<T>(dcols.template data<T>(), d, gx.template data<T>());
        }
      });
      if (nb) gb = sum(reshape(g, {R, d.D}), {0});  // db = column sums of dY
      return {gx, gw, gb};
    });
  }
  return y;
}

}  // namespace peft
