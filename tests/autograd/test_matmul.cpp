// matmul and linear: values against PyTorch (float32 and float64), float64 gradchecks on broadcast
// batches, transposed/strided/expanded operands and reused inputs, the freeze-mask proof (GEMM
// counts and saved bytes), transpose flags instead of copies, and error messages.
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
#include "core/counters.h"
#include "tests/autograd/core_fixture.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

namespace {

using nlohmann::json;

// ---- this file's ops

Tensor run_case(const std::string& op, const json& a, const std::vector<Tensor>& x) {
  (void)a;
  if (op == "matmul") return matmul(x[0], x[1]);
  if (op == "matmul_bt") return matmul(x[0], transpose(x[1], -1, -2));
  if (op == "linear") return linear(x[0], x[1], x.size() > 2 ? x[2] : Tensor());
  throw ValueError("test_matmul: no runner for fixture op '" + op + "'");
}

using Inputs = std::vector<Tensor>;

Tensor mm2(const Inputs& in) { return matmul(in[0], in[1]); }

}  // namespace

TEST(MatmulFixture, MatchesPyTorchInFloat32AndFloat64) { EXPECT_GE(check_family("matmul", run_case), 20); }

TEST(MatmulShapes, FollowTorchMatmul) {
  EXPECT_EQ(matmul(zeros({4}), zeros({4})).sizes(), Shape{});  // dot product: a 0-d result
  EXPECT_EQ(matmul(zeros({3}), zeros({3, 5})).sizes(), (Shape{5}));
  EXPECT_EQ(matmul(zeros({2, 3}), zeros({3})).sizes(), (Shape{2}));
  EXPECT_EQ(matmul(zeros({3}), zeros({7, 3, 5})).sizes(), (Shape{7, 5}));
  EXPECT_EQ(matmul(zeros({7, 2, 3}), zeros({3})).sizes(), (Shape{7, 2}));
  EXPECT_EQ(matmul(zeros({2, 1, 3, 4}), zeros({5, 4, 6})).sizes(), (Shape{2, 5, 3, 6}));
  EXPECT_EQ(matmul(zeros({2, 3, 0}), zeros({0, 4})).sizes(), (Shape{2, 3, 4}));  // K = 0: zeros
  EXPECT_EQ(linear(zeros({2, 3, 4}), zeros({5, 4})).sizes(), (Shape{2, 3, 5}));
  EXPECT_EQ(linear(zeros({4}), zeros({5, 4}), zeros({5})).sizes(), (Shape{5}));
  Tensor d = matmul(from_vector({1, 2, 3}, {3}, DType::f64), from_vector({4, 5, 6}, {3}, DType::f64));
  EXPECT_EQ(d.item(), 32.0);
  // K = 0 with a bias: the output is the bias on every row.
  Tensor yb = linear(zeros({3, 0}), zeros({2, 0}), from_vector({1, 2}, {2}));
  EXPECT_EQ(yb.to_vector<float>(), (std::vector<float>{1, 2, 1, 2, 1, 2}));
}

TEST(MatmulValues, ExpandedAndStridedOperands) {
  // Stride-0 rows (an expanded vector) and stepped slices are not BLAS layouts: the result must
  // still be right (they are copied), checked against the same product of contiguous copies.
  Tensor v = randn64({1, 4}, 50, false), w = randn64({4, 3}, 51, false);
  Tensor e = expand(v, {5, 4});
  EXPECT_LT(max_abs_diff(matmul(e, w), matmul(contiguous(e), w)), 1e-14);
  Tensor big = randn64({5, 8}, 52, false);
  Tensor s = slice(big, 1, 0, 8, 2);  // [5, 4] with strides [8, 2]
  EXPECT_LT(max_abs_diff(matmul(s, w), matmul(contiguous(s), w)), 1e-14);
  // linear with a weight whose rows are one expanded vector: W [3, 4] with strides [0, 1].
  Tensor we = expand(randn64({1, 4}, 53, false), {3, 4});
  EXPECT_LT(max_abs_diff(linear(s, we), linear(contiguous(s), contiguous(we))), 1e-14);
  // A batched operand whose batch dim is expanded (stride 0) broadcasts without a copy.
  Tensor a = randn64({3, 4}, 54, false);
  Tensor eb = expand(unsqueeze(a, 0), {2, 3, 4});
  Tensor r = matmul(eb, randn64({2, 4, 5}, 55, false));
  EXPECT_EQ(r.sizes(), (Shape{2, 3, 5}));
}

// ---- float64 gradchecks

TEST(MatmulGrad, ShapesAndBroadcastBatches) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{4}, {4}},       {{3}, {3, 4}},          {{2, 3}, {3}},           {{2, 3}, {3, 4}},        {{2, 3, 4}, {4, 5}},
      {{3}, {2, 3, 4}}, {{2, 3, 4}, {4}},       {{2, 1, 3, 4}, {3, 4, 2}}, {{4, 5}, {2, 5, 3}}, {{2, 3, 4}, {2, 4, 2}},
      {{1, 2, 3}, {4, 3, 2}}};
  for (const auto& [sa, sb] : cases) {
    SCOPED_TRACE(shape_str(sa) + " @ " + shape_str(sb));
    EXPECT_GRADCHECK(mm2, (Inputs{randn64(sa, 56), randn64(sb, 57)}));
  }
}

