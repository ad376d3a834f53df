// cross_entropy: PyTorch parity (with label smoothing), (softmax - target) / B backward, gradcheck, label errors.
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

Tensor labels_i64(const json& t) {
  return from_vector_i64(t["data"].get<std::vector<int64_t>>(), t["shape"].get<Shape>());
}

}  // namespace

TEST(CrossEntropy, MatchesPyTorchFixture) {
  for (const json& c : fixture()["cross_entropy"]) {
    const std::string name = c["name"];
    const double s = c["label_smoothing"];
    for (DType dt : {DType::f64, DType::f32}) {
      const bool f64 = dt == DType::f64;
      const double tol = f64 ? 1e-12 : 1e-5;
      const std::string what = name + (f64 ? " f64" : " f32");
      Tensor x = from_json(c["logits"], dt).requires_grad_();
      Tensor loss = cross_entropy(x, labels_i64(c["labels"]), s);
      EXPECT_EQ(loss.dim(), 0) << what;
      EXPECT_EQ(loss.dtype(), dt) << what;
      expect_close(loss, c["out"], tol, tol, what + " loss");
      backward(loss);
      expect_close(x.grad(), c["grad"], tol, tol, what + " grad");
    }
  }
}

TEST(CrossEntropy, BackwardIsSoftmaxMinusTargetOverB) {
  const int64_t B = 3, K = 4;
  Tensor x = randn64({B, K}, 81);
  Tensor labels = from_vector_i64({2, 0, 3}, {B});
  for (double s : {0.0, 0.3}) {
    x.zero_grad();
    backward(cross_entropy(x, labels, s));
    std::vector<double> p = softmax(x.detach(), -1).to_vector<double>(), g = x.grad().to_vector<double>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k) {
        const double target = (k == labels.at({b}) ? 1.0 - s : 0.0) + s / K;
        EXPECT_NEAR(g[b * K + k], (p[b * K + k] - target) / B, 1e-15) << s << " " << b << " " << k;
      }
  }
  // Equals the composed form -mean(log_softmax[y]) within rounding.
  Tensor lp = log_softmax(x.detach(), -1);
  double want = -(lp.at({0, 2}) + lp.at({1, 0}) + lp.at({2, 3})) / B;
  EXPECT_NEAR(cross_entropy(x.detach(), labels).item(), want, 1e-14);
}

TEST(CrossEntropy, Gradcheck) {
  Tensor labels = from_vector_i64({1, 0, 4, 2}, {4});
  for (double s : {0.0, 0.1}) {
    SCOPED_TRACE(s);
    auto f = [labels, s](const std::vector<Tensor>& in) { return cross_entropy(in[0], labels, s); };
    EXPECT_GRADCHECK(f, std::vector<Tensor>{randn64({4, 5}, 82)});
    // Non-contiguous logits: a transposed [K, B] leaf and a strided column slice.
    auto ft = [labels, s](const std::vector<Tensor>& in) { return cross_entropy(transpose(in[0], 0, 1), labels, s); };
    EXPECT_GRADCHECK(ft, std::vector<Tensor>{randn64({5, 4}, 83)});
    auto fs = [labels, s](const std::vector<Tensor>& in) { return cross_entropy(slice(in[0], 1, 0, 10, 2), labels, s); };
    EXPECT_GRADCHECK(fs, std::vector<Tensor>{randn64({4, 10}, 84)});
  }
}

TEST(CrossEntropy, GradcheckBroadcastAndTensorUsedTwice) {
  Tensor labels = from_vector_i64({1, 0, 2}, {3});
  // One logit row shared by the whole batch (a stride-0 input to the loss).
  auto fe = [labels](const std::vector<Tensor>& in) { return cross_entropy(expand(in[0], {3, 3}), labels, 0.1); };
  EXPECT_GRADCHECK(fe, std::vector<Tensor>{randn64({1, 3}, 85)});
  // The logits used twice: as logits and scaled by themselves.
  auto f2 = [labels](const std::vector<Tensor>& in) { return cross_entropy(mul(in[0], in[0]), labels, 0.0); };
  EXPECT_GRADCHECK(f2, std::vector<Tensor>{randn64({3, 3}, 86)});
  auto f3 = [labels](const std::vector<Tensor>& in) {
    return add(cross_entropy(in[0], labels, 0.0), mul(cross_entropy(in[0], labels, 0.2), 3.0));
  };
  EXPECT_GRADCHECK(f3, std::vector<Tensor>{randn64({3, 3}, 87)});
}

