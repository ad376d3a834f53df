// GELU forward/backward: a vectorisable float32 erf/exp beside the plain float64 libm path.
#include "core/kernels/gelu.h"

#include <algorithm>
#include <cmath>

#include "core/kernels/fast_math.h"
#include "core/threads.h"

namespace peft::kernels {

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

// One slice [0, n) of each kernel, compiled for AVX-512, AVX2 and plain x86-64 (the loader picks
// the best the CPU has), so a portable build still gets wide vectors here.
__attribute__((target_clones("avx512f", "avx2", "default"))) void gelu_forward_slice(const float* x, float* y,
                                                                                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float z = v * kInvSqrt2;
    const float cdf = 0.5f * (1.0f + erf_with_exp(z, exp_fast(-z * z)));
    y[i] = v * cdf;
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void gelu_backward_slice(const float* g, const float* x,
                                                                                      float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float z = v * kInvSqrt2;
    const float e = exp_fast(-z * z);  // = exp(-x^2 / 2)
    const float cdf = 0.5f * (1.0f + erf_with_exp(z, e));
    dx[i] = g[i] * (cdf + v * kInvSqrt2Pi * e);
  }
}

// Splits [0, n) into one contiguous slice per thread.
template <class F>
void parallel_slices(int64_t n, F f) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * kBlock;
    f(i0, std::min(n, i0 + kBlock) - i0);
  }
}

}  // namespace

void gelu_forward(const float* x, float* y, int64_t n) {
  parallel_slices(n, [&](int64_t i0, int64_t len) { gelu_forward_slice(x + i0, y + i0, len); });
}

void gelu_backward(const float* g, const float* x, float* dx, int64_t n) {
  parallel_slices(n, [&](int64_t i0, int64_t len) { gelu_backward_slice(g + i0, x + i0, dx + i0, len); });
}

constexpr double kS2 = 0.70710678118654752440, kS2Pi = 0.39894228040143267794;

void gelu_forward(const double* x, double* y, int64_t n) {
  parallel_slices(n, [&](int64_t i0, int64_t len) {
    for (int64_t i = i0; i < i0 + len; ++i) y[i] = 0.5 * x[i] * (1.0 + std::erf(x[i] * kS2));
  });
}

void gelu_backward(const double* g, const double* x, double* dx, int64_t n) {
  parallel_slices(n, [&](int64_t i0, int64_t len) {
    for (int64_t i = i0; i < i0 + len; ++i) {
      const double v = x[i];
      const double cdf = 0.5 * (1.0 + std::erf(v * kS2));
      dx[i] = g[i] * (cdf + v * kS2Pi * std::exp(-0.5 * v * v));
    }
  });
}

}  // namespace peft::kernels
