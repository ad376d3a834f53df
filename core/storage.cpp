// Aligned allocation with live/peak byte accounting (read by memory tests and `peft bench`).
#include "core/storage.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/counters.h"

namespace peft {

Counters& counters() {
  static Counters c;
  return c;
}

void reset_gemm_counters() {
  counters().gemm_calls = 0;
  counters().gemm_flops = 0;
}

void reset_peak_bytes() { counters().peak_bytes = counters().live_bytes.load(); }

namespace {
// Training allocates and frees the same activation sizes every step. glibc would serve blocks
// above 128 KiB with mmap and return them on free, so every step page-faults on fresh pages the
// kernel zeroes (measured: ~18% of a ViT training step). Keep such blocks in the heap instead.
struct KeepFreedMemory {
  KeepFreedMemory() {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);     // the largest value glibc accepts
    mallopt(M_TRIM_THRESHOLD, 1 << 30);      // do not give the heap top back after each step
  }
} keep_freed_memory;
}  // namespace

Storage::Storage(size_t n, bool zero_fill) : nbytes(n) {
  size_t rounded = ((n + 63) / 64) * 64;
  if (rounded == 0) rounded = 64;
  data = std::aligned_alloc(64, rounded);
  if (!data) throw std::bad_alloc();
  if (zero_fill) std::memset(data, 0, rounded);
  auto& c = counters();
  int64_t live = c.live_bytes += static_cast<int64_t>(n);
  c.live_storages += 1;
  int64_t peak = c.peak_bytes.load();
  while (live > peak && !c.peak_bytes.compare_exchange_weak(peak, live)) {
  }
}

Storage::~Storage() {
  std::free(data);
  counters().live_bytes -= static_cast<int64_t>(nbytes);
  counters().live_storages -= 1;
}

}  // namespace peft
