// conv2d_patch: PyTorch parity, gradcheck on strided inputs, GEMM counts under freeze masks, errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/counters.h"
#include "tests/autograd/ops_b_fixture.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;
using nlohmann::json;

namespace {

const json& fixture() { return ops_b_fixture(); }

auto patch_fn() {
  return [](const std::vector<Tensor>& in) { return conv2d_patch(in[0], in[1], in[2]); };
}

}  // namespace

TEST(Conv2dPatch, MatchesTorchConv2dFlattenTranspose) {
  const json& c = fixture()["conv2d_patch"];
  Tensor x = load(c["x"]).requires_grad_(), w = load(c["w"]).requires_grad_(), b = load(c["b"]).requires_grad_();
  Tensor y = conv2d_patch(x, w, b);
  ASSERT_EQ(y.sizes(), (Shape{2, 6, 5}));  // 8x12 image, P = 4: a 2 x 3 grid of patches
  EXPECT_LT(max_abs_diff(y, load(c["out"])), 1e-12);
  backward(sum(mul(y, load(c["gy"]))));
  EXPECT_LT(max_abs_diff(x.grad(), load(c["dx"])), 1e-12);
  EXPECT_LT(max_abs_diff(w.grad(), load(c["dw"])), 1e-12);
  EXPECT_LT(max_abs_diff(b.grad(), load(c["db"])), 1e-12);
}

TEST(Conv2dPatch, Float32AndNoBias) {
  const json& c = fixture()["conv2d_patch"];
  Tensor y = conv2d_patch(load(c["x"], DType::f32), load(c["w"], DType::f32), load(c["b"], DType::f32));
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_LT(max_abs_diff(y.to(DType::f64), load(c["out"])), 1e-4);
  // without bias the output is the biased one minus b on every token
  Tensor y0 = conv2d_patch(load(c["x"]), load(c["w"]));
  EXPECT_LT(max_abs_diff(add(y0, load(c["b"])), load(c["out"])), 1e-12);
}

TEST(Conv2dPatch, GradcheckContiguous) {
  EXPECT_GRADCHECK(patch_fn(), (std::vector<Tensor>{randn64({2, 2, 4, 6}, 1), randn64({3, 2, 2, 2}, 2),
                                                    randn64({3}, 3)}));
}

TEST(Conv2dPatch, GradcheckNonContiguousInputs) {
  // x stored channels-last [B, H, W, C] and permuted; w transposed in its patch dims
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor x = permute(in[0], {0, 3, 1, 2});
    Tensor w = transpose(in[1], 2, 3);
    EXPECT_FALSE(x.is_contiguous());
    return conv2d_patch(x, w, in[2]);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({1, 4, 6, 2}, 4), randn64({3, 2, 2, 2}, 5), randn64({3}, 6)}));
}

TEST(Conv2dPatch, GradcheckImageUsedTwice) {
  // the image is both the input and (a slice of it) the weight: gradients from both uses add up
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor w = narrow(narrow(in[0], 2, 0, 2), 3, 0, 2);  // [1, 2, 2, 2]
    return conv2d_patch(in[0], w, Tensor());
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({1, 2, 4, 4}, 7)}));
}

TEST(Conv2dPatch, FrozenWeightRunsNoWeightGradientGemm) {
  // All trainable: forward 1 GEMM; backward dW and dx, 2 GEMMs.
  Tensor x = randn64({2, 3, 8, 8}, 1), w = randn64({4, 3, 4, 4}, 2), b = randn64({4}, 3);
  Tensor y = conv2d_patch(x, w, b);
  reset_gemm_counters();
  backward(sum(y));
  EXPECT_EQ(counters().gemm_calls.load(), 2);

  // Frozen w and b, trainable image: only the dx GEMM; nothing saved for dW (no cols).
  Tensor x2 = x.detach().clone().requires_grad_();
  Tensor wf = w.detach(), bf = b.detach();
  Tensor y2 = conv2d_patch(x2, wf, bf);
  EXPECT_EQ(y2.grad_fn()->saved_bytes, static_cast<size_t>(wf.nbytes()));
  reset_gemm_counters();
  backward(sum(y2));
  EXPECT_EQ(counters().gemm_calls.load(), 1);
  EXPECT_EQ(counters().gemm_flops.load(), 2 * (2 * 4) * 4 * (3 * 4 * 4));  // dcols [B*N, K] = dY [B*N, D] W [D, K]
  EXPECT_FALSE(wf.grad().defined());
  EXPECT_FALSE(bf.grad().defined());
  EXPECT_LT(max_abs_diff(x2.grad(), x.grad()), 1e-13);

  // BitFit-style: only the bias trains. Column sums, no GEMM at all.
  Tensor b3 = b.detach().clone().requires_grad_();
  Tensor y3 = conv2d_patch(x.detach(), wf, b3);
  reset_gemm_counters();
  backward(sum(y3));
  EXPECT_EQ(counters().gemm_calls.load(), 0);
  EXPECT_LT(max_abs_diff(b3.grad(), b.grad()), 1e-13);
  EXPECT_LT(max_abs_diff(b3.grad(), full({4}, 2 * 4, DType::f64)), 1e-13);  // sum over B*N = 8 tokens
}

TEST(Conv2dPatch, FrozenPatchEmbedOfAFixedImageRecordsNothing) {
  // A frozen patch embedding of a non-trainable image: no node, so backward of a trainable
  // downstream tensor (a prompt-like scale) never reaches it and runs no GEMM.
  Tensor x = randn64({2, 3, 8, 8}, 1, false), w = randn64({4, 3, 4, 4}, 2, false), b = randn64({4}, 3, false);
  Tensor y = conv2d_patch(x, w, b);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
  Tensor s = randn64({4}, 4);
  Tensor loss = sum(mul(y, s));
  reset_gemm_counters();
  backward(loss);
  EXPECT_EQ(counters().gemm_calls.load(), 0);
  EXPECT_TRUE(s.grad().defined());
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

TEST(Conv2dPatch, BadCallsNameOpAndShapes) {
  Tensor w = zeros({8, 3, 4, 4});
  EXPECT_THROW_MSG(conv2d_patch(zeros({1, 3, 10, 8}), w), ShapeError, "conv2d_patch", "[1, 3, 10, 8]",
                   "[8, 3, 4, 4]", "not divisible");
  EXPECT_THROW_MSG(conv2d_patch(zeros({1, 3, 8, 6}), w), ShapeError, "conv2d_patch", "[1, 3, 8, 6]");
  EXPECT_THROW_MSG(conv2d_patch(zeros({1, 1, 8, 8}), w), ShapeError, "conv2d_patch", "[1, 1, 8, 8]",
                   "[8, 3, 4, 4]", "channels");
  EXPECT_THROW_MSG(conv2d_patch(zeros({3, 8, 8}), w), ShapeError, "conv2d_patch", "[3, 8, 8]");
  EXPECT_THROW_MSG(conv2d_patch(zeros({1, 3, 8, 8}), w, zeros({7})), ShapeError, "conv2d_patch", "[7]",
                   "[8, 3, 4, 4]");
  EXPECT_THROW_MSG(conv2d_patch(zeros({1, 3, 8, 8}, DType::f64), w), DTypeError, "conv2d_patch", "float64");
}
