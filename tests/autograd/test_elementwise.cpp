// Binary and scalar elementwise ops: values against PyTorch (float32 and float64), float64
// gradchecks on broadcast, non-contiguous and reused inputs, freeze masks, and error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tests/autograd/core_fixture.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

namespace {

using nlohmann::json;

// ---- this file's ops

Tensor run_case(const std::string& op, const json& a, const std::vector<Tensor>& x) {
  if (op == "add") return add(x[0], x[1]);
  if (op == "sub") return sub(x[0], x[1]);
  if (op == "mul") return mul(x[0], x[1]);
  if (op == "div") return div(x[0], x[1]);
  if (op == "maximum") return maximum(x[0], x[1]);
  if (op == "minimum") return minimum(x[0], x[1]);
  if (op == "pow") return pow(x[0], x[1]);
  if (op == "pow_scalar") return pow(x[0], a.at("s").get<double>());
  if (op == "neg") return neg(x[0]);
  if (op == "add_scalar") return add(x[0], a.at("s").get<double>());
  if (op == "mul_scalar") return mul(x[0], a.at("s").get<double>());
  if (op == "op_add") return x[0] + x[1];
  if (op == "op_sub") return x[0] - x[1];
  if (op == "op_mul") return x[0] * x[1];
  if (op == "op_div") return x[0] / x[1];
  if (op == "op_neg") return -x[0];
  if (op == "op_add_scalar") return x[0] + a.at("s").get<double>();
  if (op == "op_sub_scalar") return x[0] - a.at("s").get<double>();
  if (op == "op_mul_scalar") return x[0] * a.at("s").get<double>();
  if (op == "op_div_scalar") return x[0] / a.at("s").get<double>();
  if (op == "op_scalar_mul") return a.at("s").get<double>() * x[0];
  if (op == "op_scalar_add") return a.at("s").get<double>() + x[0];
  throw ValueError("test_elementwise: no runner for fixture op '" + op + "'");
}

}  // namespace

TEST(ElementwiseFixture, MatchesPyTorchInFloat32AndFloat64) {
  EXPECT_GE(check_family("elementwise", run_case), 40);
}

// ---- float64 gradchecks

namespace {
using BinaryOp = Tensor (*)(const Tensor&, const Tensor&);
struct NamedOp {
  const char* name;
  BinaryOp f;
};
const NamedOp kBinaryOps[] = {{"add", add}, {"sub", sub}, {"mul", mul}, {"div", div}, {"maximum", maximum},
                              {"minimum", minimum}, {"pow", pow}};

// Inputs in the op's domain: positive bases for pow, denominators away from 0 for div.
Tensor lhs(const char* op, const Shape& s, uint64_t seed) {
  return std::string(op) == "pow" ? rand64(s, seed, 0.5, 2.0) : randn64(s, seed);
}
Tensor rhs(const char* op, const Shape& s, uint64_t seed) {
  return std::string(op) == "div" ? rand64(s, seed, 0.5, 2.0) : randn64(s, seed);
}
}  // namespace

TEST(ElementwiseGrad, BroadcastInputs) {
  for (const NamedOp& op : kBinaryOps) {
    SCOPED_TRACE(op.name);
    auto f = [&](const std::vector<Tensor>& in) { return op.f(in[0], in[1]); };
    EXPECT_GRADCHECK(f, (std::vector<Tensor>{lhs(op.name, {3, 1, 4}, 1), rhs(op.name, {2, 4}, 2)}));
    EXPECT_GRADCHECK(f, (std::vector<Tensor>{lhs(op.name, {4}, 3), rhs(op.name, {2, 3, 1}, 4)}));
    // A 0-d operand, inside the range of the other one so that maximum/minimum pick both sides.
    Tensor s = from_vector({0.3}, {}, DType::f64).requires_grad_();
    EXPECT_GRADCHECK(f, (std::vector<Tensor>{lhs(op.name, {2, 3}, 5), s}));
    EXPECT_GRADCHECK(f, (std::vector<Tensor>{s, rhs(op.name, {2, 3}, 6)}));
  }
}

