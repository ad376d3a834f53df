// Anomaly detection: NaN/Inf in a forward output or a backward gradient names the op and its shapes.
#include "autograd/anomaly.h"

#include <cmath>
#include <limits>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "tests/testing.h"

namespace peft {
namespace {

Tensor leaf(const std::vector<double>& v, const Shape& s) {
  Tensor t = from_vector(v, s, DType::f64);
  t.requires_grad_();
  return t;
}

TEST(Anomaly, OffByDefaultAndGuardRestores) {
  EXPECT_FALSE(detect_anomaly_enabled());
  {
    DetectAnomalyGuard on;
    EXPECT_TRUE(detect_anomaly_enabled());
    {
      DetectAnomalyGuard off(false);
      EXPECT_FALSE(detect_anomaly_enabled());
    }
    EXPECT_TRUE(detect_anomaly_enabled());
  }
  EXPECT_FALSE(detect_anomaly_enabled());
}

TEST(Anomaly, ForwardNaNNamesOpShapesAndCounts) {
  Tensor x = leaf({1.0, 0.0, -1.0, 2.0, 3.0, 4.0}, {2, 3});
  // Off: the NaN/Inf just flows through.
  Tensor y = log(x);
  EXPECT_EQ(autograd::count_non_finite(y), 2);
  DetectAnomalyGuard on;
  EXPECT_THROW_MSG(log(x), ValueError, "forward of 'log'", "1 NaN and 1 Inf", "shape [2, 3]", "inputs: [2, 3]");
}

TEST(Anomaly, ForwardOverflowInFloat32) {
  Tensor a = from_vector({1e30, 1.0}, {2}, DType::f32);
  a.requires_grad_();
  DetectAnomalyGuard on;
  EXPECT_THROW_MSG(mul(a, a), ValueError, "forward of 'mul'", "0 NaN and 1 Inf");
}

TEST(Anomaly, BackwardInfNamesOpAndInput) {
  // sqrt(0) = 0 is finite, but its gradient 1 / (2 sqrt(0)) is not.
  Tensor x = leaf({0.0, 4.0}, {2});
  DetectAnomalyGuard on;
  Tensor loss = sum(sqrt(x));
  EXPECT_THROW_MSG(backward(loss), ValueError, "backward of 'sqrt'", "gradient of input 0 of shape [2]",
                   "0 NaN and 1 Inf", "output gradient [2], finite");
}

TEST(Anomaly, BackwardWithoutAnomalyModeGivesInf) {
  Tensor x = leaf({0.0, 4.0}, {2});
  backward(sum(sqrt(x)));
  EXPECT_TRUE(std::isinf(x.grad().at({0})));
  EXPECT_DOUBLE_EQ(x.grad().at({1}), 0.25);
}

TEST(Anomaly, UpstreamNonFiniteGradientIsReported) {
  Tensor x = leaf({1.0, 2.0}, {2});
  Tensor y = mul(x, 3.0);
  Tensor g = from_vector({std::numeric_limits<double>::quiet_NaN(), 1.0}, {2}, DType::f64);
  DetectAnomalyGuard on;
  EXPECT_THROW_MSG(backward(y, g), ValueError, "backward of 'mul'", "itself non-finite", "1 NaN and 0 Inf");
}

TEST(Anomaly, OpsThatDoNotRecordAreNotChecked) {
  DetectAnomalyGuard on;
  Tensor frozen = from_vector({-1.0}, {1}, DType::f64);  // requires no grad: no node
  EXPECT_NO_THROW(log(frozen));
  Tensor x = leaf({-1.0}, {1});
  NoGradGuard ng;
  EXPECT_NO_THROW(log(x));
}

TEST(Anomaly, FiniteGraphGivesTheSameGradients) {
  Tensor w = testing::randn64({4, 3}, 1);
  Tensor b = testing::randn64({4}, 2);
  Tensor x = testing::randn64({5, 3}, 3, false);
  auto grads = [&] {
    w.zero_grad();
    b.zero_grad();
    backward(sum(tanh(linear(x, w, b))));
    return std::make_pair(w.grad().clone(), b.grad().clone());
  };
  auto [gw0, gb0] = grads();
  DetectAnomalyGuard on;
  auto [gw1, gb1] = grads();
  EXPECT_EQ(max_abs_diff(gw0, gw1), 0.0);
  EXPECT_EQ(max_abs_diff(gb0, gb1), 0.0);
}

TEST(Anomaly, CountNonFiniteOnViewsAndIntegers) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  Tensor t = from_vector({0, nan, 2, 3, inf, 5}, {2, 3}, DType::f64);
  EXPECT_EQ(autograd::count_non_finite(transpose(t, 0, 1)), 2);
  EXPECT_EQ(autograd::count_non_finite(slice(t, 1, 0, 1)), 0);  // column 0 only: 0, 3
  EXPECT_EQ(autograd::count_non_finite(from_vector_i64({1, 2}, {2})), 0);
}

}  // namespace
}  // namespace peft