TEST(MatmulGrad, TransposedStridedAndExpandedOperands) {
  // Leaves stored transposed (BLAS transpose flags on both sides).
  Tensor at = transpose(randn64({4, 3}, 58, false), 0, 1).requires_grad_();
  Tensor bt = transpose(randn64({5, 4}, 59, false), 0, 1).requires_grad_();
  EXPECT_GRADCHECK(mm2, (Inputs{at, bt}));
  // Transposes and stepped slices inside the graph, batched.
  auto f = [](const Inputs& in) { return matmul(transpose(in[0], -1, -2), slice(in[1], 2, 1, 7, 2)); };
  EXPECT_GRADCHECK(f, (Inputs{randn64({2, 4, 3}, 60), randn64({2, 4, 7}, 61)}));
  // An expanded (stride-0) operand, and a gradient that arrives expanded (sum over rows only).
  auto g = [](const Inputs& in) { return sum(matmul(expand(in[0], {5, 4}), in[1]), {0}); };
  EXPECT_GRADCHECK(g, (Inputs{randn64({1, 4}, 62), randn64({4, 3}, 63)}));
  auto h = [](const Inputs& in) { return sum(matmul(in[0], in[1]), {0}); };
  EXPECT_GRADCHECK(h, (Inputs{randn64({5, 4}, 64), randn64({4, 3}, 65)}));
  auto k = [](const Inputs& in) { return sum(linear(in[0], in[1]), {0}); };
  EXPECT_GRADCHECK(k, (Inputs{randn64({5, 4}, 66), randn64({3, 4}, 67)}));
}

TEST(MatmulGrad, TensorUsedTwice) {
  EXPECT_GRADCHECK([](const Inputs& in) { return matmul(in[0], transpose(in[0], 0, 1)); }, (Inputs{randn64({3, 4}, 68)}));
  EXPECT_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[0]); }, (Inputs{randn64({2, 3, 3}, 69)}));
  EXPECT_GRADCHECK([](const Inputs& in) { return linear(in[0], in[0]); }, (Inputs{randn64({4, 4}, 70)}));
}

TEST(LinearGrad, WithAndWithoutBiasOn3dInput) {
  auto with_bias = [](const Inputs& in) { return linear(in[0], in[1], in[2]); };
  auto no_bias = [](const Inputs& in) { return linear(in[0], in[1]); };
  EXPECT_GRADCHECK(with_bias, (Inputs{randn64({2, 3, 4}, 71), randn64({5, 4}, 72), randn64({5}, 73)}));
  EXPECT_GRADCHECK(no_bias, (Inputs{randn64({2, 3, 4}, 74), randn64({5, 4}, 75)}));
  EXPECT_GRADCHECK(with_bias, (Inputs{randn64({4}, 76), randn64({5, 4}, 77), randn64({5}, 78)}));
  // Non-contiguous input and weight (x transposed, W stored as [in, out]).
  Tensor xt = transpose(randn64({4, 3}, 79, false), 0, 1).requires_grad_();
  Tensor wt = transpose(randn64({4, 5}, 80, false), 0, 1).requires_grad_();
  EXPECT_GRADCHECK(with_bias, (Inputs{xt, wt, randn64({5}, 81)}));
  // Every freeze combination: gradcheck also verifies frozen inputs get no gradient.
  for (int mask = 0; mask < 8; ++mask) {
    SCOPED_TRACE(mask);
    if (mask == 0) continue;
    EXPECT_GRADCHECK(with_bias, (Inputs{randn64({2, 3, 4}, 82, mask & 1), randn64({5, 4}, 83, mask & 2),
                                        randn64({5}, 84, mask & 4)}));
  }
}

// ---- freeze masks: the frozen side costs no GEMM and no saved memory