TEST(ElementwiseGrad, NonContiguousInputs) {
  for (const NamedOp& op : kBinaryOps) {
    SCOPED_TRACE(op.name);
    // Leaves that are themselves transposed views (strides [1, 3]) ...
    Tensor a = transpose(lhs(op.name, {4, 3}, 7).detach(), 0, 1).requires_grad_();
    Tensor b = transpose(rhs(op.name, {4, 3}, 8).detach(), 0, 1).requires_grad_();
    ASSERT_FALSE(a.is_contiguous());
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return op.f(in[0], in[1]); }, (std::vector<Tensor>{a, b}));
    // ... and operands sliced with a step inside the graph (the gradient goes through the slice).
    auto f = [&](const std::vector<Tensor>& in) {
      return op.f(slice(in[0], 1, 0, 6, 2), transpose(slice(in[1], 0, 1, 7, 2), 0, 1));
    };
    EXPECT_GRADCHECK(f, (std::vector<Tensor>{lhs(op.name, {2, 6}, 9), rhs(op.name, {7, 2}, 10)}));
  }
}

TEST(ElementwiseGrad, TensorUsedTwice) {
  // d(x+x)/dx = 2, d(x*x)/dx = 2x, d(x^x)/dx = x^x (1 + log x), d(x/x)/dx = 0 (checked below).
  for (const NamedOp& op : kBinaryOps) {
    std::string name = op.name;
    if (name == "sub" || name == "div") continue;  // x-x and x/x are constant: zero gradient
    SCOPED_TRACE(name);
    Tensor x = name == "pow" ? rand64({2, 3}, 11, 0.5, 2.0) : randn64({2, 3}, 11);
    // maximum(x, x) is a tie everywhere: each side gets half, the sum is exactly 1.
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return op.f(in[0], in[0]); }, (std::vector<Tensor>{x}));
  }
  Tensor x = rand64({5}, 12, 0.5, 2.0);
  backward(sum(add(div(x, x), sub(x, x))));
  ASSERT_TRUE(x.grad().defined());
  for (double g : x.grad().to_vector<double>()) EXPECT_NEAR(g, 0.0, 1e-15);
  // Ties split the gradient evenly: maximum(x, x) passes exactly 1 in total.
  Tensor t = randn64({4}, 13);
  backward(sum(maximum(t, t)));
  for (double g : t.grad().to_vector<double>()) EXPECT_EQ(g, 1.0);
}

TEST(ElementwiseGrad, ScalarFormsAndOperators) {
  std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> fs = {
      {"add_s", [](const Tensor& x) { return add(x, 1.5); }},
      {"mul_s", [](const Tensor& x) { return mul(x, -2.5); }},
      {"neg", [](const Tensor& x) { return neg(x); }},
      {"pow 2", [](const Tensor& x) { return pow(x, 2.0); }},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }},
      {"pow 0.5", [](const Tensor& x) { return pow(add(mul(x, x), 0.5), 0.5); }},
      {"pow -1.5", [](const Tensor& x) { return pow(add(mul(x, x), 0.5), -1.5); }},
      {"operators", [](const Tensor& x) { return (2.0 * x + 1.0) * (x - 0.5) / 3.0 + (1.0 + -x) - x / (x * x + 1.0); }},
  };
  for (auto& [name, f] : fs) {
    SCOPED_TRACE(name);
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return f(in[0]); }, (std::vector<Tensor>{randn64({3, 4}, 14)}));
    // And on a stepped, transposed view of a wider leaf.
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return f(transpose(slice(in[0], 1, 1, 8, 2), 0, 1)); },
                     (std::vector<Tensor>{randn64({3, 8}, 15)}));
  }
}

TEST(ElementwiseGrad, PowExponentGradientIsZeroAtZeroBase) {
  // d(a^b)/db = a^b log a -> 0 as a -> 0 (for b > 0): PyTorch's limit, not 0 * -inf = NaN.
  Tensor a = zeros({3}, DType::f64), b = from_vector({1.0, 2.0, 0.5}, {3}, DType::f64).requires_grad_();
  backward(sum(pow(a, b)));
  for (double g : b.grad().to_vector<double>()) EXPECT_EQ(g, 0.0);
}

TEST(Elementwise, MaximumAndMinimumPropagateNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor a = from_vector({nan, 1.0, 2.0}, {3}, DType::f64), b = from_vector({1.0, nan, 3.0}, {3}, DType::f64);
  for (BinaryOp f : {maximum, minimum}) {
    auto v = f(a, b).to_vector<double>();
    EXPECT_TRUE(std::isnan(v[0]));
    EXPECT_TRUE(std::isnan(v[1]));
    EXPECT_FALSE(std::isnan(v[2]));
  }
}

