// softmax / log_softmax: PyTorch parity, stability at +-1000, gradcheck (dims, views, reuse), errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tests/autograd/ops_a_fixture.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;
using json = nlohmann::json;

namespace {

const json& fixture() { return ops_a_fixture(); }

using SoftmaxFn = Tensor (*)(const Tensor&, int64_t);
const std::vector<std::pair<std::string, SoftmaxFn>> kOps = {{"softmax", &peft::softmax},
                                                            {"log_softmax", &peft::log_softmax}};

// Plain per-row reference on a contiguous [R, N] double buffer.
std::vector<double> naive_rows(const std::vector<double>& x, int64_t R, int64_t N, bool log) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < R; ++r) {
    double m = x[r * N];
    for (int64_t i = 0; i < N; ++i) m = std::max(m, x[r * N + i]);
    double s = 0;
    for (int64_t i = 0; i < N; ++i) s += std::exp(x[r * N + i] - m);
    for (int64_t i = 0; i < N; ++i)
      y[r * N + i] = log ? x[r * N + i] - m - std::log(s) : std::exp(x[r * N + i] - m) / s;
  }
  return y;
}

}  // namespace

TEST(Softmax, MatchesPyTorchFixture) {
  for (const json& c : fixture()["softmax"]) {
    const std::string op = c["op"];
    SoftmaxFn fn = op == "softmax" ? &peft::softmax : &peft::log_softmax;
    const int64_t dim = c["dim"];
    for (DType dt : {DType::f64, DType::f32}) {
      const bool f64 = dt == DType::f64;
      const double tol = f64 ? 1e-12 : 2e-6;
      const std::string what = op + " dim " + std::to_string(dim) + (f64 ? " f64" : " f32");
      Tensor x = from_json(c["x"], dt).requires_grad_();
      Tensor y = fn(x, dim);
      expect_close(y, c["out"], tol, tol, what + " forward");
      backward(y, from_json(c["gout"], dt));
      expect_close(x.grad(), c["grad"], tol, tol, what + " grad");
    }
  }
}

TEST(Softmax, PlusMinus1000GivesNoNaN) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = from_vector({1000, -1000, 0, -1000, -1000, -1000}, {2, 3}, dt).requires_grad_();
    Tensor p = softmax(x, -1), lp = log_softmax(x, -1);
    std::vector<double> pv = p.to_vector<double>(), lv = lp.to_vector<double>();
    const std::vector<double> pe = {1, 0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3};
    const std::vector<double> le = {0, -2000, -1000, -std::log(3.0), -std::log(3.0), -std::log(3.0)};
    for (size_t i = 0; i < pv.size(); ++i) {
      EXPECT_NEAR(pv[i], pe[i], 1e-6) << dtype_name(dt) << " " << i;
      EXPECT_NEAR(lv[i], le[i], 1e-4) << dtype_name(dt) << " " << i;
    }
    Tensor w = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, dt);
    backward(sum(add(mul(p, w), mul(lp, w))));
    for (double v : x.grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(v)) << dtype_name(dt);
  }
}

TEST(Softmax, RowsSumToOneAndLogMatches) {
  Tensor x = randn64({4, 6}, 21, false);
  Tensor s = sum(softmax(x, -1), {-1});
  for (double v : s.to_vector<double>()) EXPECT_NEAR(v, 1.0, 1e-14);
  EXPECT_LT(max_abs_diff(peft::exp(log_softmax(x, 1)), softmax(x, 1)), 1e-15);
  // A 0-d tensor is one row of one element.
  EXPECT_EQ(softmax(scalar_tensor(3.0, DType::f64), 0).item(), 1.0);
}

TEST(Softmax, GradcheckEveryDim) {
  for (const auto& [name, fn] : kOps)
    for (int64_t dim : {0, 1, 2, -1}) {
      SCOPED_TRACE(name + " dim " + std::to_string(dim));
      auto f = [fn = fn, dim](const std::vector<Tensor>& in) { return fn(in[0], dim); };
      EXPECT_GRADCHECK(f, std::vector<Tensor>{randn64({2, 3, 4}, 22)});
    }
}

TEST(Softmax, GradcheckNonContiguousInputs) {
  for (const auto& [name, fn] : kOps) {
    SCOPED_TRACE(name);
    auto ft = [fn = fn](const std::vector<Tensor>& in) { return fn(transpose(in[0], 0, 1), -1); };
    EXPECT_GRADCHECK(ft, std::vector<Tensor>{randn64({5, 3}, 23)});
    auto fs = [fn = fn](const std::vector<Tensor>& in) { return fn(slice(in[0], 1, 1, 8, 2), 1); };
    EXPECT_GRADCHECK(fs, std::vector<Tensor>{randn64({3, 8}, 24)});
  }
}

