// kernels::exp_full (the float32 exp of the exp / sigmoid / quick_gelu ops) against libm's expf,
// over float's whole range: normal results within 2 ulp, subnormal results within one unit of
// the least subnormal, overflow to +inf, -inf to 0, NaN to NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "core/kernels/fast_math.h"

namespace peft {
namespace {

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

TEST(FastMath, ExpFullMatchesExpfOverTheNormalRange) {
  int64_t worst = 0;
  for (float x = -87.0f; x <= 88.7f; x += 0.0009765625f * 3.0f) worst = std::max(worst, ulps(kernels::exp_full(x), std::exp(x)));
  EXPECT_LE(worst, 2);
  EXPECT_EQ(kernels::exp_full(0.0f), 1.0f);
  EXPECT_EQ(kernels::exp_full(-0.0f), 1.0f);
}

TEST(FastMath, ExpFullHandlesSubnormalsOverflowAndSpecials) {
  const float least = std::numeric_limits<float>::denorm_min();
  for (float x = -103.5f; x < -87.3f; x += 0.01f) {
    const float got = kernels::exp_full(x), want = std::exp(x);
    EXPECT_LE(std::abs(got - want), least * 1.0f) << x;
    EXPECT_GE(got, 0.0f);
  }
  EXPECT_EQ(kernels::exp_full(-104.0f), 0.0f);
  EXPECT_EQ(kernels::exp_full(-1000.0f), 0.0f);
  EXPECT_EQ(kernels::exp_full(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_LE(ulps(kernels::exp_full(88.72f), std::exp(88.72f)), 2);  // just below FLT_MAX
  EXPECT_TRUE(std::isinf(kernels::exp_full(88.73f)));
  EXPECT_TRUE(std::isinf(kernels::exp_full(1000.0f)));
  EXPECT_TRUE(std::isinf(kernels::exp_full(std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(kernels::exp_full(std::numeric_limits<float>::quiet_NaN())));
}

// The ops that use it: float32 exp and sigmoid agree with the float64 (libm) path.
TEST(FastMath, Float32ExpAndSigmoidOpsAgreeWithFloat64) {
  std::vector<double> xs;
  for (double x = -120; x <= 100; x += 0.37) xs.push_back(x);
  Tensor x64 = from_vector(xs, {static_cast<int64_t>(xs.size())}, DType::f64);
  Tensor x32 = x64.to(DType::f32);
  Tensor e32 = exp(x32).to(DType::f64), e64 = exp(x32.to(DType::f64));
  Tensor s32 = sigmoid(x32).to(DType::f64), s64 = sigmoid(x32.to(DType::f64));
  for (size_t i = 0; i < xs.size(); ++i) {
    const double ge = e32.data<double>()[i], we = e64.data<double>()[i];
    if (std::isinf(static_cast<float>(we)))
      EXPECT_TRUE(std::isinf(ge)) << xs[i];
    else
      EXPECT_LE(std::abs(ge - we), 3e-7 * we + 2e-45) << xs[i];
    EXPECT_NEAR(s32.data<double>()[i], s64.data<double>()[i], 1e-7) << xs[i];
  }
}

}  // namespace
}  // namespace peft
