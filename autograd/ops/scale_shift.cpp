// scale_shift: y = x * scale + shift over the last dim (SSF), forward and backward.
#include "autograd/ops/scale_shift.h"

#include <algorithm>
#include <vector>

#include "autograd/node.h"
#include "autograd/ops/elementwise.h"
#include "core/threads.h"

namespace peft {

namespace {

// y[r, c] = x[r, c] * s[c] + t[c] on contiguous [R, C] buffers.
template <class T>
void scale_shift_forward(const T* x, const T* s, const T* t, T* y, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > kParallelGrain)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * s[c] + t[c];
  }
}

// as[c - c0] += sum_r g[r, c] x[r, c] (when x) and at[c - c0] += sum_r g[r, c] (when at), for
// columns [c0, c1), accumulated in double. The float version is compiled for AVX-512 / AVX2 too.
template <class T>
inline void column_block_sums(const T* g, const T* x, int64_t R, int64_t C, int64_t c0, int64_t c1, double* as,
                              double* at) {
  for (int64_t r = 0; r < R; ++r) {
    const T* gr = g + r * C;
    if (x) {
      const T* xr = x + r * C;
      for (int64_t c = c0; c < c1; ++c) as[c - c0] += static_cast<double>(gr[c]) * static_cast<double>(xr[c]);
    }
    if (at)
      for (int64_t c = c0; c < c1; ++c) at[c - c0] += static_cast<double>(gr[c]);
  }
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void block_sums(const float* g, const float* x, int64_t R,
                                                                              int64_t C, int64_t c0, int64_t c1,
                                                                              double* as, double* at) {
  column_block_sums(g, x, R, C, c0, c1, as, at);
}
void block_sums(const double* g, const double* x, int64_t R, int64_t C, int64_t c0, int64_t c1, double* as,
                double* at) {
  column_block_sums(g, x, R, C, c0, c1, as, at);
}

// One sweep over g [R, C]: dx = g * s (when dx), ds[c] = sum_r g x, dt[c] = sum_r g (when asked),
// accumulated in double. The columns are split across the team, so no two threads share a sum.
template <class T>
void scale_shift_backward(const T* g, const T* x, const T* s, T* dx, T* ds, T* dt, int64_t R, int64_t C) {
  if (dx) {
#pragma omp parallel for if (R * C > kParallelGrain)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) dx[r * C + c] = g[r * C + c] * s[c];
  }
  if (!ds && !dt) return;
  constexpr int64_t kCols = 256;  // columns per block: two double accumulators each stay in L1
  const int64_t blocks = (C + kCols - 1) / kCols;
#pragma omp parallel for if (R * C > kParallelGrain && blocks > 1)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols);
    double as[kCols] = {0}, at[kCols] = {0};
    block_sums(g, ds ? x : nullptr, R, C, c0, c1, as, dt ? at : nullptr);
    for (int64_t c = c0; c < c1; ++c) {
      if (ds) ds[c] = static_cast<T>(as[c - c0]);
      if (dt) dt[c] = static_cast<T>(at[c - c0]);
    }
  }
}

}  // namespace

Tensor scale_shift(const Tensor& x, const Tensor& scale, const Tensor& shift) {
  const bool fused = x.defined() && scale.defined() && shift.defined() && is_floating(x.dtype()) && x.dim() >= 1 &&
                     scale.dim() == 1 && shift.dim() == 1 && scale.size(0) == x.size(-1) &&
                     shift.size(0) == x.size(-1) && scale.dtype() == x.dtype() && shift.dtype() == x.dtype();
  if (!fused) return add(mul(x, scale), shift);
  const int64_t C = x.size(-1), R = C == 0 ? 0 : x.numel() / C;
  const Tensor xc = x.is_contiguous() ? x : x.clone();
  const Tensor sc = scale.is_contiguous() ? scale : scale.clone(), tc = shift.is_contiguous() ? shift : shift.clone();
  Tensor y = empty_uninitialized(x.sizes(), x.dtype());
  dispatch_float(x.dtype(), "scale_shift", [&](auto tag) {
    using T = decltype(tag);
    scale_shift_forward<T>(xc.data<T>(), sc.data<T>(), tc.data<T>(), y.data<T>(), R, C);
  });

  autograd::Recorder rec("scale_shift", {x, scale, shift});
  if (!rec) return y;
  const bool nx = rec.needs(0), ns = rec.needs(1), nt = rec.needs(2);
  const Tensor xs = ns ? xc.detach() : Tensor(), ss = nx ? sc.detach() : Tensor();
  rec.save({xs, ss});
  const Shape xshape = x.sizes();
  rec.finish(y, [=](const Tensor& g0) -> std::vector<Tensor> {
    const Tensor g = g0.is_contiguous() ? g0 : g0.clone();
    Tensor dx = nx ? empty_uninitialized(xshape, g.dtype()) : Tensor();
    Tensor ds = ns ? empty_uninitialized({C}, g.dtype()) : Tensor();
    Tensor dt = nt ? empty_uninitialized({C}, g.dtype()) : Tensor();
    dispatch_float(g.dtype(), "scale_shift backward", [&](auto tag) {
      using T = decltype(tag);
      scale_shift_backward<T>(g.data<T>(), ns ? xs.data<T>() : nullptr, nx ? ss.data<T>() : nullptr,
                              nx ? dx.data<T>() : nullptr, ns ? ds.data<T>() : nullptr, nt ? dt.data<T>() : nullptr,
                              R, C);
    });
    return {dx, ds, dt};
  });
  return y;
}

}  // namespace peft
