// Reductions: sum/mean/var/max/argmax/sum_to against PyTorch (float32 and float64) over single,
// multiple, negative and all axes with keepdim both ways; float64 gradchecks; errors.
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
#include "core/threads.h"
#include "tests/autograd/core_fixture.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

namespace {

using nlohmann::json;

// ---- this file's ops

Tensor run_case(const std::string& op, const json& a, const std::vector<Tensor>& x) {
  if (op == "sum") return sum(x[0], a.at("dims").get<std::vector<int64_t>>(), a.at("keepdim").get<bool>());
  if (op == "mean") return mean(x[0], a.at("dims").get<std::vector<int64_t>>(), a.at("keepdim").get<bool>());
  if (op == "var")
    return var(x[0], a.at("dims").get<std::vector<int64_t>>(), a.at("unbiased").get<bool>(), a.at("keepdim").get<bool>());
  if (op == "max") return max(x[0], a.at("dim").get<int64_t>(), a.at("keepdim").get<bool>());
  if (op == "argmax") return argmax(x[0], a.at("dim").get<int64_t>(), a.at("keepdim").get<bool>());
  if (op == "sum_to") return sum_to(x[0], a.at("shape").get<Shape>());
  throw ValueError("test_reduce: no runner for fixture op '" + op + "'");
}

// Plain loop over every element of x: the sum of the elements whose index satisfies keep(index).
double sum_where(const Tensor& x, const std::function<bool(const std::vector<int64_t>&)>& keep) {
  double s = 0;
  std::vector<int64_t> idx(x.dim(), 0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t r = i;
    for (int64_t d = x.dim(); d-- > 0;) {
      idx[d] = r % x.size(d);
      r /= x.size(d);
    }
    if (keep(idx)) s += x.at(idx);
  }
  return s;
}

}  // namespace

TEST(ReduceFixture, MatchesPyTorchInFloat32AndFloat64) { EXPECT_GE(check_family("reduce", run_case), 40); }

TEST(ReduceShapes, KeepdimAndAxisForms) {
  Tensor x = zeros({2, 3, 4});
  EXPECT_EQ(sum(x).sizes(), Shape{});
  EXPECT_EQ(sum(x, {}, true).sizes(), (Shape{1, 1, 1}));
  EXPECT_EQ(sum(x, {1}).sizes(), (Shape{2, 4}));
  EXPECT_EQ(sum(x, {1}, true).sizes(), (Shape{2, 1, 4}));
  EXPECT_EQ(sum(x, {-1, 0}).sizes(), (Shape{3}));
  EXPECT_EQ(sum(x, {0, 1, 2}).sizes(), Shape{});
  EXPECT_EQ(mean(x, {-2}, true).sizes(), (Shape{2, 1, 4}));
  EXPECT_EQ(var(x, {0, 2}, false).sizes(), (Shape{3}));
  EXPECT_EQ(max(x, -1).sizes(), (Shape{2, 3}));
  EXPECT_EQ(max(x, 0, true).sizes(), (Shape{1, 3, 4}));
  EXPECT_EQ(argmax(x, 1).sizes(), (Shape{2, 4}));
  EXPECT_EQ(argmax(x, 1).dtype(), DType::i64);
  // 0-d input: sum/max/argmax of a scalar are the scalar (and index 0).
  Tensor s = scalar_tensor(2.5, DType::f64);
  EXPECT_EQ(sum(s).item(), 2.5);
  EXPECT_EQ(max(s, 0).item(), 2.5);
  EXPECT_EQ(argmax(s, 0).item(), 0.0);
  EXPECT_EQ(argmax(s, -1, true).sizes(), Shape{});
}

TEST(ReduceValues, LargeSumsMatchALoopOnEveryPath) {
  // Big enough (> kParallelGrain elements) for the OpenMP loops, on both kernel paths: the
  // contiguous leading-axes fast path (dims {0}) and the general strided path.
  Generator gen(3);
  Tensor x = randn({150, 130}, gen, DType::f64);
  ASSERT_GT(x.numel(), kParallelGrain);
  Tensor s0 = sum(x, {0}), s1 = sum(x, {1}), st = sum(transpose(x, 0, 1), {1}), all = sum(x);
  for (int64_t j : {0, 77, 129}) {
    const double want = sum_where(x, [&](const std::vector<int64_t>& i) { return i[1] == j; });
    EXPECT_NEAR(s0.at({j}), want, 1e-11);
    EXPECT_NEAR(st.at({j}), want, 1e-11);
  }
  for (int64_t i : {0, 64, 149})
    EXPECT_NEAR(s1.at({i}), sum_where(x, [&](const std::vector<int64_t>& k) { return k[0] == i; }), 1e-11);
  EXPECT_NEAR(all.item(), sum_where(x, [](const std::vector<int64_t>&) { return true; }), 1e-9);
  // float32 accumulates in double: 1e6 ones sum exactly.
  EXPECT_EQ(sum(ones({1000, 1000})).item(), 1e6);
  EXPECT_EQ(sum(ones({1000, 1000}), {1}).at({999}), 1000.0);
}

TEST(ReduceValues, MaxTakesTheFirstMaximumAndPropagatesNaN) {
  Tensor x = from_vector({1, 3, 3, 2, 5, 5, 5, 0}, {2, 4}, DType::f64).requires_grad_();
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  backward(sum(max(x, 1)));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1, 0, 0, 1, 0, 0, 0}));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor y = from_vector({1, nan, 3}, {3}, DType::f64);
  EXPECT_TRUE(std::isnan(max(y, 0).item()));
  EXPECT_EQ(argmax(y, 0).item(), 1.0);
}

