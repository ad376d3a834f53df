// l2_normalize: PyTorch parity (F.normalize), unit norms, zero vectors without NaN, gradcheck, errors.
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

}  // namespace

TEST(L2Normalize, MatchesPyTorchFixture) {
  for (const json& c : fixture()["l2_normalize"]) {
    const int64_t dim = c["dim"];
    const double eps = c["eps"];
    for (DType dt : {DType::f64, DType::f32}) {
      const bool f64 = dt == DType::f64;
      const double tol = f64 ? 1e-12 : 1e-6;
      const std::string what = "dim " + std::to_string(dim) + (f64 ? " f64" : " f32");
      Tensor x = from_json(c["x"], dt).requires_grad_();
      Tensor y = l2_normalize(x, dim, eps);
      expect_close(y, c["out"], tol, tol, what + " forward");
      backward(y, from_json(c["gout"], dt));
      expect_close(x.grad(), c["grad"], tol, tol, what + " grad");
    }
  }
}

TEST(L2Normalize, SlicesHaveUnitNorm) {
  Tensor x = randn64({3, 4, 5}, 91, false);
  for (int64_t dim : {0, 1, 2, -1}) {
    Tensor y = l2_normalize(x, dim);
    Tensor n = sum(mul(y, y), {dim});
    for (double v : n.to_vector<double>()) EXPECT_NEAR(v, 1.0, 1e-14) << dim;
  }
}

TEST(L2Normalize, ZeroVectorGivesZeroAndFiniteGradient) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = from_vector({0, 0, 0, 3, 4, 0}, {2, 3}, dt).requires_grad_();
    Tensor y = l2_normalize(x, -1);
    std::vector<double> v = y.to_vector<double>();
    const std::vector<double> want = {0, 0, 0, 0.6, 0.8, 0};
    for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], want[i], 1e-7) << dtype_name(dt);
    backward(sum(mul(y, from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, dt))));
    std::vector<double> g = x.grad().to_vector<double>();
    for (double e : g) EXPECT_TRUE(std::isfinite(e)) << dtype_name(dt);
    // As torch.nn.functional.normalize: the zero row's gradient is g / eps.
    EXPECT_NEAR(g[0] / 1e12, 1.0, 1e-6) << dtype_name(dt);
    EXPECT_NEAR(g[2] / 1e12, 3.0, 1e-6) << dtype_name(dt);
  }
}

TEST(L2Normalize, Gradcheck) {
  for (int64_t dim : {0, 1, -1}) {
    SCOPED_TRACE(dim);
    auto f = [dim](const std::vector<Tensor>& in) { return l2_normalize(in[0], dim); };
    EXPECT_GRADCHECK(f, std::vector<Tensor>{randn64({3, 4}, 92)});
  }
}

TEST(L2Normalize, GradcheckNonContiguousBroadcastAndReuse) {
  auto ft = [](const std::vector<Tensor>& in) { return l2_normalize(transpose(in[0], 0, 1), -1); };
  EXPECT_GRADCHECK(ft, std::vector<Tensor>{randn64({4, 3}, 93)});
  auto fs = [](const std::vector<Tensor>& in) { return l2_normalize(slice(in[0], 1, 1, 8, 2), -1); };
  EXPECT_GRADCHECK(fs, std::vector<Tensor>{randn64({3, 8}, 94)});
  // One feature row broadcast against per-row scales (a stride-0 operand).
  Tensor scale = rand64({3, 1}, 95, 0.5, 2.0, false);
  auto fe = [scale](const std::vector<Tensor>& in) { return l2_normalize(mul(expand(in[0], {3, 4}), scale), 0); };
  EXPECT_GRADCHECK(fe, std::vector<Tensor>{randn64({1, 4}, 96)});
  // Used twice: x times its own normalised self.
  auto f2 = [](const std::vector<Tensor>& in) { return mul(l2_normalize(in[0], -1), in[0]); };
  EXPECT_GRADCHECK(f2, std::vector<Tensor>{randn64({3, 4}, 97)});
}

TEST(L2Normalize, BadCallsThrow) {
  Tensor x = zeros({2, 3});
  EXPECT_THROW_MSG(l2_normalize(x, 2), ShapeError, "l2_normalize", "dim 2", "[2, 3]");
  EXPECT_THROW_MSG(l2_normalize(from_vector_i64({1, 2}, {2}), -1), DTypeError, "l2_normalize", "int64", "[2]");
  EXPECT_THROW_MSG(l2_normalize(x, -1, 0.0), ValueError, "l2_normalize", "eps");
  EXPECT_THROW_MSG(l2_normalize(Tensor(), -1), ValueError, "l2_normalize", "undefined");
}
