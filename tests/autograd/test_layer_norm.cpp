// layer_norm: PyTorch parity, large-offset accuracy, gradcheck (views, shared weight, reuse), freeze masks, errors.
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

Tensor ln(const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, w, b, 1e-5); }

}  // namespace

TEST(LayerNorm, MatchesPyTorchFixture) {
  for (const json& c : fixture()["layer_norm"]) {
    const std::string name = c["name"];
    const bool affine = c.contains("weight");
    const double eps = c["eps"];
    for (DType dt : {DType::f64, DType::f32}) {
      const bool f64 = dt == DType::f64;
      // The offset case in float32 starts from inputs rounded to ~6e-5: checked separately below.
      if (!f64 && name == "offset") continue;
      const double tol = f64 ? 1e-10 : 2e-5;
      const std::string what = name + (f64 ? " f64" : " f32");
      Tensor x = from_json(c["x"], dt).requires_grad_();
      Tensor w = affine ? from_json(c["weight"], dt).requires_grad_() : Tensor();
      Tensor b = affine ? from_json(c["bias"], dt).requires_grad_() : Tensor();
      Tensor y = layer_norm(x, w, b, eps);
      expect_close(y, c["out"], tol, tol, what + " forward");
      backward(y, from_json(c["gout"], dt));
      expect_close(x.grad(), c["grad_x"], tol, tol, what + " grad x");
      if (affine) {
        expect_close(w.grad(), c["grad_weight"], tol, tol, what + " grad weight");
        expect_close(b.grad(), c["grad_bias"], tol, tol, what + " grad bias");
      }
    }
  }
}

TEST(LayerNorm, LargeOffsetStaysAccurate) {
  // x + 1000 in float32: E[x^2] - E[x]^2 would lose every digit; the two-pass double statistics
  // must give the same normalised values as float64 on the same (rounded) inputs.
  Tensor base = randn64({6, 32}, 41, false);
  Tensor x32 = add(base, 1000.0).to(DType::f32);
  Tensor y32 = ln(x32, Tensor(), Tensor());
  Tensor y64 = ln(x32.to(DType::f64), Tensor(), Tensor());
  EXPECT_LT(max_abs_diff(y32.to(DType::f64), y64), 2e-6);
  // And shifting the input by a constant does not change the output (float64).
  Tensor y0 = ln(base, Tensor(), Tensor()), y1 = ln(add(base, 1000.0), Tensor(), Tensor());
  EXPECT_LT(max_abs_diff(y0, y1), 1e-10);
  // The fixture's offset case in float32 too, within the rounding of its inputs.
  const json& c = fixture()["layer_norm"][3];
  ASSERT_EQ(c["name"], "offset");
  Tensor xo = from_json(c["x"], DType::f32);
  Tensor yo = layer_norm(xo, from_json(c["weight"], DType::f32), from_json(c["bias"], DType::f32), c["eps"]);
  expect_close(yo, c["out"], 3e-4, 1e-4, "offset f32 forward");
}

TEST(LayerNorm, GradcheckContiguousWithSharedWeight) {
  // weight and bias [4] are broadcast over all 2 * 3 rows: their gradients sum over rows.
  auto f = [](const std::vector<Tensor>& in) { return ln(in[0], in[1], in[2]); };
  EXPECT_GRADCHECK(f, (std::vector<Tensor>{randn64({2, 3, 4}, 42), randn64({4}, 43), randn64({4}, 44)}));
  // Wider rows, random projections (more than 32 outputs).
  EXPECT_GRADCHECK(f, (std::vector<Tensor>{randn64({3, 16}, 45), randn64({16}, 46), randn64({16}, 47)}));
}

TEST(LayerNorm, GradcheckWithoutAffine) {
  auto f = [](const std::vector<Tensor>& in) { return ln(in[0], Tensor(), Tensor()); };
  EXPECT_GRADCHECK(f, std::vector<Tensor>{randn64({3, 5}, 48)});
  auto fw = [](const std::vector<Tensor>& in) { return ln(in[0], in[1], Tensor()); };
  EXPECT_GRADCHECK(fw, (std::vector<Tensor>{randn64({3, 5}, 49), randn64({5}, 50)}));
}

TEST(LayerNorm, GradcheckNonContiguousInputs) {
  // x: a transposed [5, 3] leaf seen as [3, 5]; weight: every other element of a [10] leaf.
  auto f = [](const std::vector<Tensor>& in) {
    return ln(transpose(in[0], 0, 1), slice(in[1], 0, 0, 10, 2), slice(in[2], 0, 1, 10, 2));
  };
  EXPECT_GRADCHECK(f, (std::vector<Tensor>{randn64({5, 3}, 51), randn64({10}, 52), randn64({10}, 53)}));
}