TEST(LinearFreeze, FrozenWeightRunsOnlyTheInputGradientGemm) {
  const int64_t B = 4, T = 6, in = 8, out = 5;
  Tensor x = randn64({B, T, in}, 85), w = randn64({out, in}, 86, false), b = randn64({out}, 87);
  Tensor y = linear(x, w, b);
  ASSERT_NE(y.grad_fn(), nullptr);
  // Saved for backward: W (dX needs it), never the input activation x.
  EXPECT_EQ(y.grad_fn()->saved_bytes, w.nbytes());
  EXPECT_EQ(y.grad_fn()->saved_shapes, (std::vector<Shape>{w.sizes()}));
  EXPECT_FALSE(y.grad_fn()->needs_grad(1));
  reset_gemm_counters();
  backward(sum(y));
  EXPECT_EQ(counters().gemm_calls, 1);                  // dX only
  EXPECT_EQ(counters().gemm_flops, 2 * B * T * out * in);
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(b.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

TEST(LinearFreeze, FrozenInputRunsOnlyTheWeightGradientGemm) {
  const int64_t B = 4, T = 6, in = 8, out = 5;
  Tensor x = randn64({B, T, in}, 88, false), w = randn64({out, in}, 89);
  Tensor y = linear(x, w);
  EXPECT_EQ(y.grad_fn()->saved_bytes, x.nbytes());  // x for dW; W itself is not needed
  reset_gemm_counters();
  backward(sum(y));
  EXPECT_EQ(counters().gemm_calls, 1);  // dW only
  EXPECT_EQ(counters().gemm_flops, 2 * out * in * B * T);
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
}

TEST(LinearFreeze, EverythingFrozenRecordsNothing) {
  Tensor x = randn64({2, 3, 4}, 90, false), w = randn64({5, 4}, 91, false), b = randn64({5}, 92, false);
  reset_gemm_counters();
  Tensor y = linear(x, w, b);
  EXPECT_EQ(counters().gemm_calls, 1);  // the forward GEMM
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
  EXPECT_THROW(backward(sum(y)), StateError);
  // Same under NoGradGuard with trainable tensors.
  Tensor wt = randn64({5, 4}, 93);
  NoGradGuard ng;
  EXPECT_EQ(linear(x, wt, b).grad_fn(), nullptr);
}

TEST(LinearFreeze, TrainableBothRunsTwoGemmsAndFrozenMatmulSideIsSkipped) {
  Tensor x = randn64({3, 4}, 94), w = randn64({5, 4}, 95);
  Tensor y = linear(x, w);
  EXPECT_EQ(y.grad_fn()->saved_bytes, x.nbytes() + w.nbytes());
  reset_gemm_counters();
  backward(sum(y));
  EXPECT_EQ(counters().gemm_calls, 2);
  // matmul follows the same rule: a frozen right operand costs one backward GEMM, and is the
  // only thing saved (for dA = dC B^T).
  Tensor a = randn64({3, 4}, 96), bm = randn64({4, 2}, 97, false);
  Tensor c = matmul(a, bm);
  EXPECT_EQ(c.grad_fn()->saved_bytes, bm.nbytes());
  reset_gemm_counters();
  backward(sum(c));
  EXPECT_EQ(counters().gemm_calls, 1);
  EXPECT_FALSE(bm.grad().defined());
}

// ---- transpose flags, not copies

TEST(MatmulMemory, TransposedOperandIsNotCopied) {
  Generator gen(98);
  Tensor x = randn({64, 32}, gen), w = randn({48, 32}, gen);
  x.requires_grad_();
  w.requires_grad_();
  Tensor wt = transpose(w, 0, 1);
  const int64_t storages = counters().live_storages, bytes = counters().live_bytes;
  reset_peak_bytes();
  Tensor y = matmul(x, wt);  // [64, 32] @ [32, 48]: BLAS reads w with trans_b
  EXPECT_EQ(counters().live_storages, storages + 1);  // only the output
  EXPECT_EQ(counters().live_bytes, bytes + static_cast<int64_t>(y.nbytes()));
  EXPECT_EQ(counters().peak_bytes, bytes + static_cast<int64_t>(y.nbytes()));  // no temporary copy either
  // Batched: [2, 64, 32] (a transposed view of [2, 32, 64]) @ transpose(w).
  Tensor xb = transpose(randn({2, 32, 64}, gen), 1, 2);
  const int64_t bytes2 = counters().live_bytes;
  reset_peak_bytes();
  Tensor yb = matmul(xb, wt);
  EXPECT_EQ(counters().peak_bytes, bytes2 + static_cast<int64_t>(yb.nbytes()));
  // linear on a contiguous 3-d input reads x in place as [B*T, in].
  Tensor x3 = randn({4, 16, 32}, gen);
  const int64_t bytes3 = counters().live_bytes;
  reset_peak_bytes();
  Tensor y3 = linear(x3, w);
  EXPECT_EQ(counters().peak_bytes, bytes3 + static_cast<int64_t>(y3.nbytes()));
}

// ---- bad calls

TEST(MatmulErrors, MessagesNameShapesAndDtypes) {
  EXPECT_THROW_MSG(matmul(zeros({2, 3}), zeros({4, 5})), ShapeError, "matmul", "[2, 3]", "[4, 5]", "Hint");
  EXPECT_THROW_MSG(matmul(zeros({3}), zeros({4})), ShapeError, "matmul", "[1, 3]");
  EXPECT_THROW_MSG(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), ShapeError, "matmul", "[2]", "[3]");
  EXPECT_THROW_MSG(matmul(scalar_tensor(1.0), zeros({3})), ShapeError, "matmul", "[]", "[3]");
  EXPECT_THROW_MSG(matmul(zeros({2, 3}), zeros({3, 4}, DType::f64)), DTypeError, "matmul", "float32", "float64");
  EXPECT_THROW_MSG(linear(zeros({2, 3}), zeros({5, 4})), ShapeError, "linear", "[2, 3]", "[5, 4]", "Hint");
  EXPECT_THROW_MSG(linear(zeros({2, 4}), zeros({5, 4}), zeros({4})), ShapeError, "linear", "[4]", "[5, 4]");
  EXPECT_THROW_MSG(linear(zeros({2, 4}), zeros({5, 4}, DType::f64)), DTypeError, "linear", "float32", "float64");
}
