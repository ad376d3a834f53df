// soft_target_cross_entropy: PyTorch parity (loss and both gradients, broadcast targets), equals
// cross_entropy on one-hot targets, gradcheck (broadcast, non-contiguous), freeze mask, errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tests/json_fixture.h"
#include "tests/testing.h"

namespace peft {
namespace {
using json = nlohmann::json;
using testing::rand64;
using testing::randn64;

const json& fixture() { return testing::json_fixture("mixup.json", "tools/reference/mixup_reference.py"); }

Tensor from_json(const json& t, DType dt = DType::f64) {
  return from_vector(t["data"].get<std::vector<double>>(), t["shape"].get<Shape>(), dt);
}

TEST(SoftTargetCrossEntropy, MatchesPyTorchFixture) {
  for (const json& c : fixture()["soft_ce"]) {
    for (DType dt : {DType::f64, DType::f32}) {
      const double tol = dt == DType::f64 ? 1e-12 : 2e-6;
      const std::string what = c["name"].get<std::string>() + (dt == DType::f64 ? " f64" : " f32");
      Tensor x = from_json(c["logits"], dt).requires_grad_(), t = from_json(c["targets"], dt).requires_grad_();
      Tensor loss = soft_target_cross_entropy(x, t);
      EXPECT_EQ(loss.dim(), 0) << what;
      EXPECT_NEAR(loss.item(), c["loss"].get<double>(), tol) << what;
      backward(loss);
      EXPECT_LT(max_abs_diff(x.grad().to(DType::f64), from_json(c["grad_logits"])), tol) << what;
      EXPECT_LT(max_abs_diff(t.grad().to(DType::f64), from_json(c["grad_targets"])), tol) << what;
    }
  }
}

TEST(SoftTargetCrossEntropy, EqualsCrossEntropyOnSmoothedOneHotTargets) {
  const int64_t B = 3, K = 5;
  const double s = 0.2;
  const std::vector<int64_t> y = {4, 0, 2};
  std::vector<double> t(B * K, s / K);
  for (int64_t b = 0; b < B; ++b) t[b * K + y[b]] += 1 - s;
  Tensor x1 = randn64({B, K}, 3), x2 = randn64({B, K}, 3);
  Tensor a = soft_target_cross_entropy(x1, from_vector(t, {B, K}, DType::f64));
  Tensor b = cross_entropy(x2, from_vector_i64(y, {B}), s);
  EXPECT_NEAR(a.item(), b.item(), 1e-14);
  backward(a);
  backward(b);
  EXPECT_LT(max_abs_diff(x1.grad(), x2.grad()), 1e-15);
}

TEST(SoftTargetCrossEntropy, Gradcheck) {
  auto plain = [](const std::vector<Tensor>& in) { return soft_target_cross_entropy(in[0], in[1]); };
  EXPECT_GRADCHECK(plain, (std::vector<Tensor>{randn64({4, 3}, 5), rand64({4, 3}, 6, 0, 1)}));
  // targets [K] broadcast over the rows; non-contiguous logits (a transpose)
  auto strided = [](const std::vector<Tensor>& in) {
    return soft_target_cross_entropy(transpose(in[0], 0, 1), in[1]);
  };
  EXPECT_GRADCHECK(strided, (std::vector<Tensor>{randn64({5, 4}, 7), rand64({5}, 8, 0, 1)}));
  EXPECT_GRADCHECK(plain, (std::vector<Tensor>{randn64({3, 4}, 9), rand64({1, 4}, 10, 0, 1)}));
}

TEST(SoftTargetCrossEntropy, FrozenInputsGetNoGradient) {
  const int64_t B = 4, K = 3;
  Tensor x = randn64({B, K}, 11), t = rand64({B, K}, 12, 0, 1, false);
  Tensor l1 = soft_target_cross_entropy(x, t);  // the usual case: targets are data
  backward(l1);
  EXPECT_TRUE(x.grad().defined());
  EXPECT_FALSE(t.grad().defined());
  // frozen logits: only the targets' gradient, and the targets are not saved (it needs x, lse)
  Tensor x2 = randn64({B, K}, 13, false), t2 = rand64({B, K}, 14, 0, 1);
  Tensor l2 = soft_target_cross_entropy(x2, t2);
  EXPECT_EQ(l2.grad_fn()->saved_bytes, static_cast<size_t>(B * K * 8 + B * 8));
  backward(l2);
  EXPECT_FALSE(x2.grad().defined());
  EXPECT_TRUE(t2.grad().defined());
  // nothing requires a gradient: no node
  EXPECT_EQ(soft_target_cross_entropy(x2, t).grad_fn(), nullptr);
}

TEST(SoftTargetCrossEntropy, ErrorsNameTheOpAndTheFix) {
  Tensor x = randn64({2, 3}, 15, false);
  EXPECT_THROW_MSG(soft_target_cross_entropy(x, randn64({2, 4}, 16, false)), ShapeError, "soft_target_cross_entropy",
                   "[2, 4]", "[B, K]");
  EXPECT_THROW_MSG(soft_target_cross_entropy(randn64({6}, 17, false), randn64({6}, 18, false)), ShapeError,
                   "non-empty [B, K]");
  EXPECT_THROW_MSG(soft_target_cross_entropy(x, x.to(DType::f32)), DTypeError, "same float dtype", ".to(");
}

}  // namespace
}  // namespace peft
