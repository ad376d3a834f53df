// NaN propagation through softmax and attention, as in PyTorch (issue 20): a score row holding a
// NaN gives a NaN row, an all-NaN row too; only a fully masked (all -inf) attention row gives
// zeros. Before, the attention kernel zeroed an all-NaN row as if it were masked, so one NaN base
// weight trained to a finite loss.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "autograd/ops.h"
#include "core/kernels/softmax.h"
#include "core/tensor.h"

using namespace peft;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEST(SoftmaxNaN, RowKernelPropagatesNaN) {
  for (int n : {3, 16, 37}) {  // below, at and above the vector lane count
    SCOPED_TRACE(n);
    std::vector<float> all_nan(n, NAN), one_nan(n, 1.0f), masked(n, -INFINITY), nan_masked(n, -INFINITY);
    one_nan[n / 2] = NAN;
    nan_masked[n - 1] = NAN;
    kernels::softmax_row_inplace(all_nan.data(), n);
    kernels::softmax_row_inplace(one_nan.data(), n);
    kernels::softmax_row_inplace(masked.data(), n);
    kernels::softmax_row_inplace(nan_masked.data(), n);
    for (int j = 0; j < n; ++j) {
      EXPECT_TRUE(std::isnan(all_nan[j])) << j;
      EXPECT_TRUE(std::isnan(one_nan[j])) << j;
      EXPECT_EQ(masked[j], 0.0f) << j;
      EXPECT_TRUE(std::isnan(nan_masked[j])) << j;
    }
    std::vector<double> d_nan(n, kNaN), d_masked(n, -kInf);
    kernels::softmax_row_inplace(d_nan.data(), n);
    kernels::softmax_row_inplace(d_masked.data(), n);
    for (int j = 0; j < n; ++j) {
      EXPECT_TRUE(std::isnan(d_nan[j])) << j;
      EXPECT_EQ(d_masked[j], 0.0) << j;
    }
  }
}

TEST(SoftmaxNaN, SoftmaxOpPropagatesNaN) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = from_vector({kNaN, kNaN, kNaN, 1, kNaN, 2, 1, 2, 3}, {3, 3}, dt);
    for (const Tensor& y : {softmax(x, -1), log_softmax(x, -1)}) {
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t c = 0; c < 3; ++c) EXPECT_TRUE(std::isnan(y.at({r, c}))) << r << "," << c;
      for (int64_t c = 0; c < 3; ++c) EXPECT_TRUE(std::isfinite(y.at({2, c})));
    }
  }
}

TEST(SoftmaxNaN, AttentionWithANaNQueryGivesNaN) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor q = full({1, 1, 3, 4}, 0.5, dt), k = full({1, 1, 3, 4}, 0.25, dt), v = full({1, 1, 3, 4}, 1.0, dt);
    q.as_strided({}, {}, 4).fill_(kNaN);  // query 1, channel 0: its whole score row is NaN
    Tensor out = scaled_dot_product_attention(q, k, v, Tensor());
    for (int64_t c = 0; c < 4; ++c) {
      EXPECT_TRUE(std::isnan(out.at({0, 0, 1, c}))) << "query 1 channel " << c;
      EXPECT_DOUBLE_EQ(out.at({0, 0, 0, c}), 1.0);
    }
    // And the loss a trainer sees is not finite.
    EXPECT_TRUE(std::isnan(sum(out).item()));
  }
}
