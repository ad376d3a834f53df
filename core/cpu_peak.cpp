// Register-only FMA loops (AVX2, AVX-512) and CPUID/XGETBV feature detection: core/cpu_peak.h.
#include "core/cpu_peak.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "core/threads.h"

namespace peft::cpu {

namespace {

// XCR0, the OS's enabled register state; only read when CPUID says OSXSAVE.
__attribute__((target("xsave"))) uint64_t xcr0() { return _xgetbv(0); }

Features detect() {
  Features f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = (c >> 12) & 1u, osxsave = (c >> 27) & 1u, avx = (c >> 28) & 1u;
  if (!osxsave || !avx) return f;
  const uint64_t x = xcr0();
  const bool ymm_os = (x & 0x6u) == 0x6u;      // SSE + AVX state
  const bool zmm_os = (x & 0xe6u) == 0xe6u;    // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool tile_os = (x & 0x60000u) == 0x60000u;  // XTILECFG + XTILEDATA
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7 || !ymm_os) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned b7 = b, d7 = d;
  f.fma = fma;
  f.avx2 = (b7 >> 5) & 1u;
  f.avx512f = zmm_os && ((b7 >> 16) & 1u);
  f.avx512bw = zmm_os && ((b7 >> 30) & 1u);
  f.amx_bf16 = tile_os && ((d7 >> 22) & 1u);
  f.amx_tile = tile_os && ((d7 >> 24) & 1u);
  __cpuid_count(7, 1, a, b, c, d);
  f.avx512_bf16 = f.avx512f && ((a >> 5) & 1u);
  return f;
}

// 12 independent accumulator chains: more than latency (4 cycles) x ports (2) on every core
// these loops target, few enough to stay in registers (16 YMM with AVX2). Each iteration is 12
// FMAs of 8 (AVX2) or 16 (AVX-512) lanes. The multiplier is slightly below 1, the addend
// small, so the values converge and never overflow or go denormal.
constexpr int kChains = 12;

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(0.01f * static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  }
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(0.01f * static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  float out[16];  // not _mm512_reduce_add_ps: GCC 12's expands to an -Wuninitialized warning
  _mm512_storeu_ps(out, s);
  return out[0];
}

using Clock = std::chrono::steady_clock;

float run_loop(Isa isa, int64_t iters) { return isa == Isa::avx512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters); }

}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

const char* isa_name(Isa isa) { return isa == Isa::avx512 ? "AVX-512" : "AVX2"; }

bool isa_supported(Isa isa) {
  const Features& f = features();
  return isa == Isa::avx512 ? f.avx512f : (f.avx2 && f.fma);
}

double fma_peak_gflops(Isa isa, int threads, double seconds) {
  if (!isa_supported(isa)) return 0.0;
  if (threads <= 0) threads = num_threads();
  seconds = std::max(seconds, 1e-3);
  const double lanes = isa == Isa::avx512 ? 16.0 : 8.0;
  const double flops_per_iter = 2.0 * lanes * kChains;
  volatile float sink = 0.0f;
  // Calibrate on one thread: grow the count until a run takes >= 5 ms (also warms the clocks
  // and the vector unit), then size the timed run to `seconds`.
  int64_t iters = 1 << 14;
  double dt = 0;
  for (;;) {
    auto t0 = Clock::now();
    sink = sink + run_loop(isa, iters);
    dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt >= 5e-3 || iters >= (int64_t{1} << 40)) break;
    iters *= 4;
  }
  iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * seconds / dt));
  // Every thread runs the same count; the team's wall time covers the slowest.
  float partial[256] = {};
  const int team = std::min(threads, 256);
  int ran = 1;  // the team OpenMP actually gave (fewer inside a parallel region)
  auto t0 = Clock::now();
#pragma omp parallel num_threads(team)
  {
    partial[omp_get_thread_num()] = run_loop(isa, iters);
    if (omp_get_thread_num() == 0) ran = omp_get_num_threads();
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  for (int i = 0; i < ran; ++i) sink = sink + partial[i];
  return flops_per_iter * static_cast<double>(iters) * ran / wall / 1e9;
}

}  // namespace peft::cpu
