// Unary ops (exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu, quick_gelu, abs): PyTorch parity, gradcheck, errors.
#include <gtest/gtest.h>

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

using UnaryFn = std::function<Tensor(const Tensor&)>;

const std::vector<std::pair<std::string, UnaryFn>>& unary_ops() {
  static const std::vector<std::pair<std::string, UnaryFn>> ops = {
      {"exp", [](const Tensor& x) { return peft::exp(x); }},
      {"log", [](const Tensor& x) { return peft::log(x); }},
      {"sqrt", [](const Tensor& x) { return peft::sqrt(x); }},
      {"rsqrt", [](const Tensor& x) { return peft::rsqrt(x); }},
      {"tanh", [](const Tensor& x) { return peft::tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return peft::sigmoid(x); }},
      {"relu", [](const Tensor& x) { return peft::relu(x); }},
      {"gelu", [](const Tensor& x) { return peft::gelu(x); }},
      {"quick_gelu", [](const Tensor& x) { return peft::quick_gelu(x); }},
      {"abs", [](const Tensor& x) { return peft::abs(x); }},
  };
  return ops;
}

bool positive_domain(const std::string& op) { return op == "log" || op == "sqrt" || op == "rsqrt"; }

// A float64 leaf of `shape` inside the op's domain and away from kinks (relu and abs at 0).
Tensor input_for(const std::string& op, const Shape& shape, uint64_t seed) {
  if (positive_domain(op)) return rand64(shape, seed, 0.5, 2.0);
  std::vector<double> v = randn64(shape, seed, false).to_vector<double>();
  // Push |x| >= 0.1 so that no central difference straddles 0.
  for (double& e : v) e = e < 0 ? e - 0.1 : e + 0.1;
  return from_vector(v, shape, DType::f64).requires_grad_();
}

}  // namespace

// Forward values and gradients (for a random upstream gradient) against PyTorch, in float64 and float32.
TEST(Unary, MatchesPyTorchFixture) {
  for (const auto& [name, fn] : unary_ops()) {
    const json& c = fixture()["unary"][name];
    for (DType dt : {DType::f64, DType::f32}) {
      const bool f64 = dt == DType::f64;
      const double atol = f64 ? 1e-12 : 1e-5, rtol = f64 ? 1e-12 : 1e-5;
      const std::string what = name + (f64 ? " f64" : " f32");
      Tensor x = from_json(c["x"], dt).requires_grad_();
      Tensor y = fn(x);
      EXPECT_EQ(y.dtype(), dt) << what;
      expect_close(y, c["out"], atol, rtol, what + " forward");
      backward(y, from_json(c["gout"], dt));
      expect_close(x.grad(), c["grad"], atol, rtol, what + " grad");
    }
  }
}

TEST(Unary, GradcheckContiguous) {
  for (const auto& [name, fn] : unary_ops()) {
    SCOPED_TRACE(name);
    auto f = [fn = fn](const std::vector<Tensor>& in) { return fn(in[0]); };
    EXPECT_GRADCHECK(f, std::vector<Tensor>{input_for(name, {3, 4}, 11)});
  }
}

TEST(Unary, GradcheckNonContiguousInputs) {
  for (const auto& [name, fn] : unary_ops()) {
    SCOPED_TRACE(name);
    // A transposed view and a strided slice: the kernels must take their general paths.
    auto ft = [fn = fn](const std::vector<Tensor>& in) { return fn(transpose(in[0], 0, 1)); };
    EXPECT_GRADCHECK(ft, std::vector<Tensor>{input_for(name, {4, 3}, 12)});
    auto fs = [fn = fn](const std::vector<Tensor>& in) { return fn(slice(in[0], 1, 0, 6, 2)); };
    EXPECT_GRADCHECK(fs, std::vector<Tensor>{input_for(name, {2, 6}, 13)});
  }
}

TEST(Unary, GradcheckBroadcastInputAndStrideZeroGradient) {
  for (const auto& [name, fn] : unary_ops()) {
    SCOPED_TRACE(name);
    // A row broadcast to 3 rows (stride-0 input view): its gradient is the sum over the rows.
    auto fe = [fn = fn](const std::vector<Tensor>& in) { return fn(expand(in[0], {3, 4})); };
    EXPECT_GRADCHECK(fe, std::vector<Tensor>{input_for(name, {1, 4}, 14)});
    // Reducing the output makes the upstream gradient itself a stride-0 view.
    auto fr = [fn = fn](const std::vector<Tensor>& in) { return sum(fn(in[0]), {1}); };
    EXPECT_GRADCHECK(fr, std::vector<Tensor>{input_for(name, {3, 4}, 15)});
  }
}

