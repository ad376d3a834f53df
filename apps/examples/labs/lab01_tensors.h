// Lab 1 exercises (docs/labs/01-tensors.md): shapes, strides and views. Each function re-implements
// a library function; the reference solution is filled in so that tests/labs/test_lab01.cpp passes.
// Students: delete a body, write your own, run `ctest -L lab1`.
#pragma once
#include <fmt/format.h>

#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace lab01 {

using peft::Shape;
using peft::Tensor;

// Exercise 1: row-major (C order) strides in elements. Re-implements peft::contiguous_strides
// (core/shape.cpp). [2, 3, 4] -> [12, 4, 1]: the last dim moves fastest.
inline Shape contiguous_strides(const Shape& sizes) {
  Shape strides(sizes.size(), 1);
  for (size_t d = sizes.size(); d-- > 1;) strides[d - 1] = strides[d] * sizes[d];
  return strides;
}

// Exercise 2: NumPy broadcasting. Re-implements peft::broadcast_shapes (core/shape.cpp).
// Align the shapes on the right; each pair of sizes must be equal or contain a 1; missing dims
// count as 1. Throws peft::ShapeError naming both shapes when they do not broadcast.
inline Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {  // i counts from the right
    const int64_t da = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t db = i < b.size() ? b[b.size() - 1 - i] : 1;
    if (da != db && da != 1 && db != 1)
      throw peft::ShapeError(fmt::format("broadcast_shapes: {} and {} do not broadcast (dim {} from the right: {} vs {}). Hint: sizes must match or be 1",
                                         peft::shape_str(a), peft::shape_str(b), i, da, db));
    out[n - 1 - i] = da == 1 ? db : da;
  }
  return out;
}

// Exercise 3: the memory offset of one element: offset + sum(index[d] * strides[d]). Re-implements
// the addressing inside Tensor::at (core/tensor.cpp). Returns the value as a double.
inline double element_at(const Tensor& t, const std::vector<int64_t>& index) {
  if (static_cast<int64_t>(index.size()) != t.dim())
    throw peft::ShapeError(fmt::format("element_at: {} indices for a tensor of shape {}", index.size(),
                                       peft::shape_str(t.sizes())));
  int64_t off = t.offset();
  for (size_t d = 0; d < index.size(); ++d) {
    if (index[d] < 0 || index[d] >= t.sizes()[d])
      throw peft::ShapeError(fmt::format("element_at: index {} out of range for dim {} of size {}", index[d], d,
                                         t.sizes()[d]));
    off += index[d] * t.strides()[d];
  }
  const auto* base = t.impl()->storage->data;
  return t.dtype() == peft::DType::f64 ? static_cast<const double*>(base)[off]
                                       : static_cast<double>(static_cast<const float*>(base)[off]);
}

// Exercise 4: transpose as a view: swap two sizes and the matching strides, keep the storage and
// the offset; no element moves. Re-implements the metadata part of peft::transpose
// (autograd/ops/view.cpp) with Tensor::as_strided. Negative dims count from the end.
inline Tensor transpose_view(const Tensor& x, int64_t d0, int64_t d1) {
  d0 = peft::wrap_dim(d0, x.dim(), "transpose_view");
  d1 = peft::wrap_dim(d1, x.dim(), "transpose_view");
  Shape sizes = x.sizes(), strides = x.strides();
  std::swap(sizes[d0], sizes[d1]);
  std::swap(strides[d0], strides[d1]);
  return x.as_strided(sizes, strides, x.offset());
}

}  // namespace lab01
