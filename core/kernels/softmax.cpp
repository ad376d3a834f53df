// Row softmax / log_softmax: one pass for the max, one for the sum, one to write (rows in parallel).
#include "core/kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/kernels/fast_math.h"
#include "core/threads.h"

namespace peft::kernels {

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t n, bool log) {
#pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    // Subtract the row max: exp overflows above ~88 in float32 (and ~709 in float64).
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) m = xr[i] > m ? xr[i] : m;
    // A row of all -inf (fully masked) would give inf - inf = NaN; shift by 0 instead, which
    // yields NaN only where PyTorch does too (0/0), never from the shift itself.
    if (m == -std::numeric_limits<T>::infinity()) m = T(0);
    double s = 0;  // accumulate in double: long rows of float32 lose digits otherwise
    for (int64_t i = 0; i < n; ++i) {
      T e = std::exp(xr[i] - m);
      if (!log) yr[i] = e;
      s += e;
    }
    if (log) {
      const T lse = static_cast<T>(std::log(s));
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) - lse;
    } else {
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
    }
  }
}

template <class T>
void softmax_backward(const T* g, const T* y, T* dx, int64_t rows, int64_t n, bool log) {
#pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = g + r * n;
    const T* yr = y + r * n;
    T* dr = dx + r * n;
    double s = 0;
    if (log) {
      for (int64_t i = 0; i < n; ++i) s += gr[i];
      const T st = static_cast<T>(s);
      for (int64_t i = 0; i < n; ++i) dr[i] = gr[i] - std::exp(yr[i]) * st;
    } else {
      for (int64_t i = 0; i < n; ++i) s += static_cast<double>(gr[i]) * yr[i];
      const T st = static_cast<T>(s);
      for (int64_t i = 0; i < n; ++i) dr[i] = yr[i] * (gr[i] - st);
    }
  }
}

namespace {
// Lane-parallel reductions (each lane its own running max/sum), so that they vectorise without
// reassociating float additions behind the compiler's back.
constexpr int64_t kLanes = 16;
}  // namespace

__attribute__((target_clones("avx512f", "avx2", "default"))) void softmax_row_inplace(float* row, int64_t n) {
  float lanes[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) lanes[j] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] = row[i + j] > lanes[j] ? row[i + j] : lanes[j];
  float mx = -std::numeric_limits<float>::infinity();
  for (; i < n; ++i) mx = row[i] > mx ? row[i] : mx;
  for (int64_t j = 0; j < kLanes; ++j) mx = lanes[j] > mx ? lanes[j] : mx;
  if (mx == -std::numeric_limits<float>::infinity()) {
    // Every score is -inf (fully masked: zeros) or NaN, which the max skips: then the row is NaN,
    // as in PyTorch, not zeros (a NaN base weight trained to a finite loss, issue 20).
    float fill = 0.0f;
    for (int64_t j = 0; j < n; ++j)
      if (row[j] != row[j]) fill = row[j];
    for (int64_t j = 0; j < n; ++j) row[j] = fill;
    return;
  }
  for (int64_t j = 0; j < n; ++j) row[j] = exp_fast(row[j] - mx);
  float sums[kLanes] = {};
  i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) sums[j] += row[i + j];
  float total = 0;
  for (; i < n; ++i) total += row[i];
  for (int64_t j = 0; j < kLanes; ++j) total += sums[j];
  const float inv = 1.0f / total;
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
}

void softmax_row_inplace(double* row, int64_t n) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
  if (mx == -std::numeric_limits<double>::infinity()) {  // all -inf: zeros; any NaN: NaN (as above)
    double fill = 0.0;
    for (int64_t j = 0; j < n; ++j)
      if (row[j] != row[j]) fill = row[j];
    for (int64_t j = 0; j < n; ++j) row[j] = fill;
    return;
  }
  double total = 0;
  for (int64_t j = 0; j < n; ++j) {
    row[j] = std::exp(row[j] - mx);
    total += row[j];
  }
  const double inv = 1.0 / total;
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void softmax_row_backward_inplace(const float* p, float* r,
                                                                                               int64_t n) {
  float sums[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) sums[j] += r[i + j] * p[i + j];
  float dot = 0;
  for (; i < n; ++i) dot += r[i] * p[i];
  for (int64_t j = 0; j < kLanes; ++j) dot += sums[j];
  for (int64_t j = 0; j < n; ++j) r[j] = p[j] * (r[j] - dot);
}

void softmax_row_backward_inplace(const double* p, double* r, int64_t n) {
  double dot = 0;
  for (int64_t j = 0; j < n; ++j) dot += r[j] * p[j];
  for (int64_t j = 0; j < n; ++j) r[j] = p[j] * (r[j] - dot);
}

template void softmax_forward<float>(const float*, float*, int64_t, int64_t, bool);
template void softmax_forward<double>(const double*, double*, int64_t, int64_t, bool);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t, bool);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t, bool);

}  // namespace peft::kernels