// ---- freeze masks

TEST(ElementwiseFreeze, FrozenInputsReceiveNoGradient) {
  for (const NamedOp& op : kBinaryOps) {
    SCOPED_TRACE(op.name);
    Tensor a = lhs(op.name, {2, 3}, 20), b = rhs(op.name, {3}, 21);
    a.requires_grad_(false);
    backward(sum(op.f(a, b)));
    EXPECT_FALSE(a.grad().defined());
    EXPECT_TRUE(b.grad().defined());
    b.zero_grad();
    a.requires_grad_(true);
    b.requires_grad_(false);
    backward(sum(op.f(a, b)));
    EXPECT_TRUE(a.grad().defined());
    EXPECT_FALSE(b.grad().defined());
    // Both frozen: nothing is recorded.
    a.requires_grad_(false);
    Tensor y = op.f(a, b);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  Tensor x = randn64({3}, 22, false);
  for (Tensor y : {neg(x), add(x, 1.0), mul(x, 2.0), pow(x, 2.0)}) EXPECT_EQ(y.grad_fn(), nullptr);
}

TEST(ElementwiseFreeze, MulSavesOnlyTheOperandTheTrainableSideNeeds) {
  // d(a*b)/db = a: with a frozen and b trainable, only a is kept alive for backward.
  Tensor a = randn64({4, 5}, 23, false), b = randn64({5}, 24);
  Tensor y = mul(a, b);
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->saved_bytes, a.nbytes());
  Tensor y2 = mul(b, a);
  EXPECT_EQ(y2.grad_fn()->saved_bytes, a.nbytes());
  EXPECT_FALSE(y.grad_fn()->needs_grad(0));
  EXPECT_TRUE(y.grad_fn()->needs_grad(1));
}

TEST(ElementwiseFreeze, PowSavesOnlyWhatTheNeededGradientsUse) {
  // d(a^b)/da = b a^(b-1) needs a and b; d(a^b)/db = a^b log a needs a and the output.
  Tensor a = rand64({4, 5}, 25, 0.5, 2.0), e = rand64({4, 5}, 26, 0.5, 2.0, false);
  EXPECT_EQ(pow(a, e).grad_fn()->saved_bytes, a.nbytes() + e.nbytes());
  EXPECT_EQ(pow(e, a).grad_fn()->saved_bytes, e.nbytes() + e.nbytes());  // base + output (same shape)
  EXPECT_EQ(pow(a, 2.0).grad_fn()->saved_bytes, a.nbytes() + sizeof(double));  // the 0-d exponent
}

// ---- bad calls

TEST(ElementwiseErrors, ShapeMismatchNamesOpAndBothShapes) {
  Tensor a = zeros({2, 3}), b = zeros({4});
  EXPECT_THROW_MSG(add(a, b), ShapeError, "add", "[2, 3]", "[4]", "Hint");
  EXPECT_THROW_MSG(mul(a, zeros({3, 3})), ShapeError, "mul", "[2, 3]", "[3, 3]");
  EXPECT_THROW_MSG(maximum(zeros({2, 1, 5}), zeros({3, 4})), ShapeError, "maximum", "[2, 1, 5]", "[3, 4]");
}

TEST(ElementwiseErrors, DTypeMixNamesBothDTypes) {
  Tensor a = zeros({2, 3}, DType::f32), b = zeros({2, 3}, DType::f64);
  EXPECT_THROW_MSG(add(a, b), DTypeError, "add", "float32", "float64", "Hint");
  EXPECT_THROW_MSG(div(b, a), DTypeError, "div", "float64", "float32");
  EXPECT_THROW_MSG(add(arange(3, DType::i64), arange(3, DType::i64)), DTypeError, "add", "int64");
  EXPECT_THROW_MSG(neg(arange(3, DType::i64)), DTypeError, "neg", "int64");
}

TEST(ElementwiseErrors, UndefinedArgument) {
  EXPECT_THROW_MSG(add(zeros({2}), Tensor()), ValueError, "add", "undefined");
}
