// The machine's float32 FMA peak, measured on the spot: register-only FMA loops (no memory
// traffic, enough independent accumulators to cover the FMA latency), one per thread, with AVX2
// (8 lanes) and AVX-512 (16 lanes). `peft bench` reports a step's GFLOP/s as a share of it.
// The AVX-512 loop is compiled with a target attribute (the rest of the build stays portable) and
// runs only where CPUID and the OS (XCR0) say the registers are usable.
#pragma once

namespace peft::cpu {

// What CPUID (leaves 1 and 7) reports, masked by what the OS saves on a context switch (XGETBV):
// an ISA counts only when both the CPU has it and the OS enables its register state.
struct Features {
  bool fma = false;          // leaf 1 ECX[12]
  bool avx2 = false;         // leaf 7 EBX[5]
  bool avx512f = false;      // leaf 7 EBX[16]
  bool avx512bw = false;     // leaf 7 EBX[30]
  bool avx512_bf16 = false;  // leaf 7 subleaf 1 EAX[5]
  bool amx_bf16 = false;     // leaf 7 EDX[22] (tile state: XCR0 bits 17-18)
  bool amx_tile = false;     // leaf 7 EDX[24]
};
const Features& features();  // detected once

enum class Isa { avx2, avx512 };
const char* isa_name(Isa isa);  // "AVX2" | "AVX-512"
bool isa_supported(Isa isa);    // avx2: FMA + AVX2; avx512: AVX512F (with the OS's ZMM state)

// Float32 FMA throughput of `threads` threads together (0 = num_threads()), each running its own
// register-only loop for about `seconds`: 2 FLOPs per lane per FMA. Returns 0 when the ISA is not
// supported. The loops run in one OpenMP team; the result is total FLOPs / wall time of the team.
double fma_peak_gflops(Isa isa, int threads = 0, double seconds = 0.1);

}  // namespace peft::cpu
