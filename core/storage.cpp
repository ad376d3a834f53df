// Aligned allocation with live/peak byte accounting (read by memory tests and `peft bench`),
// and a cache of large blocks that training reuses step after step.
#include "core/storage.h"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

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

// Blocks of at least this size come from the block cache below; smaller ones from malloc. Under
// AddressSanitizer every block goes through malloc, so overflows of large tensors are caught too.
#if defined(__SANITIZE_ADDRESS__)
#define PEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PEFT_ASAN 1
#endif
#endif
#ifdef PEFT_ASAN
constexpr size_t kLargeBlock = SIZE_MAX;
#else
constexpr size_t kLargeBlock = 256 << 10;
#endif
constexpr size_t kPage = 4096;

// Training allocates and frees the same activation sizes every step. Two things go wrong with
// plain malloc: blocks above its mmap threshold are returned to the kernel on free, so every step
// page-faults on fresh pages the kernel zeroes (measured: ~18% of a ViT step); and blocks kept in
// the heap fragment it, so peak RSS ran 50-75% above the peak of live tensor bytes (measured on
// the tiny bench: lora 443 MB RSS for 243 MB of tensors). So large blocks are mapped one by one
// and, when freed, kept in a free list keyed by their page-rounded size: the next step asks for
// the same sizes and gets them back, already faulted in, and RSS stays near the live peak.
// A cache keyed by size holds what one phase frees until the same sizes come back: full
// fine-tuning's gradients sat here through the next forward (ViT-B: 2063 MB RSS for a 1700 MB
// live peak). Unmapping cached blocks whenever live + cached would pass the live high-water mark
// was measured (RSS 1717 MB) and dropped: the blocks that move between phases then fault in anew
// every step, 20% of a ViT-B step. The fix is upstream instead: nn::Optimizer::step_in_backward
// frees each gradient as soon as its update is applied, so few gradient blocks are ever cached.
struct BlockCache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // page-rounded size -> unused blocks
  size_t cached_bytes = 0;

  void* take(size_t size) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = free_blocks.find(size);
      if (it != free_blocks.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes -= size;
        return p;
      }
    }
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }

  void give(void* p, size_t size) {
    std::lock_guard<std::mutex> lock(mu);
    free_blocks[size].push_back(p);
    cached_bytes += size;
  }

  size_t release() {
    std::lock_guard<std::mutex> lock(mu);
    const size_t freed = cached_bytes;
    for (auto& [size, blocks] : free_blocks)
      for (void* p : blocks) munmap(p, size);
    free_blocks.clear();
    cached_bytes = 0;
    return freed;
  }
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;  // never destroyed: storages may outlive statics
  return *cache;
}

size_t large_block_size(size_t n) { return (n + kPage - 1) / kPage * kPage; }

struct KeepFreedMemory {
  KeepFreedMemory() {
    // Other large buffers (std::vector in kernels, BLAS workspaces) stay in malloc's heap too.
    // 2 MiB, measured (session 10, ViT-B full fine-tuning, T = 2): oneDNN's sgemm takes a
    // workspace of up to ~20 MB per call; kept in the heap (threshold 32 MiB) the arenas of both
    // threads grew to 250 MB above the live tensors (RSS 1949 MB for 1697 MB); mapped per call
    // from 256 KiB up, the page faults cost 11% (3168 ms a step). At 2 MiB: 2861 ms and 1811 MB
    // (32 MiB: 2847 ms).
    mallopt(M_MMAP_THRESHOLD, 2 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);      // do not give the heap top back after each step
  }
} keep_freed_memory;

}  // namespace

size_t cached_storage_bytes() {
  std::lock_guard<std::mutex> lock(block_cache().mu);
  return block_cache().cached_bytes;
}

size_t release_cached_storage() { return block_cache().release(); }

Storage::Storage(size_t n, bool zero_fill) : nbytes(n) {
  const bool large = n >= kLargeBlock;
  size_t rounded = large ? large_block_size(n) : ((n + 63) / 64) * 64;
  if (rounded == 0) rounded = 64;
  data = large ? block_cache().take(rounded) : std::aligned_alloc(64, rounded);
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
  if (nbytes >= kLargeBlock)
    block_cache().give(data, large_block_size(nbytes));
  else
    std::free(data);
  counters().live_bytes -= static_cast<int64_t>(nbytes);
  counters().live_storages -= 1;
}

}  // namespace peft