TEST(LayerNorm, GradcheckTensorUsedTwice) {
  auto f = [](const std::vector<Tensor>& in) { return mul(ln(in[0], in[1], in[2]), in[0]); };
  EXPECT_GRADCHECK(f, (std::vector<Tensor>{randn64({3, 4}, 54), randn64({4}, 55), randn64({4}, 56)}));
  // The weight used twice: as the LayerNorm scale and again outside.
  auto fw = [](const std::vector<Tensor>& in) { return mul(ln(in[0], in[1], Tensor()), in[1]); };
  EXPECT_GRADCHECK(fw, (std::vector<Tensor>{randn64({3, 4}, 57), randn64({4}, 58)}));
}

TEST(LayerNorm, FrozenWeightAndBiasGetNoGradient) {
  Tensor x = randn64({3, 4}, 59), w = randn64({4}, 60, false), b = randn64({4}, 61, false);
  backward(sum(mul(ln(x, w, b), randn64({3, 4}, 62, false))));
  EXPECT_TRUE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  // gradcheck also checks that the frozen inputs receive nothing.
  auto f = [](const std::vector<Tensor>& in) { return ln(in[0], in[1], in[2]); };
  EXPECT_GRADCHECK(f, (std::vector<Tensor>{randn64({3, 4}, 63), randn64({4}, 64, false), randn64({4}, 65, false)}));
  // Frozen x, trainable affine (a LayerNorm-tuning setup).
  EXPECT_GRADCHECK(f, (std::vector<Tensor>{randn64({3, 4}, 66, false), randn64({4}, 67), randn64({4}, 68)}));
}

TEST(LayerNorm, SavesOnlyWhatTheNeededGradientsUse) {
  const size_t row_stats = 2 * 3 * sizeof(double);  // mean and rstd per row
  const size_t xbytes = 3 * 4 * 8, wbytes = 4 * 8;
  Tensor x = randn64({3, 4}, 69), w = randn64({4}, 70), b = randn64({4}, 71);
  Tensor xf = x.detach(), wf = w.detach(), bf = b.detach();
  // Everything trainable: x, w, mean, rstd.
  EXPECT_EQ(ln(x, w, b).grad_fn()->saved_bytes, xbytes + wbytes + row_stats);
  // Frozen x: dw needs x and the statistics, not w.
  EXPECT_EQ(ln(xf, w, b).grad_fn()->saved_bytes, xbytes + row_stats);
  // Only the bias trains (BitFit): db = sum of g, nothing saved.
  EXPECT_EQ(ln(xf, wf, b).grad_fn()->saved_bytes, 0u);
  // Nothing trains: nothing recorded.
  EXPECT_EQ(ln(xf, wf, bf).grad_fn(), nullptr);
}

TEST(LayerNorm, LargeInputsTakeTheParallelPath) {
  // rows * D above kParallelGrain: float32 against the float64 result on the same inputs.
  Tensor x64 = randn64({40, 768}, 72, false), w64 = randn64({768}, 73, false), b64 = randn64({768}, 74, false);
  Tensor g64 = randn64({40, 768}, 75, false);
  auto run = [&](DType dt, Tensor& dx, Tensor& dw, Tensor& db) {
    Tensor x = x64.to(dt).requires_grad_(), w = w64.to(dt).requires_grad_(), b = b64.to(dt).requires_grad_();
    Tensor y = ln(x, w, b);
    backward(y, g64.to(dt));
    dx = x.grad().to(DType::f64);
    dw = w.grad().to(DType::f64);
    db = b.grad().to(DType::f64);
    return y.to(DType::f64);
  };
  Tensor dx32, dw32, db32, dx64, dw64, db64;
  Tensor y32 = run(DType::f32, dx32, dw32, db32), y64 = run(DType::f64, dx64, dw64, db64);
  EXPECT_LT(max_abs_diff(y32, y64), 1e-5);
  EXPECT_LT(max_abs_diff(dx32, dx64), 1e-4);
  EXPECT_LT(max_abs_diff(dw32, dw64), 1e-4);
  EXPECT_LT(max_abs_diff(db32, db64), 1e-4);
  // db is the column sum of g.
  EXPECT_LT(max_abs_diff(db64, sum(g64, {0})), 1e-12);
}

TEST(LayerNorm, BadCallsThrow) {
  Tensor x = zeros({2, 4});
  EXPECT_THROW_MSG(ln(x, zeros({5}), Tensor()), ShapeError, "layer_norm", "weight", "[5]", "[2, 4]");
  EXPECT_THROW_MSG(ln(x, zeros({4}), zeros({2, 4})), ShapeError, "layer_norm", "bias", "[2, 4]");
  EXPECT_THROW_MSG(ln(x, zeros({4}, DType::f64), Tensor()), DTypeError, "layer_norm", "float64", "float32", "[2, 4]");
  EXPECT_THROW_MSG(ln(scalar_tensor(1.0), Tensor(), Tensor()), ShapeError, "layer_norm", "[]");
  EXPECT_THROW_MSG(ln(from_vector_i64({1, 2}, {2}), Tensor(), Tensor()), DTypeError, "layer_norm", "int64", "[2]");
  EXPECT_THROW_MSG(layer_norm(x, Tensor(), Tensor(), -1.0), ValueError, "layer_norm", "eps");
}
