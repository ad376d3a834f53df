// float32 -> bfloat16 rounding for the bf16 GEMM path (core/blas.cpp): round to nearest even,
// NaN kept a (quiet) NaN, denormals kept (not flushed, unlike AVX512_BF16's VCVTNEPS2BF16).
// to_bf16 is the fast path (AVX-512F or AVX2 code picked from CPUID at run time, compiled with
// target attributes so the build stays portable); to_bf16_reference is the plain loop it is
// tested against, bit for bit.
#pragma once
#include <cstdint>
#include <cstring>

namespace peft::bf16 {

// One value: the upper 16 bits of the float after rounding to nearest even.
inline uint16_t round_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// bfloat16 bits back to float32 (exact).
inline float to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void to_bf16_reference(const float* src, int64_t n, uint16_t* dst);
void to_bf16(const float* src, int64_t n, uint16_t* dst);  // same bits as the reference
// to_bf16 split into chunks across the OpenMP team when n is large (>= 64 Ki) and the caller is
// not already inside a parallel region: rounding a whole weight or a batch of attention heads.
void to_bf16_parallel(const float* src, int64_t n, uint16_t* dst);

// The vector paths by name (tests run each one the CPU has against the reference).
enum class Path { scalar, avx2, avx512 };
bool path_supported(Path p);
void to_bf16(Path p, const float* src, int64_t n, uint16_t* dst);  // p must be supported
Path best_path();                 // what to_bf16 takes on this CPU
const char* path_name(Path p);    // "scalar" | "avx2" | "avx512"

}  // namespace peft::bf16
