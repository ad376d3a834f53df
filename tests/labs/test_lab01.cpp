// Lab 1 checks (docs/labs/01-tensors.md): each exercise against the library function it re-implements.
#include <gtest/gtest.h>

#include "apps/examples/labs/lab01_tensors.h"
#include "autograd/ops.h"
#include "core/random.h"
#include "tests/testing.h"

using namespace peft;

// Exercise 1
TEST(Lab01, ContiguousStridesAreRowMajor) {
  EXPECT_EQ(lab01::contiguous_strides({2, 3, 4}), (Shape{12, 4, 1}));
  EXPECT_EQ(lab01::contiguous_strides({5}), (Shape{1}));
  EXPECT_EQ(lab01::contiguous_strides({}), (Shape{}));
  for (const Shape& s : {Shape{7, 1, 3}, Shape{2, 2, 2, 2}, Shape{1, 9}})
    EXPECT_EQ(lab01::contiguous_strides(s), contiguous_strides(s)) << shape_str(s);
  Tensor t = zeros({4, 5, 6});
  EXPECT_EQ(lab01::contiguous_strides(t.sizes()), t.strides());
}

// Exercise 2
TEST(Lab01, BroadcastShapesMatchesTheLibrary) {
  const std::vector<std::pair<Shape, Shape>> ok = {
      {{2, 3}, {3}}, {{2, 1}, {1, 3}}, {{4, 1, 5}, {3, 1}}, {{}, {2, 2}}, {{1}, {7}}, {{8, 1, 6, 1}, {7, 1, 5}}};
  for (auto& [a, b] : ok) {
    EXPECT_EQ(lab01::broadcast_shapes(a, b), broadcast_shapes(a, b, "test")) << shape_str(a) << " " << shape_str(b);
    EXPECT_EQ(lab01::broadcast_shapes(b, a), broadcast_shapes(a, b, "test")) << "symmetric";
  }
  EXPECT_EQ(lab01::broadcast_shapes({8, 1, 6, 1}, {7, 1, 5}), (Shape{8, 7, 6, 5}));
  EXPECT_THROW_MSG(lab01::broadcast_shapes({2, 3}, {2}), ShapeError, "[2, 3]", "[2]");
  EXPECT_THROW_MSG(lab01::broadcast_shapes({4, 3}, {2, 3}), ShapeError, "[4, 3]", "[2, 3]");
}

// Exercise 3
TEST(Lab01, ElementAtFollowsStrides) {
  Generator g(1);
  Tensor x = randn({3, 4, 5}, g);
  // Contiguous, permuted, sliced (non-zero offset) and expanded (stride 0) layouts.
  std::vector<Tensor> views = {x, permute(x, {2, 0, 1}), slice(x, 1, 1, 4, 2), expand(slice(x, 0, 1, 2), {6, 4, 5})};
  for (const Tensor& v : views)
    for (int64_t i = 0; i < v.numel(); i += 3) {
      std::vector<int64_t> idx(v.dim());
      for (int64_t d = v.dim(), r = i; d-- > 0; r /= v.size(d)) idx[d] = r % v.size(d);
      EXPECT_EQ(lab01::element_at(v, idx), v.at(idx)) << shape_str(v.sizes());
    }
  Tensor x64 = x.to(DType::f64);
  EXPECT_EQ(lab01::element_at(x64, {2, 3, 4}), x64.at({2, 3, 4}));
  EXPECT_THROW(lab01::element_at(x, {0, 0}), ShapeError);
  EXPECT_THROW(lab01::element_at(x, {3, 0, 0}), ShapeError);
}

// Exercise 4
TEST(Lab01, TransposeIsAViewWithSwappedStrides) {
  Generator g(2);
  Tensor x = randn({2, 3, 4}, g);
  Tensor t = lab01::transpose_view(x, 0, 2);
  Tensor ref = transpose(x, 0, 2);
  EXPECT_EQ(t.sizes(), ref.sizes());
  EXPECT_EQ(t.strides(), ref.strides());
  EXPECT_EQ(t.offset(), ref.offset());
  EXPECT_EQ(max_abs_diff(t, ref), 0.0);
  // A view, not a copy: same storage, and a write through x shows through t.
  EXPECT_EQ(t.impl()->storage, x.impl()->storage);
  EXPECT_FALSE(t.is_contiguous());
  x.data<float>()[1] = 42.0f;  // x[0, 0, 1] is t[1, 0, 0]
  EXPECT_EQ(t.at({1, 0, 0}), 42.0);
  // Negative dims, a sliced (offset) input, and transposing back.
  Tensor s = slice(x, 1, 1, 3);
  Tensor ts = lab01::transpose_view(s, -1, -2);
  EXPECT_EQ(max_abs_diff(ts, transpose(s, -1, -2)), 0.0);
  EXPECT_EQ(ts.offset(), s.offset());
  EXPECT_EQ(lab01::transpose_view(ts, 1, 2).strides(), s.strides());
  EXPECT_THROW(lab01::transpose_view(x, 0, 3), ShapeError);
}