TEST(Softmax, GradcheckBroadcastAndStrideZeroGradient) {
  for (const auto& [name, fn] : kOps) {
    SCOPED_TRACE(name);
    // A shared row broadcast over 3 rows, then weighted so that the gradient is not zero.
    Tensor w = randn64({3, 4}, 25, false);
    auto fe = [fn = fn, w](const std::vector<Tensor>& in) { return mul(fn(expand(in[0], {3, 4}), -1), w); };
    EXPECT_GRADCHECK(fe, std::vector<Tensor>{randn64({1, 4}, 26)});
  }
  // sum over the rows hands log_softmax a stride-0 upstream gradient.
  auto fr = [](const std::vector<Tensor>& in) { return sum(log_softmax(in[0], -1), {1}); };
  EXPECT_GRADCHECK(fr, std::vector<Tensor>{randn64({3, 4}, 27)});
}

TEST(Softmax, GradcheckTensorUsedTwice) {
  for (const auto& [name, fn] : kOps) {
    SCOPED_TRACE(name);
    auto f = [fn = fn](const std::vector<Tensor>& in) { return mul(fn(in[0], -1), in[0]); };
    EXPECT_GRADCHECK(f, std::vector<Tensor>{randn64({3, 4}, 28)});
    auto f0 = [fn = fn](const std::vector<Tensor>& in) { return mul(fn(in[0], 0), in[0]); };
    EXPECT_GRADCHECK(f0, std::vector<Tensor>{randn64({3, 4}, 29)});
  }
}

TEST(Softmax, SavesOnlyItsOutput) {
  Tensor x = randn64({4, 5}, 30);
  for (const auto& [name, fn] : kOps) {
    Tensor y = fn(x, -1);
    ASSERT_TRUE(y.grad_fn()) << name;
    EXPECT_EQ(y.grad_fn()->saved_shapes.size(), 1u) << name;
    EXPECT_EQ(y.grad_fn()->saved_bytes, 4u * 5u * 8u) << name;
  }
}

TEST(Softmax, LargeInputsTakeTheParallelPath) {
  // rows * n above kParallelGrain, float32, contiguous and transposed, against a naive double loop.
  const int64_t R = 48, N = 400;
  Tensor x64 = randn64({R, N}, 31, false);
  std::vector<double> xv = x64.to_vector<double>();
  for (bool log : {false, true}) {
    std::vector<double> want = naive_rows(xv, R, N, log);
    Tensor x32 = x64.to(DType::f32);
    std::vector<double> got = (log ? log_softmax(x32, -1) : softmax(x32, -1)).to_vector<double>();
    Tensor xt = contiguous(transpose(x32, 0, 1));  // [N, R]: softmax over dim 0 is the same rows
    std::vector<double> got_t = contiguous(transpose(log ? log_softmax(xt, 0) : softmax(xt, 0), 0, 1)).to_vector<double>();
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-6 + 1e-5 * std::abs(want[i])) << log << " " << i;
      ASSERT_NEAR(got_t[i], want[i], 1e-6 + 1e-5 * std::abs(want[i])) << log << " " << i;
    }
  }
  // Backward on the parallel path: sum(softmax) has zero gradient, sum(log_softmax) has 1 - N p.
  Tensor x = x64.detach().requires_grad_();
  backward(sum(softmax(x, -1)));
  for (double v : x.grad().to_vector<double>()) ASSERT_NEAR(v, 0.0, 1e-13);
  x.zero_grad();
  backward(sum(log_softmax(x, -1)));
  std::vector<double> p = naive_rows(xv, R, N, false), g = x.grad().to_vector<double>();
  for (size_t i = 0; i < p.size(); ++i) ASSERT_NEAR(g[i], 1.0 - static_cast<double>(N) * p[i], 1e-12);
}

TEST(Softmax, BadCallsThrow) {
  Tensor x = zeros({2, 3});
  EXPECT_THROW_MSG(softmax(x, 2), ShapeError, "softmax", "dim 2", "[2, 3]");
  EXPECT_THROW_MSG(log_softmax(x, -3), ShapeError, "log_softmax", "dim -3", "[2, 3]");
  EXPECT_THROW_MSG(softmax(from_vector_i64({1, 2}, {2}), -1), DTypeError, "softmax", "int64", "[2]");
  EXPECT_THROW_MSG(log_softmax(Tensor(), -1), ValueError, "log_softmax", "undefined");
}
