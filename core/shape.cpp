// Shape arithmetic shared by every op.
#include "core/shape.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace peft {

// Sizes multiply with an overflow check: a wrapped product (a rank of 2^56 from an option or an
// adapter's metadata) would allocate a few bytes and then write far past them.
int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s)
    if (__builtin_mul_overflow(n, d, &n))
      throw ShapeError(fmt::format("shape {}: element count overflows int64. Hint: a size (an option, a config "
                                   "or a file's metadata) is far too large",
                                   shape_str(s)));
  return n;
}

Shape contiguous_strides(const Shape& sizes) {
  Shape st(sizes.size());
  int64_t acc = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    st[i] = acc;
    if (__builtin_mul_overflow(acc, sizes[i], &acc))
      throw ShapeError(fmt::format("shape {}: strides overflow int64", shape_str(sizes)));
  }
  return st;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw ShapeError(fmt::format("{}: shapes {} and {} cannot be broadcast (dim {}: {} vs {}). "
                                   "Hint: sizes must match or be 1",
                                   op, shape_str(a), shape_str(b), i, da, db));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  if (dim < lo || dim > hi)
    throw ShapeError(fmt::format("{}: dim {} out of range for a {}-d tensor (expected {}..{})", op,
                                 dim, ndim, lo, hi));
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

}  // namespace peft