TEST(CrossEntropy, LargeLogitsStayFinite) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = from_vector({1000, -1000, 0, -1000, 1000, -1000}, {2, 3}, dt).requires_grad_();
    Tensor loss = cross_entropy(x, from_vector_i64({0, 2}, {2}));
    EXPECT_NEAR(loss.item(), 1000.0, 1e-3) << dtype_name(dt);  // (0 + 2000) / 2
    backward(loss);
    for (double v : x.grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(v)) << dtype_name(dt);
  }
}

TEST(CrossEntropy, LargeBatchTakesTheParallelPath) {
  // B * K above kParallelGrain: float32 loss and gradient against float64.
  const int64_t B = 64, K = 300;
  Tensor x64 = randn64({B, K}, 88, false);
  std::vector<int64_t> lab(B);
  for (int64_t b = 0; b < B; ++b) lab[b] = (b * 37) % K;
  Tensor labels = from_vector_i64(lab, {B});
  Tensor x32 = x64.to(DType::f32).requires_grad_(), x = x64.detach().requires_grad_();
  Tensor l32 = cross_entropy(x32, labels, 0.1), l64 = cross_entropy(x, labels, 0.1);
  EXPECT_NEAR(l32.item(), l64.item(), 1e-5);
  backward(l32);
  backward(l64);
  EXPECT_LT(max_abs_diff(x32.grad().to(DType::f64), x.grad()), 1e-8);
  // Every row of the gradient sums to 0 (softmax and target both sum to 1).
  for (double v : sum(x.grad(), {1}).to_vector<double>()) EXPECT_NEAR(v, 0.0, 1e-15);
}

TEST(CrossEntropy, LabelOutOfRangeNamesLabelIndexAndK) {
  Tensor x = zeros({3, 5});
  EXPECT_THROW_MSG(cross_entropy(x, from_vector_i64({0, 4, 5}, {3})), ValueError, "cross_entropy", "label 5",
                   "index 2", "5 classes");
  EXPECT_THROW_MSG(cross_entropy(x, from_vector_i64({-1, 0, 0}, {3})), ValueError, "cross_entropy", "label -1",
                   "index 0");
}

TEST(CrossEntropy, BadShapesAndDtypesNameBothShapes) {
  Tensor x = zeros({4, 5});
  EXPECT_THROW_MSG(cross_entropy(x, from_vector_i64({0, 1, 2}, {3})), ShapeError, "cross_entropy", "[4, 5]", "[3]");
  EXPECT_THROW_MSG(cross_entropy(zeros({20}), from_vector_i64({0, 1, 2, 3}, {4})), ShapeError, "cross_entropy", "[20]",
                   "[4]");
  EXPECT_THROW_MSG(cross_entropy(x, zeros({4})), DTypeError, "cross_entropy", "float32", "int64", "[4, 5]", "[4]");
  EXPECT_THROW_MSG(cross_entropy(from_vector_i64({0, 1}, {1, 2}), from_vector_i64({0}, {1})), DTypeError,
                   "cross_entropy", "[1, 2]", "[1]");
  EXPECT_THROW_MSG(cross_entropy(x, from_vector_i64({0, 1, 2, 3}, {4}), 1.5), ValueError, "cross_entropy",
                   "label_smoothing");
  EXPECT_THROW_MSG(cross_entropy(zeros({0, 5}), from_vector_i64({}, {0})), ShapeError, "cross_entropy", "[0, 5]");
}

TEST(CrossEntropy, NoGradientForFrozenLogits) {
  Tensor x = randn64({2, 3}, 89, false);
  Tensor loss = cross_entropy(x, from_vector_i64({0, 1}, {2}));
  EXPECT_EQ(loss.grad_fn(), nullptr);
  EXPECT_FALSE(loss.requires_grad());
}
