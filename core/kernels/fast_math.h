// Branch-free float32 exp and erf that loops vectorise (no -ffast-math needed): the elementwise
// hot spots (GELU, attention softmax) call them instead of libm's scalar expf / erff.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace peft::kernels {

// e^x for x in [-87, 88]: 0 below (float's normal range ends at e^-87.3), the clamped value
// above. Cephes expf: x = n ln2 + r with |r| <= ln2 / 2, e^r by a degree-6
// polynomial, 2^n put straight into the exponent bits. No branches, so loops of it vectorise.
inline float exp_fast(float x0) {
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
  // NaN in, NaN out (a NaN score must not silently become a zero weight).
  return x0 < -87.0f ? 0.0f : (x0 == x0 ? p * scale : x0);
}

// e^x over float's whole range, for the general exp op (and sigmoid, quick_gelu): the same
// reduction and polynomial as exp_fast, but 2^n is applied as two factors 2^(n/2) 2^(n - n/2)
// so that results below float's normal range come out subnormal and results above it come out
// +inf, as libm's expf gives them; -inf gives 0 and NaN stays NaN. Within ~1 ulp of expf
// (tests/core/test_fast_math.cpp checks every range against std::exp).
inline float exp_full(float x0) {
  const float x = std::min(89.0f, std::max(-104.0f, x0));  // e^89 > FLT_MAX, e^-104 < half the least subnormal
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(n), n1 = ni / 2, n2 = ni - n1;  // each in [-75, 65]
  const int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  return x0 == x0 ? (p * s1) * s2 : x0;  // NaN in, NaN out
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
