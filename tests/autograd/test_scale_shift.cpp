// scale_shift (SSF's y = x * scale + shift): equals the composed ops (values and every gradient),
// gradcheck with a non-contiguous input, freeze masks (no gradient, nothing saved for frozen
// inputs), and the composed ops' errors for shapes it does not fuse.
#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tests/testing.h"

namespace peft {
namespace {
using testing::randn64;

// [2, 3, 5], and [60, 300]: above the parallel grain, with two column blocks.
TEST(ScaleShift, MatchesComposedOps) {
  for (const Shape& shape : {Shape{2, 3, 5}, Shape{60, 300}}) {
    const int64_t C = shape.back();
    Tensor x = randn64(shape, 1), s = randn64({C}, 2), t = randn64({C}, 3);
    Tensor g = randn64(shape, 4, false);
    Tensor y1 = scale_shift(x, s, t);
    backward(y1, g);
    Tensor gx = x.grad(), gs = s.grad(), gt = t.grad();
    x.zero_grad();
    s.zero_grad();
    t.zero_grad();
    Tensor y2 = add(mul(x, s), t);
    backward(y2, g);
    EXPECT_LT(max_abs_diff(y1, y2), 1e-15);
    EXPECT_LT(max_abs_diff(gx, x.grad()), 1e-15);
    EXPECT_LT(max_abs_diff(gs, s.grad()), 1e-11);
    EXPECT_LT(max_abs_diff(gt, t.grad()), 1e-11);
  }
}

TEST(ScaleShift, GradcheckWithNonContiguousInput) {
  auto fn = [](const std::vector<Tensor>& in) { return scale_shift(transpose(in[0], 0, 1), in[1], in[2]); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({4, 3}, 5), randn64({4}, 6), randn64({4}, 7)}));
}

TEST(ScaleShift, FrozenInputsGetNoGradientAndAreNotSaved) {
  const int64_t R = 4, C = 3;
  Tensor x = randn64({R, C}, 11, false), s = randn64({C}, 12), t = randn64({C}, 13, false);
  Tensor y = scale_shift(x, s, t);  // only the scale trains: x is saved, nothing else
  EXPECT_EQ(y.grad_fn()->saved_bytes, static_cast<size_t>(R * C * 8));
  backward(sum(y));
  EXPECT_TRUE(s.grad().defined());
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(t.grad().defined());
  Tensor t2 = randn64({C}, 14);  // only the shift trains: nothing is saved
  Tensor y2 = scale_shift(x, s.detach(), t2);
  EXPECT_EQ(y2.grad_fn()->saved_bytes, 0u);
  backward(sum(y2));
  EXPECT_LT(max_abs_diff(t2.grad(), full({C}, static_cast<double>(R), DType::f64)), 1e-15);
}

TEST(ScaleShift, OtherShapesFallBackToTheComposedOps) {
  Tensor x = randn64({2, 4}, 15, false);
  EXPECT_THROW(scale_shift(x, randn64({3}, 16, false), randn64({4}, 17, false)), ShapeError);
  // A broadcastable [1, C] scale is not fused but still works.
  Tensor s = randn64({1, 4}, 18, false), t = randn64({4}, 19, false);
  EXPECT_LT(max_abs_diff(scale_shift(x, s, t), add(mul(x, s), t)), 1e-15);
}

}  // namespace
}  // namespace peft