TEST(Unary, GradcheckTensorUsedTwice) {
  for (const auto& [name, fn] : unary_ops()) {
    SCOPED_TRACE(name);
    auto f = [fn = fn](const std::vector<Tensor>& in) { return mul(fn(in[0]), in[0]); };
    EXPECT_GRADCHECK(f, std::vector<Tensor>{input_for(name, {2, 3}, 16)});
  }
}

TEST(Unary, ReluAndAbsHaveZeroGradientAtZero) {
  for (const char* name : {"relu", "abs"}) {
    Tensor x = from_vector({-1.0, 0.0, 2.0}, {3}, DType::f64).requires_grad_();
    Tensor y = std::string(name) == "relu" ? relu(x) : peft::abs(x);
    backward(sum(y));
    std::vector<double> g = x.grad().to_vector<double>();
    EXPECT_EQ(g[0], std::string(name) == "relu" ? 0.0 : -1.0) << name;
    EXPECT_EQ(g[1], 0.0) << name;
    EXPECT_EQ(g[2], 1.0) << name;
  }
}

TEST(Unary, HandValues) {
  Tensor x = from_vector({0.0, 1.0, -1.0}, {3}, DType::f64);
  // gelu(1) = 0.5 (1 + erf(1/sqrt 2)) = Phi(1); quick_gelu(1) = sigmoid(1.702).
  EXPECT_NEAR(gelu(x).at({1}), 0.8413447460685429, 1e-15);
  EXPECT_NEAR(gelu(x).at({2}), -0.15865525393145707, 1e-15);
  EXPECT_NEAR(quick_gelu(x).at({1}), 1.0 / (1.0 + std::exp(-1.702)), 1e-15);
  EXPECT_EQ(sigmoid(x).at({0}), 0.5);
  EXPECT_NEAR(rsqrt(from_vector({4.0}, {1}, DType::f64)).at({0}), 0.5, 1e-15);
}

TEST(Unary, ExtremeInputsStayFinite) {
  Tensor x = from_vector({-1000.0, -100.0, 100.0, 1000.0}, {4}, DType::f32).requires_grad_();
  Tensor s = sigmoid(x);
  EXPECT_EQ(s.at({0}), 0.0);
  EXPECT_EQ(s.at({3}), 1.0);
  Tensor q = quick_gelu(x);
  Tensor t = peft::tanh(x);
  backward(sum(add(add(s, q), t)));
  for (double v : x.grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(v)) << v;
  for (double v : q.to_vector<double>()) EXPECT_TRUE(std::isfinite(v)) << v;
}

TEST(Unary, SavesOnlyWhatBackwardNeeds) {
  Tensor x = randn64({5, 7}, 3);
  // exp, sqrt, tanh and sigmoid keep their output, gelu its input: exactly one [5, 7] tensor each.
  for (const auto& [name, fn] : unary_ops()) {
    Tensor in = positive_domain(name) ? input_for(name, {5, 7}, 4) : x;
    Tensor y = fn(in);
    ASSERT_TRUE(y.grad_fn()) << name;
    EXPECT_EQ(y.grad_fn()->saved_shapes.size(), 1u) << name;
    EXPECT_EQ(y.grad_fn()->saved_bytes, 5u * 7u * 8u) << name;
  }
  // Nothing is recorded for an input that needs no gradient.
  Tensor frozen = randn64({5, 7}, 5, false);
  EXPECT_EQ(peft::exp(frozen).grad_fn(), nullptr);
}

TEST(Unary, LargeInputsTakeTheParallelPath) {
  // More elements than kParallelGrain, contiguous and transposed: same values as elementwise std::.
  Tensor x = randn64({160, 130}, 6, false);
  Tensor xt = transpose(x, 0, 1);
  std::vector<double> v = contiguous(xt).to_vector<double>();
  std::vector<double> got = gelu(xt).to_vector<double>(), got2 = peft::exp(x).to_vector<double>();
  std::vector<double> xv = x.to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_NEAR(got[i], 0.5 * v[i] * (1 + std::erf(v[i] / std::sqrt(2.0))), 1e-14);
    ASSERT_NEAR(got2[i], std::exp(xv[i]), 1e-12 * std::exp(xv[i]));
  }
}

TEST(Unary, BadCallsThrow) {
  Tensor labels = from_vector_i64({1, 2, 3}, {3});
  EXPECT_THROW_MSG(peft::exp(labels), DTypeError, "exp", "int64", "[3]");
  EXPECT_THROW_MSG(gelu(labels), DTypeError, "gelu", "int64", "[3]");
  EXPECT_THROW_MSG(relu(Tensor()), ValueError, "relu", "undefined");
}
