// Branch-free float32 exp and erf that loops vectorise (no -ffast-math needed): the elementwise
// hot spots (GELU, attention softmax) call them instead of libm's scalar expf / erff.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace peft::kernels {

// Cephes expf's core, shared by both exps below: x = n ln2 + r with |r| <= ln2 / 2; returns
// e^r by a degree-6 polynomial and sets n. The caller clamps x and applies 2^n.
inline float exp_reduced(float x, float& n) {
  // Round to nearest by adding and removing 1.5 * 2^23 (no SSE4.1 round instruction needed).
  constexpr float kRound = 12582912.0f;
  n = (x * 1.44269504088896341f + kRound) - kRound;
  // ln2 split in two so that n * ln2_hi is exact.
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

// 2^k for k in [-126, 127], put straight into the exponent bits.
inline float pow2i(int32_t k) {
  const int32_t bits = (k + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// e^x for x in [-87, 88]: 0 below (float's normal range ends at e^-87.3), the clamped value
// above. No branches, so loops of it vectorise (GELU, attention softmax).
inline float exp_fast(float x0) {
  float n;
  const float p = exp_reduced(std::min(88.0f, std::max(-87.0f, x0)), n);
  // NaN in, NaN out (a NaN score must not silently become a zero weight).
  return x0 < -87.0f ? 0.0f : (x0 == x0 ? p * pow2i(static_cast<int32_t>(n)) : x0);
}

// e^x over float's whole range, for the general exp op (and sigmoid, quick_gelu): the same
// reduction and polynomial as exp_fast, but 2^n is applied as two factors 2^(n/2) 2^(n - n/2)
// so that results below float's normal range come out subnormal and results above it come out
// +inf, as libm's expf gives them; -inf gives 0 and NaN stays NaN. Within ~1 ulp of expf
// (tests/core/test_fast_math.cpp checks every range against std::exp).
inline float exp_full(float x0) {
  float n;  // e^89 > FLT_MAX, e^-104 < half the least subnormal
  const float p = exp_reduced(std::min(89.0f, std::max(-104.0f, x0)), n);
  const int32_t ni = static_cast<int32_t>(n), n1 = ni / 2;  // n1 and ni - n1 in [-75, 65]
  return x0 == x0 ? (p * pow2i(n1)) * pow2i(ni - n1) : x0;  // NaN in, NaN out
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

// erf(x) on its own (tests compare it with std::erf: |error| < 5e-7).
inline float erf_fast(float x) { return erf_with_exp(x, exp_fast(-x * x)); }

}  // namespace peft::kernels
