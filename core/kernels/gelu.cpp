// GELU forward/backward: a vectorisable float32 erf/exp beside the plain float64 libm path.
#include "core/kernels/gelu.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/threads.h"

namespace peft::kernels {

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

// e^x for x in [-87, 88]: 0 below (float's normal range ends at e^-87.3), the clamped value
// above. Cephes expf: x = n ln2 + r with |r| <= ln2 / 2, e^r by a degree-6
// polynomial, 2^n put straight into the exponent bits. No branches, so loops of it vectorise.
inline float exp_poly(float x0) {
  const float x = std::min(88.0f, std::max(-87.0f, x0));
  // Round to nearest by adding and removing 1.5 * 2^23 (no SSE4.1 round instruction needed).
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  // ln2 split in two so that n * ln2_hi is exact.
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x0 < -87.0f ? 0.0f : p * scale;
}

// erf(z) = sign(z) (1 - t (a1 + a2 t + ... + a5 t^4) e^{-z^2}), t = 1 / (1 + p |z|), given
// e = e^{-z^2} (the caller may already have it).
inline float erf_with_exp(float z, float e) {
  const float a = std::fabs(z);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float q = 1.061405429f;
  q = q * t - 1.453152027f;
  q = q * t + 1.421413741f;
  q = q * t - 0.284496736f;
  q = q * t + 0.254829592f;
  const float r = 1.0f - q * t * e;
  return std::copysign(r, z);
}

// One slice [0, n) of each kernel, compiled for AVX-512, AVX2 and plain x86-64 (the loader picks
// the best the CPU has), so a portable build still gets wide vectors here.
__attribute__((target_clones("avx512f", "avx2", "default"))) void gelu_forward_slice(const float* x, float* y,
                                                                                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float z = v * kInvSqrt2;
    const float cdf = 0.5f * (1.0f + erf_with_exp(z, exp_poly(-z * z)));
    y[i] = v * cdf;
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void gelu_backward_slice(const float* g, const float* x,
                                                                                      float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float z = v * kInvSqrt2;
    const float e = exp_poly(-z * z);  // = exp(-x^2 / 2)
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

float erf_fast(float x) { return erf_with_exp(x, exp_poly(-x * x)); }
float exp_fast(float x) { return exp_poly(x); }

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
