// LayerNorm: per-row statistics in double with lane-parallel (vectorised) sums; dx parallel over rows, dw/db parallel over columns.
#include "core/kernels/layer_norm.h"

#include <algorithm>
#include <cmath>

#include "core/threads.h"

namespace peft::kernels {

namespace {

// Sums of a row with kLanes independent partial sums: a reduction the compiler vectorises
// without -ffast-math (each lane is its own running sum, so no reassociation is needed).
constexpr int64_t kLanes = 16;

template <class Acc, class F>
Acc lane_sum(int64_t D, F term) {
  Acc lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= D; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] += term(i + j);
  Acc total = 0;
  for (; i < D; ++i) total += term(i);
  for (int64_t j = 0; j < kLanes; ++j) total += lanes[j];
  return total;
}

// Statistics and arithmetic in double also for float32 rows: a float mean of x + 1000 is off by
// ~1e-4 of the row's spread (tested), which the normalised output would inherit.
template <class T>
using acc_t = double;

}  // namespace

template <class T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, double* mean, double* rstd, int64_t rows,
                        int64_t D, double eps) {
  using Acc = acc_t<T>;
  const Acc inv_d = Acc(1) / static_cast<Acc>(std::max<int64_t>(D, 1));
#pragma omp parallel for if (rows * D > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    // Two passes (mean, then squared deviations) rather than E[x^2] - E[x]^2, which cancels
    // catastrophically when the row has a large offset.
    const Acc m = lane_sum<Acc>(D, [&](int64_t i) { return Acc(xr[i]); }) * inv_d;
    const Acc v = lane_sum<Acc>(D, [&](int64_t i) {
                    const Acc c = Acc(xr[i]) - m;
                    return c * c;
                  }) * inv_d;
    const Acc rs = Acc(1) / std::sqrt(v + Acc(eps));
    mean[r] = m;
    rstd[r] = rs;
    // Separate loops for the affine cases keep the element loop free of branches.
    if (w && b) {
      for (int64_t i = 0; i < D; ++i) yr[i] = T((Acc(xr[i]) - m) * rs * Acc(w[i]) + Acc(b[i]));
    } else if (w) {
      for (int64_t i = 0; i < D; ++i) yr[i] = T((Acc(xr[i]) - m) * rs * Acc(w[i]));
    } else {
      for (int64_t i = 0; i < D; ++i) yr[i] = T((Acc(xr[i]) - m) * rs + (b ? Acc(b[i]) : Acc(0)));
    }
  }
}

template <class T>
void layer_norm_backward(const T* g, const T* x, const T* w, const double* mean, const double* rstd, T* dx, T* dw,
                         T* db, int64_t rows, int64_t D) {
  using Acc = acc_t<T>;
  const Acc inv_d = Acc(1) / static_cast<Acc>(std::max<int64_t>(D, 1));
  if (dx) {
    // Rows are independent: each thread owns whole rows of dx.
#pragma omp parallel for if (rows * D > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* gr = g + r * D;
      const T* xr = x + r * D;
      T* dr = dx + r * D;
      const Acc m = Acc(mean[r]), rs = Acc(rstd[r]);
      // The two sums of the formula; w == null (no affine) in its own loops, no branch inside.
      Acc a, c;
      if (w) {
        a = lane_sum<Acc>(D, [&](int64_t i) { return Acc(gr[i]) * Acc(w[i]); }) * inv_d;
        c = lane_sum<Acc>(D, [&](int64_t i) { return Acc(gr[i]) * Acc(w[i]) * ((Acc(xr[i]) - m) * rs); }) * inv_d;
      } else {
        a = lane_sum<Acc>(D, [&](int64_t i) { return Acc(gr[i]); }) * inv_d;
        c = lane_sum<Acc>(D, [&](int64_t i) { return Acc(gr[i]) * ((Acc(xr[i]) - m) * rs); }) * inv_d;
      }
      if (w) {
        for (int64_t i = 0; i < D; ++i)
          dr[i] = T(rs * (Acc(gr[i]) * Acc(w[i]) - a - (Acc(xr[i]) - m) * rs * c));
      } else {
        for (int64_t i = 0; i < D; ++i) dr[i] = T(rs * (Acc(gr[i]) - a - (Acc(xr[i]) - m) * rs * c));
      }
    }
  }
  if (dw || db) {
    // Column sums over rows: split by columns so that no two threads write the same output
    // (no atomics, deterministic order). Each column is its own running sum, so the inner loop
    // over columns vectorises.
    constexpr int64_t kChunk = 64;
#pragma omp parallel for if (rows * D > kParallelGrain)
    for (int64_t c0 = 0; c0 < D; c0 += kChunk) {
      const int64_t c1 = std::min(D, c0 + kChunk);
      double aw[kChunk] = {0}, ab[kChunk] = {0};
      for (int64_t r = 0; r < rows; ++r) {
        const T* gr = g + r * D;
        if (dw) {
          const T* xr = x + r * D;
          const double m = mean[r], rs = rstd[r];
          for (int64_t i = c0; i < c1; ++i) aw[i - c0] += static_cast<double>(gr[i]) * ((xr[i] - m) * rs);
        }
        if (db)
          for (int64_t i = c0; i < c1; ++i) ab[i - c0] += gr[i];
      }
      for (int64_t i = c0; i < c1; ++i) {
        if (dw) dw[i] = static_cast<T>(aw[i - c0]);
        if (db) db[i] = static_cast<T>(ab[i - c0]);
      }
    }
  }
}

template void layer_norm_forward<float>(const float*, const float*, const float*, float*, double*, double*, int64_t,
                                        int64_t, double);
template void layer_norm_forward<double>(const double*, const double*, const double*, double*, double*, double*,
                                         int64_t, int64_t, double);
template void layer_norm_backward<float>(const float*, const float*, const float*, const double*, const double*,
                                         float*, float*, float*, int64_t, int64_t);
template void layer_norm_backward<double>(const double*, const double*, const double*, const double*, const double*,
                                          double*, double*, double*, int64_t, int64_t);

}  // namespace peft::kernels
