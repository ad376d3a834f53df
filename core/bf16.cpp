// float32 -> bfloat16 rounding: core/bf16.h. The vector paths do the reference's integer
// arithmetic lane by lane (add 0x7fff + lsb, take the upper half, NaN -> quiet NaN), so the
// results are the same bits; they only run where CPUID says the ISA is usable.
#include "core/bf16.h"

#include <omp.h>

#include <algorithm>

#include <immintrin.h>

#include "core/cpu_peak.h"

namespace peft::bf16 {

namespace {

// The zero-masked forms (all lanes kept): GCC 12's unmasked _mm512_srli_epi32 and
// _mm512_cvtepi32_epi16 pass an "undefined" vector that -Wmaybe-uninitialized reports.
__attribute__((target("avx512f"))) inline __m512i srl16(__m512i v) { return _mm512_maskz_srli_epi32(0xFFFF, v, 16); }

__attribute__((target("avx512f"))) void to_bf16_avx512(const float* src, int64_t n, uint16_t* dst) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), qnan = _mm512_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i u = _mm512_loadu_si512(src + i);
    const __m512i hi = srl16(u);
    const __m512i rounded = srl16(_mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    const __m512i r = _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(hi, qnan));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_maskz_cvtepi32_epi16(0xFFFF, r));
  }
  for (; i < n; ++i) dst[i] = round_bits(src[i]);
}

__attribute__((target("avx2"))) __m256i round8_avx2(const float* p) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), qnan = _mm256_set1_epi32(0x40);
  const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i hi = _mm256_srli_epi32(u, 16);
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(hi, one))), 16);
  // |u| and inf are both below 2^31, so the signed compare is the unsigned one.
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
  return _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, qnan), nan);
}

__attribute__((target("avx2"))) void to_bf16_avx2(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // Every lane is <= 0xffff, so unsigned-saturating packing is exact; it interleaves 128-bit
    // halves ([a0-3 b0-3 a4-7 b4-7]), which the permute puts back in order.
    const __m256i packed = _mm256_packus_epi32(round8_avx2(src + i), round8_avx2(src + i + 8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_permute4x64_epi64(packed, 0xD8));
  }
  for (; i < n; ++i) dst[i] = round_bits(src[i]);
}

}  // namespace

bool path_supported(Path p) {
  switch (p) {
    case Path::avx512: return cpu::isa_supported(cpu::Isa::avx512);
    case Path::avx2: return cpu::isa_supported(cpu::Isa::avx2);
    default: return true;
  }
}

Path best_path() {
  static const Path p = path_supported(Path::avx512) ? Path::avx512
                        : path_supported(Path::avx2) ? Path::avx2
                                                     : Path::scalar;
  return p;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::avx512: return "avx512";
    case Path::avx2: return "avx2";
    default: return "scalar";
  }
}

void to_bf16_reference(const float* src, int64_t n, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = round_bits(src[i]);
}

void to_bf16(Path p, const float* src, int64_t n, uint16_t* dst) {
  switch (p) {
    case Path::avx512: to_bf16_avx512(src, n, dst); return;
    case Path::avx2: to_bf16_avx2(src, n, dst); return;
    default: to_bf16_reference(src, n, dst);
  }
}

void to_bf16(const float* src, int64_t n, uint16_t* dst) { to_bf16(best_path(), src, n, dst); }

void to_bf16_parallel(const float* src, int64_t n, uint16_t* dst) {
  const int64_t chunk = int64_t{1} << 14;
  const bool par = n >= (int64_t{1} << 16) && !omp_in_parallel();
#pragma omp parallel for if (par) schedule(static)
  for (int64_t i = 0; i < n; i += chunk) to_bf16(src + i, std::min(chunk, n - i), dst + i);
}

}  // namespace peft::bf16
