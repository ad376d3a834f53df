// The large-block cache of core/storage.cpp: reuse by size, zero-filling, accounting, release.
#include <gtest/gtest.h>

#include "core/counters.h"
#include "core/storage.h"
#include "core/tensor.h"

namespace peft {
namespace {

#if !defined(__SANITIZE_ADDRESS__)
TEST(StorageCache, FreedLargeBlockIsReusedForTheSameSize) {
  release_cached_storage();
  const Shape big = {512, 1024};  // 2 MiB of float32
  void* first = nullptr;
  {
    Tensor a = empty_uninitialized(big);
    first = a.raw_data();
    a.fill_(7.0);
  }
  EXPECT_EQ(cached_storage_bytes(), size_t(512 * 1024 * 4));
  Tensor b = empty_uninitialized(big);
  EXPECT_EQ(b.raw_data(), first);  // the cached block, not a new mapping
  EXPECT_EQ(cached_storage_bytes(), 0u);
  // A zero-filled tensor from a reused block is zero again, not the previous contents.
  b.fill_(3.0);
  b = Tensor();
  Tensor z = zeros(big);
  EXPECT_EQ(z.raw_data(), first);
  EXPECT_EQ(z.at({511, 1023}), 0.0);
  EXPECT_EQ(z.at({0, 0}), 0.0);
}

TEST(StorageCache, OtherSizesGetTheirOwnBlocksAndReleaseEmptiesTheCache) {
  release_cached_storage();
  { Tensor a = empty_uninitialized({300, 1024}); }
  Tensor b = empty_uninitialized({400, 1024});  // no block of this size in the cache
  EXPECT_EQ(cached_storage_bytes(), size_t(300 * 1024 * 4));
  EXPECT_EQ(release_cached_storage(), size_t(300 * 1024 * 4));
  EXPECT_EQ(cached_storage_bytes(), 0u);
}
#endif

TEST(StorageCache, LiveBytesCountTensorsNotCachedBlocks) {
  const int64_t before = counters().live_bytes.load();
  {
    Tensor a = zeros({256, 1024});
    EXPECT_EQ(counters().live_bytes.load() - before, 256 * 1024 * 4);
  }
  EXPECT_EQ(counters().live_bytes.load(), before);
}

}  // namespace
}  // namespace peft
