// lora_linear: equals the composed ops (forward and every gradient), gradcheck with broadcast-free
// strided input, freeze masks (no GEMM and no gradient for frozen inputs), shape errors.
#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/counters.h"
#include "core/error.h"
#include "tests/testing.h"

namespace peft {
namespace {
using testing::randn64;

Tensor composed(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B, double s) {
  return add(linear(x, w, b), mul(linear(linear(x, A), B), s));
}

struct Case {
  Tensor x, w, b, A, B;
};

Case make_case(bool with_bias, uint64_t seed) {
  // x: [2, 3, 5], W: [4, 5], A: [2, 5], B: [4, 2] (B non-zero so every path carries gradient)
  return {randn64({2, 3, 5}, seed), randn64({4, 5}, seed + 1), with_bias ? randn64({4}, seed + 2) : Tensor(),
          randn64({2, 5}, seed + 3), randn64({4, 2}, seed + 4)};
}

TEST(LoraLinear, MatchesComposedOpsForwardAndGradients) {
  for (bool with_bias : {true, false}) {
    Case c = make_case(with_bias, 11);
    Tensor g = randn64({2, 3, 4}, 99, false);
    Tensor y1 = lora_linear(c.x, c.w, c.b, c.A, c.B, 0.7);
    backward(y1, g);
    std::vector<Tensor> fused = {c.x.grad(), c.w.grad(), c.A.grad(), c.B.grad()};
    Tensor fused_b = with_bias ? c.b.grad() : Tensor();
    for (Tensor* t : {&c.x, &c.w, &c.b, &c.A, &c.B})
      if (t->defined()) t->zero_grad();
    Tensor y2 = composed(c.x, c.w, c.b, c.A, c.B, 0.7);
    backward(y2, g);
    EXPECT_LT(max_abs_diff(y1, y2), 1e-12);
    std::vector<Tensor> ref = {c.x.grad(), c.w.grad(), c.A.grad(), c.B.grad()};
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_LT(max_abs_diff(fused[i], ref[i]), 1e-12) << "input " << i;
    if (with_bias) {
      EXPECT_LT(max_abs_diff(fused_b, c.b.grad()), 1e-12);
    }
  }
}

TEST(LoraLinear, Gradcheck) {
  Case c = make_case(true, 21);
  auto fn = [](const std::vector<Tensor>& in) { return lora_linear(in[0], in[1], in[2], in[3], in[4], 1.3); };
  auto r = gradcheck(fn, {c.x, c.w, c.b, c.A, c.B});
  EXPECT_TRUE(r.ok) << r.message;
  // A non-contiguous input (a transposed view) and frozen W/b (the LoRA training setting).
  Tensor xt = transpose(randn64({5, 3}, 31, false), 0, 1).detach().requires_grad_();
  Tensor w = randn64({4, 5}, 32, false), b = randn64({4}, 33, false);
  auto fn2 = [&](const std::vector<Tensor>& in) { return lora_linear(in[0], w, b, in[1], in[2], 0.5); };
  auto r2 = gradcheck(fn2, {xt, randn64({2, 5}, 34), randn64({4, 2}, 35)});
  EXPECT_TRUE(r2.ok) << r2.message;
}

TEST(LoraLinear, FrozenInputsGetNoGradientAndNoGemm) {
  // Frozen x, W, b (the first LoRA layer of a frozen backbone): backward runs exactly the GEMMs
  // for dB (g^T u) and dA (g B, then (gB)^T x).
  Tensor x = randn64({6, 5}, 41, false), w = randn64({4, 5}, 42, false), b = randn64({4}, 43, false);
  Tensor A = randn64({2, 5}, 44), B = randn64({4, 2}, 45);
  Tensor y = lora_linear(x, w, b, A, B, 2.0);
  reset_gemm_counters();
  backward(sum(y));
  EXPECT_EQ(counters().gemm_calls.load(), 3);
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  EXPECT_TRUE(A.grad().defined());
  EXPECT_TRUE(B.grad().defined());
}

TEST(LoraLinear, ZeroRankOrEmptyBatchFallsBackToTheComposedOps) {
  Tensor x = randn64({0, 5}, 51), w = randn64({4, 5}, 52);
  Tensor y = lora_linear(x, w, Tensor(), randn64({2, 5}, 53), randn64({4, 2}, 54), 1.0);
  EXPECT_EQ(y.sizes(), (Shape{0, 4}));
}

TEST(LoraLinear, ShapeErrorsNameTheOp) {
  Tensor x = randn64({3, 5}, 61), w = randn64({4, 5}, 62);
  try {
    lora_linear(x, w, Tensor(), randn64({2, 6}, 63), randn64({4, 2}, 64), 1.0);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("lora_linear"), std::string::npos);
  }
}

}  // namespace
}  // namespace peft
