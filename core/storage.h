// Reference-counted, 64-byte aligned memory shared by a tensor and all of its views.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace peft {

struct Storage {
  explicit Storage(size_t nbytes, bool zero_fill = true);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data = nullptr;
  size_t nbytes = 0;
  // Bumped by every in-place write; autograd compares it against the version seen at save time.
  uint64_t version = 0;
};

using StoragePtr = std::shared_ptr<Storage>;

// Large blocks (>= 256 KiB) are kept after their storage dies and handed to the next storage of
// the same page-rounded size (a training step allocates the same sizes every step).
size_t cached_storage_bytes();    // bytes held in the cache, not in any tensor
size_t release_cached_storage();  // unmaps every cached block; returns the bytes released

}  // namespace peft
