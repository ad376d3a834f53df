// Global counters that tests, benchmarks and labs read: live tensor bytes, GEMM calls and FLOPs.
#pragma once
#include <atomic>
#include <cstdint>

namespace peft {

struct Counters {
  std::atomic<int64_t> live_bytes{0};     // bytes held by live storages
  std::atomic<int64_t> peak_bytes{0};     // high-water mark of live_bytes
  std::atomic<int64_t> live_storages{0};  // number of live storages
  std::atomic<int64_t> gemm_calls{0};     // calls to blas::gemm
  std::atomic<int64_t> gemm_flops{0};     // 2*M*N*K summed over calls
};

Counters& counters();
void reset_gemm_counters();
void reset_peak_bytes();  // peak := live

}  // namespace peft
