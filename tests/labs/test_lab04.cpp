// Lab 4 checks (docs/labs/04-freeze-masks.md): measured GEMM calls, tape size and saved bytes of a
// Linear stack under freeze patterns, against hand counts and the closed-form prediction.
#include <gtest/gtest.h>

#include "apps/examples/labs/lab04_freeze_masks.h"
#include "autograd/to_dot.h"
#include "tests/testing.h"

using namespace peft;

namespace {
struct Lab04 : ::testing::Test {
  static constexpr int64_t L = 3, B = 5, W = 4;
  Generator gen{1};
  lab04::LinearStack stack{L, W, gen};
  Tensor x = randn({B, W}, gen);
};
}  // namespace

// Exercise 1: hand counts for the two extremes.
TEST_F(Lab04, MeasuredFullFineTuning) {
  stack.set_trainable({true, true, true});
  lab04::StepCost c = lab04::measure_step(stack, x);
  EXPECT_EQ(c.forward_gemms, 3);
  EXPECT_EQ(c.backward_gemms, 5);  // dW for 3 layers, dX for the 2 layers whose input is trainable
  EXPECT_EQ(c.ops, 6);             // 3 linear, 2 relu, sum
  // linears keep X (3 x [5, 4]) and W for layers 1, 2 (2 x [4, 4]); relus keep outputs (2 x [5, 4]).
  EXPECT_EQ(c.saved_bytes, (3 * 20 + 2 * 16 + 2 * 20) * sizeof(float));
  for (auto& l : stack.linears) EXPECT_FALSE(l->weight.grad().defined());  // zeroed afterwards
}

TEST_F(Lab04, MeasuredLinearProbe) {
  stack.set_trainable({false, false, true});
  lab04::StepCost c = lab04::measure_step(stack, x);
  EXPECT_EQ(c.forward_gemms, 3);   // the forward pass is the same
  EXPECT_EQ(c.backward_gemms, 1);  // only dW of the last layer: nothing before it needs a gradient
  EXPECT_EQ(c.ops, 2);             // linear, sum: the frozen trunk is not on the tape
  EXPECT_EQ(c.saved_bytes, 20 * sizeof(float));
  stack.set_trainable({false, false, false});
  EXPECT_EQ(lab04::measure_step(stack, x), (lab04::StepCost{3, 0, 0, 0}));
}

TEST_F(Lab04, SavedBytesAgreeWithTapeStats) {
  stack.set_trainable({true, false, true});
  Tensor loss = sum(stack.forward(x));
  autograd::TapeStats s = autograd::tape_stats(loss);
  lab04::StepCost c = lab04::measure_step(stack, x);
  EXPECT_EQ(c.ops, s.ops);
  EXPECT_EQ(c.saved_bytes, s.saved_bytes);
}

// Exercise 2: the prediction matches the measurement for every freeze pattern of 3 layers, in
// float32 and float64.
TEST_F(Lab04, PredictionMatchesEveryPattern) {
  for (DType dt : {DType::f32, DType::f64}) {
    if (dt == DType::f64)
      for (auto& l : stack.linears) l->to(DType::f64);
    Tensor xd = x.to(dt);
    for (int mask = 0; mask < (1 << L); ++mask) {
      std::vector<bool> t(L);
      for (int i = 0; i < L; ++i) t[i] = (mask >> i) & 1;
      stack.set_trainable(t);
      lab04::StepCost m = lab04::measure_step(stack, xd), p = lab04::predict_step(t, B, W, dtype_size(dt));
      EXPECT_EQ(m.forward_gemms, p.forward_gemms) << "mask " << mask;
      EXPECT_EQ(m.backward_gemms, p.backward_gemms) << "mask " << mask;
      EXPECT_EQ(m.ops, p.ops) << "mask " << mask;
      EXPECT_EQ(m.saved_bytes, p.saved_bytes) << "mask " << mask;
    }
  }
}

TEST_F(Lab04, FreezingEarlyLayersSavesMore) {
  // Freezing the first layer removes one GEMM; freezing all but the last removes 2L - 2 of 2L - 1.
  EXPECT_EQ(lab04::predict_step({true, true, true}, B, W, 4).backward_gemms, 5);
  EXPECT_EQ(lab04::predict_step({false, true, true}, B, W, 4).backward_gemms, 3);
  EXPECT_EQ(lab04::predict_step({true, true, false}, B, W, 4).backward_gemms, 4);
  EXPECT_LT(lab04::predict_step({false, false, true}, B, W, 4).saved_bytes,
            lab04::predict_step({true, false, false}, B, W, 4).saved_bytes);
}
