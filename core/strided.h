// Strided iteration for kernels: walk the innermost rows of an N-d view of up to N operands.
#pragma once
#include <array>
#include <cstdint>

#include "core/shape.h"

namespace peft {

// For operands that all have the logical shape `sizes` (each with its own strides, 0 where
// broadcast), row r's starting element offset of operand k is row_offset(r, k). Each row has
// sizes.back() elements, stepping strides[k].back(). Rows are independent: kernels run them in
// parallel without synchronisation.
template <size_t N>
struct RowIter {
  Shape sizes;  // a 0-d shape is treated as [1]
  std::array<Shape, N> strides;
  std::array<int64_t, N> base{};

  int64_t inner() const { return sizes.empty() ? 1 : sizes.back(); }
  int64_t inner_stride(size_t k) const { return strides[k].empty() ? 0 : strides[k].back(); }
  int64_t rows() const {
    int64_t r = 1;
    for (size_t d = 0; d + 1 < sizes.size(); ++d) r *= sizes[d];
    return r;
  }
  std::array<int64_t, N> row_offsets(int64_t r) const {
    std::array<int64_t, N> off = base;
    if (sizes.size() < 2) return off;
    for (size_t d = sizes.size() - 1; d-- > 0;) {
      int64_t i = r % sizes[d];
      r /= sizes[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
    return off;
  }
};

}  // namespace peft
