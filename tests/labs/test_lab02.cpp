// Lab 2 checks (docs/labs/02-tape.md): softplus on the tape (values, gradcheck, freeze mask,
// saved bytes) and the backward order of a recorded expression.
#include <gtest/gtest.h>

#include <cmath>

#include "apps/examples/labs/lab02_tape.h"
#include "autograd/to_dot.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

// Exercise 1
TEST(Lab02, SoftplusValuesAreStable) {
  Tensor x = from_vector({0.0, 1.0, -1.0, 100.0, -100.0, 800.0}, {6}, DType::f64);
  Tensor y = lab02::softplus(x);
  EXPECT_NEAR(y.at({0}), std::log(2.0), 1e-15);
  EXPECT_NEAR(y.at({1}), std::log1p(std::exp(1.0)), 1e-15);
  EXPECT_NEAR(y.at({2}), std::log1p(std::exp(-1.0)), 1e-15);
  EXPECT_DOUBLE_EQ(y.at({3}), 100.0);      // log(1 + e^100) overflows nothing
  EXPECT_NEAR(y.at({4}), std::exp(-100.0), 1e-50);
  EXPECT_DOUBLE_EQ(y.at({5}), 800.0);      // e^800 would be inf
  Tensor y32 = lab02::softplus(x.to(DType::f32));
  EXPECT_EQ(y32.dtype(), DType::f32);
  EXPECT_FLOAT_EQ(static_cast<float>(y32.at({5})), 800.0f);
  EXPECT_THROW_MSG(lab02::softplus(from_vector_i64({1}, {1})), DTypeError, "softplus");
}

TEST(Lab02, SoftplusPassesGradcheck) {
  auto fn = [](const std::vector<Tensor>& in) { return lab02::softplus(in[0]); };
  EXPECT_GRADCHECK(fn, std::vector<Tensor>{randn64({3, 4}, 1)});
  // Non-contiguous input (a transposed view) and a tensor used twice.
  auto twice = [](const std::vector<Tensor>& in) {
    Tensor t = transpose(in[0], 0, 1);
    return mul(lab02::softplus(t), t);
  };
  EXPECT_GRADCHECK(twice, std::vector<Tensor>{randn64({2, 3}, 2)});
  // Large |x|, where a naive log(1 + exp(x)) would overflow.
  EXPECT_GRADCHECK(fn, std::vector<Tensor>{rand64({5}, 3, 20.0, 40.0)});
}

TEST(Lab02, GradcheckCatchesAOnePercentError) {
  // The same check must fail when softplus's gradient is off by 1% (the debug hook of
  // autograd/backward.h scales it): a passing gradcheck above is not vacuous.
  auto fn = [](const std::vector<Tensor>& in) { return lab02::softplus(in[0]); };
  set_debug_grad_scale("softplus", 1.01);
  GradcheckResult r = gradcheck(fn, {randn64({3, 4}, 1)});
  clear_debug_grad_scale();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("analytic"), std::string::npos) << r.message;
}

TEST(Lab02, SoftplusRecordsOneNodeSavingItsInput) {
  Tensor x = randn64({5, 2}, 4);
  Tensor y = lab02::softplus(x);
  ASSERT_TRUE(y.grad_fn());
  EXPECT_EQ(y.grad_fn()->name, "softplus");
  EXPECT_EQ(y.grad_fn()->saved_bytes, x.nbytes());
  EXPECT_TRUE(y.grad_fn()->needs_grad(0));
  // Frozen input: no node, nothing saved (the freeze mask); the same under NoGradGuard.
  Tensor frozen = randn64({5, 2}, 5, false);
  EXPECT_FALSE(lab02::softplus(frozen).grad_fn());
  NoGradGuard ng;
  EXPECT_FALSE(lab02::softplus(x).grad_fn());
}

TEST(Lab02, SoftplusBackwardIsSigmoid) {
  Tensor x = randn64({6}, 6);
  backward(sum(lab02::softplus(x)));
  EXPECT_LT(max_abs_diff(x.grad(), sigmoid(x.detach())), 1e-15);
}

// Exercise 2
TEST(Lab02, BackwardOrderIsTheReverseTape) {
  Tensor x = randn64({3}, 7), w = randn64({3}, 8);
  Tensor h = exp(x);             // recorded 1st
  Tensor y = mul(h, w);          // 2nd
  Tensor z = add(y, h);          // 3rd: h used twice
  Tensor loss = sum(z);          // 4th
  EXPECT_EQ(lab02::backward_order(loss), (std::vector<std::string>{"sum", "add", "mul", "exp"}));
  EXPECT_EQ(static_cast<int64_t>(lab02::backward_order(loss).size()), autograd::tape_stats(loss).ops);
  EXPECT_TRUE(lab02::backward_order(x).empty());  // a leaf has no tape
  // Only what the root depends on: an unrelated op recorded later is not in the order.
  Tensor other = tanh(x);
  EXPECT_EQ(lab02::backward_order(y), (std::vector<std::string>{"mul", "exp"}));
  (void)other;
}
