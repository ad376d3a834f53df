// The float32 GELU kernels (vectorised erf/exp) against the float64 libm path.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/kernels/fast_math.h"
#include "core/kernels/gelu.h"

namespace peft {
namespace {

TEST(GeluKernel, ErfFastIsWithinHalfAMicroOfStdErf) {
  double worst = 0;
  for (double x = -8; x <= 8; x += 1e-3) {
    const float xf = static_cast<float>(x);
    worst = std::max(worst, std::abs(double(kernels::erf_fast(xf)) - std::erf(double(xf))));
  }
  EXPECT_LT(worst, 5e-7);  // a few float ulps of values near 1
  EXPECT_EQ(kernels::erf_fast(0.0f), 0.0f);
  EXPECT_EQ(kernels::erf_fast(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(kernels::erf_fast(-std::numeric_limits<float>::infinity()), -1.0f);
}

TEST(GeluKernel, ExpFastHasFloatRelativeAccuracy) {
  double worst = 0;
  for (double x = -80; x <= 80; x += 7e-3) {
    const float xf = static_cast<float>(x);
    const double ref = std::exp(double(xf));
    worst = std::max(worst, std::abs(double(kernels::exp_fast(xf)) - ref) / ref);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(kernels::exp_fast(0.0f), 1.0f);
  EXPECT_EQ(kernels::exp_fast(-1000.0f), 0.0f);  // underflows to 0, not garbage
  EXPECT_TRUE(std::isnan(kernels::exp_fast(std::numeric_limits<float>::quiet_NaN())));
}

// Every length from 0 to 70 (vector bodies and scalar tails) over a wide range of inputs.
TEST(GeluKernel, FloatForwardAndBackwardMatchFloat64) {
  for (int64_t n = 0; n <= 70; ++n) {
    std::vector<float> x(n), g(n), y(n), dx(n);
    std::vector<double> xd(n), gd(n), yd(n), dxd(n);
    for (int64_t i = 0; i < n; ++i) {
      x[i] = static_cast<float>(-9.0 + 18.0 * i / std::max<int64_t>(n - 1, 1) + 0.013 * n);
      g[i] = static_cast<float>(0.5 + 0.01 * i);
      xd[i] = x[i];
      gd[i] = g[i];
    }
    kernels::gelu_forward(x.data(), y.data(), n);
    kernels::gelu_backward(g.data(), x.data(), dx.data(), n);
    kernels::gelu_forward(xd.data(), yd.data(), n);
    kernels::gelu_backward(gd.data(), xd.data(), dxd.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double scale = std::max(1.0, std::abs(xd[i]));
      ASSERT_NEAR(y[i], yd[i], 4e-7 * scale) << "n=" << n << " x=" << x[i];
      ASSERT_NEAR(dx[i], dxd[i], 6e-7 * scale * gd[i]) << "n=" << n << " x=" << x[i];
    }
  }
}

TEST(GeluKernel, LongBufferSplitAcrossThreadsMatchesElementwise) {
  const int64_t n = 100003;  // above the parallel grain, not a multiple of the block
  std::vector<float> x(n), y(n);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::sin(0.37 * i) * 6);
  kernels::gelu_forward(x.data(), y.data(), n);
  for (int64_t i = 0; i < n; i += 997) {
    float one = 0;
    kernels::gelu_forward(&x[i], &one, 1);
    ASSERT_EQ(y[i], one);
  }
}

TEST(GeluKernel, NonFiniteInputsPropagate) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {nan, inf, -1e30f, 1e30f}, y(4), g = {1, 1, 1, 1}, dx(4);
  kernels::gelu_forward(x.data(), y.data(), 4);
  kernels::gelu_backward(g.data(), x.data(), dx.data(), 4);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_TRUE(std::isnan(dx[0]));
  EXPECT_EQ(y[1], inf);
  EXPECT_TRUE(std::isnan(dx[1]));  // inf * phi(inf) = inf * 0, as in PyTorch and the float64 path
  EXPECT_EQ(y[2], 0.0f);  // -0 or 0: gelu of a huge negative is zero
  EXPECT_EQ(dx[2], 0.0f);
  EXPECT_EQ(y[3], 1e30f);
  EXPECT_EQ(dx[3], 1.0f);
}

}  // namespace
}  // namespace peft
