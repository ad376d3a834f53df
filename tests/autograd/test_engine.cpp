// The tape engine: accumulation, reuse, retain_graph, no_grad, freeze masks, version checks.
#include <gtest/gtest.h>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/counters.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

TEST(Engine, TensorUsedTwiceGetsTheSum) {
  Tensor x = from_vector({3}, {1}, DType::f64).requires_grad_();
  Tensor y = mul(x, x);  // dy/dx = 2x
  backward(sum(y));
  EXPECT_DOUBLE_EQ(x.grad().item(), 6.0);
}

TEST(Engine, LeavesAccumulateAcrossCalls) {
  Tensor x = from_vector({2}, {1}, DType::f64).requires_grad_();
  backward(sum(mul(x, 3.0)));
  backward(sum(mul(x, 3.0)));
  EXPECT_DOUBLE_EQ(x.grad().item(), 6.0);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Engine, SecondBackwardNeedsRetainGraph) {
  Tensor x = from_vector({2}, {1}, DType::f64).requires_grad_();
  Tensor y = sum(mul(x, x));
  backward(y, Tensor(), true);
  backward(y);  // allowed: retained
  EXPECT_DOUBLE_EQ(x.grad().item(), 8.0);
  EXPECT_THROW_MSG(backward(y), StateError, "retain_graph");
}

TEST(Engine, NoGradRecordsNothing) {
  Tensor x = from_vector({2}, {1}).requires_grad_();
  NoGradGuard ng;
  Tensor y = mul(x, x);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
}

TEST(Engine, FrozenInputsGetNoGradient) {
  Tensor w = randn64({3, 4}, 1, false), x = randn64({2, 4}, 2, true);
  backward(sum(linear(x, w)));
  EXPECT_TRUE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

TEST(Engine, BackwardThroughModifiedSavedTensorThrows) {
  Tensor a = randn64({3}, 1), b = randn64({3}, 2, false);
  Tensor y = sum(mul(a, b));  // saves b for a's gradient
  b.fill_(0.0);
  EXPECT_THROW_MSG(backward(y), StateError, "mul", "modified in place");
}

TEST(Engine, BackwardOnNonScalarNeedsGradient) {
  Tensor a = randn64({3}, 1);
  EXPECT_THROW(backward(mul(a, 2.0)), ShapeError);
  Tensor c = zeros({3});
  EXPECT_THROW(backward(c), StateError);
}

TEST(Gradcheck, CatchesABrokenBackward) {
  // A deliberately wrong op: forward x^2, backward claims x.
  auto broken = [](const std::vector<Tensor>& in) {
    Tensor y = mul(in[0].detach(), in[0].detach());
    autograd::Recorder rec("broken_square", {in[0]});
    Tensor x = in[0];
    if (rec) rec.finish(y, [x](const Tensor& g) -> std::vector<Tensor> { return {mul(g, x.detach())}; });
    return y;
  };
  auto r = gradcheck(broken, {randn64({4}, 3)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("analytic"), std::string::npos) << r.message;
}

TEST(Gradcheck, RejectsFloat32AndExpandedInputs) {
  Tensor x = zeros({3}).requires_grad_();
  EXPECT_THROW(gradcheck([](const std::vector<Tensor>& in) { return in[0]; }, {x}), DTypeError);
  Tensor e = expand(randn64({1, 3}, 1, false), {4, 3});
  EXPECT_THROW(gradcheck([](const std::vector<Tensor>& in) { return in[0]; }, {e}), ShapeError);
}
