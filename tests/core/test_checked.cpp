// Checked size arithmetic (core/checked.h, shape_numel, tensor allocation): an overflowing size is
// a ShapeError naming what overflowed, never a wrapped size (issue 20: SIGSEGV, heap corruption).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/checked.h"
#include "core/shape.h"
#include "core/tensor.h"

using namespace peft;

namespace {
std::string message_of(auto&& f) {
  try {
    f();
  } catch (const ShapeError& e) {
    return e.what();
  }
  return "(no ShapeError)";
}
}  // namespace

TEST(Checked, MulAndAddAreExactOrThrowNamingWhat) {
  EXPECT_EQ(checked_mul(3, 4, "x"), 12);
  EXPECT_EQ(checked_mul(-3, 4, "x"), -12);
  EXPECT_EQ(checked_add(INT64_MAX - 1, 1, "x"), INT64_MAX);
  EXPECT_EQ(checked_product(Shape{2, 3, 4}, "x"), 24);
  EXPECT_EQ(checked_product(Shape{}, "x"), 1);
  const std::string m = message_of([] { checked_mul(int64_t{1} << 62, 4, "lora.A of rank r"); });
  EXPECT_NE(m.find("lora.A of rank r"), std::string::npos) << m;
  EXPECT_NE(m.find("overflows int64"), std::string::npos) << m;
  EXPECT_THROW(checked_add(INT64_MAX, 1, "sum"), ShapeError);
  EXPECT_THROW(checked_product(Shape{int64_t{1} << 32, int64_t{1} << 32}, "p"), ShapeError);
  EXPECT_EQ(checked_bytes(10, 4, "b"), 40u);
  EXPECT_THROW(checked_bytes(int64_t{1} << 62, 4, "b"), ShapeError);
  EXPECT_THROW(checked_bytes(-1, 4, "b"), ShapeError);
}

TEST(Checked, ShapeNumelOverflowIsAnError) {
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_numel({0, int64_t{1} << 40}), 0);
  EXPECT_EQ(shape_numel({int64_t{1} << 31, int64_t{1} << 31}), int64_t{1} << 62);
  // The rank of `inspect --method lora --rank 72057594037927937` times a width of 64 x 4 layers.
  const std::string m = message_of([] { shape_numel({4, 72057594037927937, 64}); });
  EXPECT_NE(m.find("[4, 72057594037927937, 64]"), std::string::npos) << m;
  EXPECT_NE(m.find("overflows"), std::string::npos) << m;
  EXPECT_THROW(contiguous_strides({int64_t{1} << 40, int64_t{1} << 40, 2}), ShapeError);
}

TEST(Checked, AllocationWhoseBytesOverflowIsAnError) {
  // numel fits int64, numel * 4 does not: before the check this allocated a few bytes.
  const std::string m = message_of([] { empty({72057594037927937, 64}); });
  EXPECT_NE(m.find("[72057594037927937, 64]"), std::string::npos) << m;
  EXPECT_THROW(zeros({int64_t{1} << 61}, DType::f64), ShapeError);
  EXPECT_THROW(empty_uninitialized({int64_t{1} << 60, 2}), ShapeError);
  // Small tensors are unaffected.
  EXPECT_EQ(empty({3, 5}).numel(), 15);
}
