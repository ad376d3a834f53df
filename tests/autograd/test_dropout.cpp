// dropout: identity in eval, seeded inverted-dropout mask in training, backward through the saved mask.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

TEST(Dropout, IdentityWhenNotTrainingOrPZero) {
  Tensor x = randn64({4, 5}, 1);
  Generator g(7);
  const auto state = g.state();
  Tensor a = dropout(x, 0.5, false, g);
  Tensor b = dropout(x, 0.0, true, g);
  EXPECT_EQ(a.impl(), x.impl());  // the very same tensor: nothing copied or recorded
  EXPECT_EQ(b.impl(), x.impl());
  EXPECT_EQ(g.state(), state);    // and no random numbers consumed
}

TEST(Dropout, RejectsProbabilitiesOutsideZeroOne) {
  Tensor x = zeros({2, 3});
  Generator g(0);
  for (double p : {-0.1, 1.0, 1.5})
    EXPECT_THROW_MSG(dropout(x, p, true, g), ValueError, "dropout", "[0, 1)", "[2, 3]");
  EXPECT_THROW(dropout(x, NAN, true, g), ValueError);
  EXPECT_THROW(dropout(x, 1.0, false, g), ValueError);  // a bad p is an error in eval mode too
}

TEST(Dropout, MaskIsInvertedAndHasRateP) {
  const double p = 0.3;
  Tensor x = rand64({100, 100}, 1, 0.5, 1.5, false);
  Generator g(11);
  Tensor y = dropout(x, p, true, g);
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
  int64_t zeros_seen = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (yv[i] == 0.0) {
      ++zeros_seen;
    } else {
      EXPECT_NEAR(yv[i], xv[i] / (1 - p), 1e-15);
    }
  }
  // 10000 Bernoulli(0.3) draws: the standard deviation of the rate is 0.0046
  EXPECT_NEAR(static_cast<double>(zeros_seen) / 10000.0, p, 0.02);
}

TEST(Dropout, SameSeedSameMaskOtherSeedOtherMask) {
  Tensor x = ones({64}, DType::f32);
  Generator g1(5), g2(5), g3(6);
  Tensor a = dropout(x, 0.5, true, g1), b = dropout(x, 0.5, true, g2), c = dropout(x, 0.5, true, g3);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_NE(a.to_vector<float>(), c.to_vector<float>());
  EXPECT_EQ(a.dtype(), DType::f32);
  for (float v : a.to_vector<float>()) EXPECT_TRUE(v == 0.0f || v == 2.0f);
  // the stream advanced: a second call draws a new mask
  EXPECT_NE(dropout(x, 0.5, true, g1).to_vector<float>(), a.to_vector<float>());
}

TEST(Dropout, BackwardMultipliesByTheSavedMask) {
  const double p = 0.25;
  Tensor x = rand64({3, 4}, 2, 0.5, 1.5);
  Generator g(3);
  Tensor y = dropout(x, p, true, g);
  EXPECT_EQ(y.grad_fn()->saved_bytes, static_cast<size_t>(x.nbytes()));  // only the mask
  Tensor gy = randn64({3, 4}, 4, false);
  backward(sum(mul(y, gy)));
  std::vector<double> yv = y.to_vector<double>(), gv = gy.to_vector<double>(), dx = x.grad().to_vector<double>();
  int64_t kept = 0;
  for (size_t i = 0; i < yv.size(); ++i) {
    EXPECT_NEAR(dx[i], yv[i] == 0.0 ? 0.0 : gv[i] / (1 - p), 1e-15);
    kept += yv[i] != 0.0;
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, 12);
}

TEST(Dropout, GradcheckWithAFixedMaskOnStridedInput) {
  // a fresh generator per call: every evaluation of fn sees the same mask
  auto fn = [](const std::vector<Tensor>& in) {
    Generator g(9);
    return dropout(transpose(in[0], 0, 1), 0.4, true, g);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({3, 5}, 1)}));
  // the mask is drawn in the logical order of the view, so it matches the contiguous copy
  Tensor x = randn64({3, 5}, 2, false);
  Generator g1(9), g2(9);
  EXPECT_EQ(max_abs_diff(dropout(transpose(x, 0, 1), 0.4, true, g1), dropout(transpose(x, 0, 1).clone(), 0.4, true, g2)),
            0.0);
}