// ---- float64 gradchecks

TEST(ReduceGrad, SumMeanVarOverAxes) {
  const std::vector<std::vector<int64_t>> axes = {{}, {0}, {1}, {-1}, {0, 2}, {-3, -1}, {2, 1, 0}};
  for (const auto& dims : axes)
    for (bool keepdim : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dims size " << dims.size() << " keepdim " << keepdim);
      const std::vector<Tensor> in = {randn64({2, 3, 4}, 31)};
      EXPECT_GRADCHECK([&](const std::vector<Tensor>& v) { return sum(v[0], dims, keepdim); }, in);
      EXPECT_GRADCHECK([&](const std::vector<Tensor>& v) { return mean(v[0], dims, keepdim); }, in);
      for (bool unbiased : {true, false})
        EXPECT_GRADCHECK([&](const std::vector<Tensor>& v) { return var(v[0], dims, unbiased, keepdim); }, in);
    }
}

TEST(ReduceGrad, MaxAndSumTo) {
  for (int64_t dim : {0, 1, -1})
    for (bool keepdim : {false, true})
      EXPECT_GRADCHECK([&](const std::vector<Tensor>& v) { return max(v[0], dim, keepdim); },
                       (std::vector<Tensor>{randn64({3, 4, 5}, 32)}));
  for (Shape target : {Shape{3, 1}, Shape{1, 4}, Shape{4}, Shape{2, 1, 4}, Shape{}})
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& v) { return sum_to(v[0], target); },
                     (std::vector<Tensor>{randn64({2, 3, 4}, 33)}));
}

TEST(ReduceGrad, NonContiguousInputsAndChainedViews) {
  // A transposed leaf, and a stepped slice of a permuted leaf inside the graph.
  Tensor t = transpose(randn64({5, 4}, 34, false), 0, 1).requires_grad_();
  ASSERT_FALSE(t.is_contiguous());
  for (int64_t d : {0, 1}) {
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& v) { return sum(v[0], {d}); }, (std::vector<Tensor>{t}));
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& v) { return var(v[0], {d}, true, true); }, (std::vector<Tensor>{t}));
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& v) { return max(v[0], d); }, (std::vector<Tensor>{t}));
  }
  auto chain = [](const std::vector<Tensor>& v) {
    Tensor s = slice(permute(v[0], {2, 0, 1}), 2, 1, 6, 2);  // [4, 2, 3] -> [4, 2, 3 of 6 step 2]
    return mean(reshape(s, {4, -1}), {-1});
  };
  EXPECT_GRADCHECK(chain, (std::vector<Tensor>{randn64({2, 6, 4}, 35)}));
}

TEST(ReduceGrad, TensorUsedTwice) {
  // x enters both the reduction and the product: d/dx sum(x * mean(x, 0)) has two terms.
  EXPECT_GRADCHECK([](const std::vector<Tensor>& v) { return sum(mul(v[0], mean(v[0], {0}, true)), {1}); },
                   (std::vector<Tensor>{randn64({3, 4}, 36)}));
  EXPECT_GRADCHECK([](const std::vector<Tensor>& v) { return add(max(v[0], 1), sum(v[0], {1})); },
                   (std::vector<Tensor>{randn64({3, 4}, 37)}));
}

// ---- freeze masks

TEST(ReduceFreeze, FrozenInputsRecordNothing) {
  Tensor x = randn64({3, 4}, 38, false);
  for (Tensor y : {sum(x), mean(x, {1}), var(x, {0}), max(x, 1), sum_to(x, {1, 4})}) {
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  EXPECT_FALSE(argmax(randn64({3, 4}, 39, true), 1).requires_grad());  // indices never need a gradient
}

// ---- bad calls

TEST(ReduceErrors, BadAxesNameTheOp) {
  Tensor x = zeros({2, 3, 4});
  EXPECT_THROW_MSG(sum(x, {3}), ShapeError, "sum", "dim 3", "3-d");
  EXPECT_THROW_MSG(sum(x, {-4}), ShapeError, "sum", "dim -4");
  EXPECT_THROW_MSG(sum(x, {1, -2}), ShapeError, "sum", "twice");
  EXPECT_THROW_MSG(mean(x, {5}), ShapeError, "mean");
  EXPECT_THROW_MSG(var(x, {7}), ShapeError, "var");
  EXPECT_THROW_MSG(max(x, 3), ShapeError, "max");
  EXPECT_THROW_MSG(argmax(x, -4), ShapeError, "argmax");
  EXPECT_THROW_MSG(var(zeros({1, 3}), {0}), ShapeError, "var", "at least 2");
  EXPECT_THROW_MSG(max(zeros({2, 0}), 1), ShapeError, "max", "empty");
  EXPECT_THROW_MSG(argmax(zeros({2, 0}), 1), ShapeError, "argmax", "empty");
  EXPECT_THROW_MSG(sum_to(x, {5}), ShapeError, "sum_to", "[2, 3, 4]", "[5]");
  EXPECT_THROW_MSG(sum_to(zeros({4}), {2, 4}), ShapeError, "sum_to", "[4]", "[2, 4]");
  EXPECT_THROW_MSG(sum(arange(3, DType::i64)), DTypeError, "sum", "int64");
}
