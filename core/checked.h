// Checked size arithmetic: every size computed from a shape, a config, an option or a file's
// metadata goes through these, so an overflow is an error naming what overflowed instead of a
// wrapped size (a tiny allocation followed by out-of-bounds writes: SIGSEGV, heap corruption).
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <string_view>

#include "core/error.h"

namespace peft {

// a * b, or ShapeError "<what>: size overflows int64 (a x b)".
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw ShapeError(fmt::format("{}: size overflows int64 ({} x {})", what, a, b));
  return r;
}

// a + b, or ShapeError "<what>: size overflows int64 (a + b)".
inline int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r))
    throw ShapeError(fmt::format("{}: size overflows int64 ({} + {})", what, a, b));
  return r;
}

// The product of `sizes`, checked (an empty list gives 1).
template <class Range>
int64_t checked_product(const Range& sizes, std::string_view what) {
  int64_t n = 1;
  for (int64_t s : sizes) n = checked_mul(n, s, what);
  return n;
}

// Bytes of `numel` elements of `elem_size` bytes, checked and bounded by `limit` (default: what
// a size_t and a ptrdiff_t can address on every platform we build for).
inline size_t checked_bytes(int64_t numel, size_t elem_size, std::string_view what,
                            int64_t limit = INT64_MAX / 2) {
  if (numel < 0) throw ShapeError(fmt::format("{}: negative element count {}", what, numel));
  const int64_t b = checked_mul(numel, static_cast<int64_t>(elem_size), what);
  if (b > limit) throw ShapeError(fmt::format("{}: {} bytes is beyond any allocation (limit {})", what, b, limit));
  return static_cast<size_t>(b);
}

}  // namespace peft
