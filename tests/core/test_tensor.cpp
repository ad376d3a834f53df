// Tensor basics: factories, strides, raw views, copies, printing, dtype checks.
#include <gtest/gtest.h>

#include <cmath>

#include "core/counters.h"
#include "core/random.h"
#include "core/tensor.h"
#include "tests/testing.h"

using namespace peft;

TEST(Tensor, FactoriesAndStrides) {
  Tensor t = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.sizes(), (Shape{2, 3}));
  EXPECT_EQ(t.strides(), (Shape{3, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.at({1, 2}), 6.0);
  EXPECT_EQ(zeros({4}).at({3}), 0.0);
  EXPECT_EQ(full({2}, 2.5, DType::f64).at({1}), 2.5);
  EXPECT_EQ(arange(5, DType::i64).at({4}), 4.0);
  EXPECT_THROW(from_vector({1, 2}, {3}), ShapeError);
}

TEST(Tensor, TransposeIsAViewWithoutCopy) {
  Tensor t = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  int64_t live = counters().live_storages;
  Tensor tt = transpose(t, 0, 1);
  EXPECT_EQ(counters().live_storages, live);  // no new storage
  EXPECT_EQ(tt.sizes(), (Shape{3, 2}));
  EXPECT_EQ(tt.strides(), (Shape{1, 3}));
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.at({2, 1}), 6.0);
  Tensor c = contiguous(tt);
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(Tensor, CopyConvertsDtypeAndLayout) {
  Tensor t = from_vector({1, 2, 3, 4}, {2, 2}, DType::f64);
  Tensor f = transpose(t, 0, 1).to(DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_EQ(f.to_vector<float>(), (std::vector<float>{1, 3, 2, 4}));
  EXPECT_THROW(t.data<float>(), DTypeError);
}

TEST(Tensor, AsStridedRejectsOutOfBoundsViews) {
  Tensor t = zeros({4});
  EXPECT_THROW(t.as_strided({5}, {1}, 0), ShapeError);
  EXPECT_THROW(t.as_strided({2}, {1}, 3), ShapeError);
}

TEST(Tensor, PrintsReadably) {
  Tensor t = from_vector({1, 2, 3, 4}, {2, 2});
  std::string s = t.str();
  EXPECT_NE(s.find("1.0000"), std::string::npos) << s;
  EXPECT_NE(s.find("shape=[2, 2]"), std::string::npos) << s;
  EXPECT_NE(s.find("float32"), std::string::npos) << s;
}

TEST(Tensor, StorageIsFreedWithLastHandle) {
  int64_t before = counters().live_bytes;
  {
    Tensor t = zeros({1000});
    Tensor v = narrow(t, 0, 10, 5);
    EXPECT_EQ(counters().live_bytes, before + 4000);
  }
  EXPECT_EQ(counters().live_bytes, before);
}

TEST(Random, SeededGeneratorsRepeat) {
  Generator a(42), b(42), c(43);
  Tensor x = randn({100}, a), y = randn({100}, b), z = randn({100}, c);
  EXPECT_EQ(max_abs_diff(x, y), 0.0);
  EXPECT_GT(max_abs_diff(x, z), 0.0);
}

TEST(Random, InitialisersFollowPyTorchFanRules) {
  Generator g(1);
  Tensor w = empty({64, 32});
  kaiming_uniform_(w, g, std::sqrt(5.0));  // nn.Linear default: U(+-1/sqrt(fan_in))
  auto v = w.to_vector<double>();
  double bound = 1.0 / std::sqrt(32.0), mx = 0;
  for (double e : v) mx = std::max(mx, std::fabs(e));
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.9 * bound);
  Tensor p = empty({12, 10, 64});
  xavier_uniform_(p, g);  // fan_in 10*64, fan_out 12*64
  double b2 = std::sqrt(6.0 / (10 * 64 + 12 * 64));
  mx = 0;
  for (double e : p.to_vector<double>()) mx = std::max(mx, std::fabs(e));
  EXPECT_LE(mx, b2);
  EXPECT_GT(mx, 0.95 * b2);
}
