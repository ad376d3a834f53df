// LayerNorm: per-row statistics in double; dx parallel over rows, dw/db parallel over columns.
#include "core/kernels/layer_norm.h"

#include <algorithm>
#include <cmath>

#include "core/threads.h"

namespace peft::kernels {

template <class T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, double* mean, double* rstd, int64_t rows,
                        int64_t D, double eps) {
  const double inv_d = 1.0 / static_cast<double>(std::max<int64_t>(D, 1));
#pragma omp parallel for if (rows * D > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    // Two passes (mean, then squared deviations) rather than E[x^2] - E[x]^2, which cancels
    // catastrophically when the row has a large offset.
    double m = 0;
    for (int64_t i = 0; i < D; ++i) m += xr[i];
    m *= inv_d;
    double v = 0;
    for (int64_t i = 0; i < D; ++i) {
      const double c = xr[i] - m;
      v += c * c;
    }
    v *= inv_d;
    const double rs = 1.0 / std::sqrt(v + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (int64_t i = 0; i < D; ++i) {
      double h = (xr[i] - m) * rs;
      if (w) h *= w[i];
      if (b) h += b[i];
      yr[i] = static_cast<T>(h);
    }
  }
}

template <class T>
void layer_norm_backward(const T* g, const T* x, const T* w, const double* mean, const double* rstd, T* dx, T* dw,
                         T* db, int64_t rows, int64_t D) {
  const double inv_d = 1.0 / static_cast<double>(std::max<int64_t>(D, 1));
  if (dx) {
    // Rows are independent: each thread owns whole rows of dx.
#pragma omp parallel for if (rows * D > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* gr = g + r * D;
      const T* xr = x + r * D;
      T* dr = dx + r * D;
      const double m = mean[r], rs = rstd[r];
      double s_gh = 0, s_ghx = 0;
      for (int64_t i = 0; i < D; ++i) {
        const double gh = w ? static_cast<double>(gr[i]) * w[i] : static_cast<double>(gr[i]);
        s_gh += gh;
        s_ghx += gh * (xr[i] - m) * rs;
      }
      const double a = s_gh * inv_d, c = s_ghx * inv_d;
      for (int64_t i = 0; i < D; ++i) {
        const double gh = w ? static_cast<double>(gr[i]) * w[i] : static_cast<double>(gr[i]);
        const double xh = (xr[i] - m) * rs;
        dr[i] = static_cast<T>(rs * (gh - a - xh * c));
      }
    }
  }
  if (dw || db) {
    // Column sums over rows: split by columns so that no two threads write the same output
    // (no atomics, deterministic order).
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
