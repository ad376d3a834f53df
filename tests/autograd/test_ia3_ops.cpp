// (IA)^3's fused ops (autograd/ops/ia3.h): ia3_qkv_linear equals linear then a multiply by
// [1 | l_k | l_v], gelu_scale_linear equals linear(gelu(h) * l); values and every gradient in
// float64 and float32 (the vectorised kernels), gradcheck with non-contiguous inputs, freeze
// masks (no gradient, no weight-gradient GEMM, nothing saved for frozen inputs), what is saved,
// the fallbacks and the errors.
#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/ia3.h"
#include "core/counters.h"
#include "tests/testing.h"

namespace peft {
namespace {
using testing::randn64;

// The composed reference of ia3_qkv_linear.
Tensor qkv_reference(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& lk, const Tensor& lv) {
  return mul(linear(x, w, b), cat({ones({lk.size(0)}, lk.dtype()), lk, lv}, 0));
}

// Runs f, backward(g), and returns the output followed by the gradients of `ins` (reset after).
template <class F>
std::vector<Tensor> run(F f, std::vector<Tensor> ins, const Tensor& g) {
  std::vector<Tensor> out{f()};
  backward(out[0], g);
  for (Tensor& t : ins) {
    out.push_back(t.defined() ? t.grad() : Tensor());
    if (t.defined()) t.zero_grad();
  }
  return out;
}

void expect_all_close(const std::vector<Tensor>& a, const std::vector<Tensor>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].defined(), b[i].defined()) << "output " << i;
    if (a[i].defined()) {
      EXPECT_LT(max_abs_diff(a[i], b[i]), tol) << "output " << i;
    }
  }
}

// --- ia3_qkv_linear -----------------------------------------------------------------------------

// Small, and [60, 3 x 160]: above the parallel grain with two column blocks in the k/v sweep.
TEST(Ia3QkvLinear, MatchesComposedOps) {
  struct Case {
    Shape x;
    int64_t D;
  };
  for (const Case& c : {Case{{2, 3, 5}, 4}, Case{{60, 8}, 160}})
    for (bool with_bias : {true, false}) {
      const int64_t in = c.x.back();
      Tensor x = randn64(c.x, 1), w = randn64({3 * c.D, in}, 2), b = with_bias ? randn64({3 * c.D}, 3) : Tensor();
      Tensor lk = randn64({c.D}, 4), lv = randn64({c.D}, 5);
      Shape ys = c.x;
      ys.back() = 3 * c.D;
      Tensor g = randn64(ys, 6, false);
      std::vector<Tensor> ins{x, w, b, lk, lv};
      auto fused = run([&] { return ia3_qkv_linear(x, w, b, lk, lv); }, ins, g);
      auto composed = run([&] { return qkv_reference(x, w, b, lk, lv); }, ins, g);
      expect_all_close(fused, composed, 1e-11);
    }
}

TEST(Ia3QkvLinear, Float32KernelsMatchComposedOps) {
  const int64_t D = 160, R = 60, in = 24;
  auto f32 = [](const Tensor& t) { return t.to(DType::f32).detach().requires_grad_(); };
  Tensor x = f32(randn64({R, in}, 11)), w = f32(randn64({3 * D, in}, 12)), b = f32(randn64({3 * D}, 13));
  Tensor lk = f32(randn64({D}, 14)), lv = f32(randn64({D}, 15));
  Tensor g = randn64({R, 3 * D}, 16, false).to(DType::f32);
  std::vector<Tensor> ins{x, w, b, lk, lv};
  auto fused = run([&] { return ia3_qkv_linear(x, w, b, lk, lv); }, ins, g);
  auto composed = run([&] { return qkv_reference(x, w, b, lk, lv); }, ins, g);
  expect_all_close(fused, composed, 2e-3);  // sums over 60 rows of O(10) products in float32
}

TEST(Ia3QkvLinear, GradcheckWithNonContiguousInputs) {
  auto fn = [](const std::vector<Tensor>& in) { return ia3_qkv_linear(in[0], in[1], in[2], in[3], in[4]); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({2, 3, 5}, 21), randn64({6, 5}, 22), randn64({6}, 23),
                                            randn64({2}, 24), randn64({2}, 25)}));
  // x a transposed view, W a transposed view, l_k and l_v strided slices (every other element).
  auto fn2 = [](const std::vector<Tensor>& in) {
    return ia3_qkv_linear(transpose(in[0], 0, 1), transpose(in[1], 0, 1), in[2], slice(in[3], 0, 0, 6, 2),
                          slice(in[4], 0, 1, 6, 2));
  };
  EXPECT_GRADCHECK(fn2, (std::vector<Tensor>{randn64({5, 4}, 26), randn64({5, 9}, 27), randn64({9}, 28),
                                             randn64({6}, 29), randn64({6}, 30)}));
}

TEST(Ia3QkvLinear, FrozenBackboneRunsNoGemmAndSavesOnlyTheKvBlock) {
  // (IA)^3's first block: x, W and b frozen, only the scales train. Backward is one sweep over g.
  const int64_t R = 6, in = 5, D = 4;
  Tensor x = randn64({R, in}, 31, false), w = randn64({3 * D, in}, 32, false), b = randn64({3 * D}, 33, false);
  Tensor lk = randn64({D}, 34), lv = randn64({D}, 35, false);
  Tensor y = ia3_qkv_linear(x, w, b, lk, lv);
  EXPECT_EQ(y.grad_fn()->saved_bytes, static_cast<size_t>(R * 2 * D * 8));  // z's k/v block only
  reset_gemm_counters();
  backward(sum(y));
  EXPECT_EQ(counters().gemm_calls.load(), 0);
  EXPECT_TRUE(lk.grad().defined());
  EXPECT_FALSE(lv.grad().defined());
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

TEST(Ia3QkvLinear, FrozenWeightCostsNoWeightGradientGemm) {
  // A later block: x needs its gradient, W and b are frozen: one GEMM (dx), x is not saved.
  const int64_t R = 6, in = 5, D = 4;
  Tensor x = randn64({R, in}, 41), w = randn64({3 * D, in}, 42, false), b = randn64({3 * D}, 43, false);
  Tensor lk = randn64({D}, 44), lv = randn64({D}, 45);
  Tensor y = ia3_qkv_linear(x, w, b, lk, lv);
  // z_kv [R, 2D], the scales [2D] and W [3D, in]: no x.
  EXPECT_EQ(y.grad_fn()->saved_bytes, static_cast<size_t>((R * 2 * D + 2 * D + 3 * D * in) * 8));
  reset_gemm_counters();
  backward(sum(y));
  EXPECT_EQ(counters().gemm_calls.load(), 1);
  EXPECT_FALSE(w.grad().defined());
  EXPECT_TRUE(x.grad().defined());
  // Only the bias trains: nothing but the scales is saved (gs = g * s gives db).
  Tensor b2 = randn64({3 * D}, 46);
  Tensor y2 = ia3_qkv_linear(x.detach(), w, b2, lk.detach(), lv.detach());
  EXPECT_EQ(y2.grad_fn()->saved_bytes, static_cast<size_t>(2 * D * 8));
}

TEST(Ia3QkvLinear, SavesLessThanTheComposedOps) {
  // Scales alone train: the composed multiply keeps all of z [R, 3D], the fused op its k/v block.
  const int64_t R = 64, in = 16, D = 32;
  Tensor x = randn64({R, in}, 51, false), w = randn64({3 * D, in}, 52, false), b = randn64({3 * D}, 53, false);
  Tensor lk = randn64({D}, 54), lv = randn64({D}, 55);
  const int64_t before = counters().live_bytes.load();
  Tensor y = ia3_qkv_linear(x, w, b, lk, lv);
  const int64_t fused = counters().live_bytes.load() - before;
  y = Tensor();
  const int64_t before2 = counters().live_bytes.load();
  Tensor y2 = qkv_reference(x, w, b, lk, lv);
  const int64_t composed = counters().live_bytes.load() - before2;
  EXPECT_EQ(composed - fused, R * D * 8);  // z's q block
}

TEST(Ia3QkvLinear, EmptyBatchFallsBackAndErrorsNameTheOp) {
  Tensor y = ia3_qkv_linear(randn64({0, 5}, 61), randn64({6, 5}, 62), Tensor(), randn64({2}, 63), randn64({2}, 64));
  EXPECT_EQ(y.sizes(), (Shape{0, 6}));
  EXPECT_THROW_MSG(ia3_qkv_linear(randn64({3, 5}, 65), randn64({6, 5}, 66), Tensor(), randn64({3}, 67),
                                  randn64({3}, 68)),
                   ShapeError, "ia3_qkv_linear", "[3]", "[6, 5]", "[3D, in]");
  EXPECT_THROW_MSG(ia3_qkv_linear(randn64({3, 5}, 65), randn64({6, 5}, 66), Tensor(), randn64({2}, 67).to(DType::f32),
                                  randn64({2}, 68)),
                   DTypeError, "ia3_qkv_linear", "float32");
  // x that does not fit W: the composed linear's message.
  EXPECT_THROW_MSG(ia3_qkv_linear(randn64({3, 4}, 65), randn64({6, 5}, 66), Tensor(), randn64({2}, 67),
                                  randn64({2}, 68)),
                   ShapeError, "linear");
}

// --- gelu_scale_linear --------------------------------------------------------------------------

TEST(GeluScaleLinear, MatchesComposedOps) {
  for (const Shape& hs : {Shape{2, 3, 6}, Shape{60, 300}})
    for (bool with_bias : {true, false}) {
      const int64_t F = hs.back();
      Tensor h = randn64(hs, 1), l = randn64({F}, 2), w = randn64({4, F}, 3), b = with_bias ? randn64({4}, 4) : Tensor();
      Shape ys = hs;
      ys.back() = 4;
      Tensor g = randn64(ys, 5, false);
      std::vector<Tensor> ins{h, l, w, b};
      auto fused = run([&] { return gelu_scale_linear(h, l, w, b); }, ins, g);
      auto composed = run([&] { return linear(mul(gelu(h), l), w, b); }, ins, g);
      expect_all_close(fused, composed, 1e-11);
    }
}

TEST(GeluScaleLinear, Float32KernelsMatchComposedOps) {
  const int64_t R = 60, F = 300, out = 8;
  auto f32 = [](const Tensor& t) { return t.to(DType::f32).detach().requires_grad_(); };
  Tensor h = f32(randn64({R, F}, 11)), l = f32(randn64({F}, 12)), w = f32(randn64({out, F}, 13)),
         b = f32(randn64({out}, 14));
  Tensor g = randn64({R, out}, 15, false).to(DType::f32);
  std::vector<Tensor> ins{h, l, w, b};
  auto fused = run([&] { return gelu_scale_linear(h, l, w, b); }, ins, g);
  auto composed = run([&] { return linear(mul(gelu(h), l), w, b); }, ins, g);
  expect_all_close(fused, composed, 2e-3);
  // At l = 1 it is gelu_linear (the same float32 GELU).
  Tensor one = ones({F}, DType::f32);
  EXPECT_LT(max_abs_diff(gelu_scale_linear(h, one, w, b), gelu_linear(h, w, b)), 1e-5);
}

TEST(GeluScaleLinear, GradcheckWithNonContiguousInputs) {
  auto fn = [](const std::vector<Tensor>& in) { return gelu_scale_linear(in[0], in[1], in[2], in[3]); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({2, 3, 5}, 21), randn64({5}, 22), randn64({2, 5}, 23),
                                            randn64({2}, 24)}));
  // h a transposed view, l a strided slice, W a transposed view.
  auto fn2 = [](const std::vector<Tensor>& in) {
    return gelu_scale_linear(transpose(in[0], 0, 1), slice(in[1], 0, 0, 10, 2), transpose(in[2], 0, 1), in[3]);
  };
  EXPECT_GRADCHECK(fn2, (std::vector<Tensor>{randn64({5, 3}, 25), randn64({10}, 26), randn64({5, 2}, 27),
                                             randn64({2}, 28)}));
}

TEST(GeluScaleLinear, FrozenWeightCostsNoWeightGradientGemm) {
  // (IA)^3's fc2: h and l train, W and b frozen: one GEMM (g W); h and W saved, not gelu(h).
  const int64_t R = 6, F = 5, out = 3;
  Tensor h = randn64({R, F}, 31), l = randn64({F}, 32), w = randn64({out, F}, 33, false), b = randn64({out}, 34, false);
  Tensor y = gelu_scale_linear(h, l, w, b);
  EXPECT_EQ(y.grad_fn()->saved_bytes, static_cast<size_t>((R * F + F + out * F) * 8));
  reset_gemm_counters();
  backward(sum(y));
  EXPECT_EQ(counters().gemm_calls.load(), 1);
  EXPECT_TRUE(h.grad().defined());
  EXPECT_TRUE(l.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  // Only l trains (the first block's input is frozen): h and W saved, l not.
  Tensor y2 = gelu_scale_linear(h.detach(), l, w, b);
  EXPECT_EQ(y2.grad_fn()->saved_bytes, static_cast<size_t>((R * F + out * F) * 8));
  // Only the bias trains: nothing is saved and backward runs no GEMM.
  Tensor b2 = randn64({out}, 35);
  Tensor y3 = gelu_scale_linear(h.detach(), l.detach(), w, b2);
  EXPECT_EQ(y3.grad_fn()->saved_bytes, 0u);
  reset_gemm_counters();
  backward(sum(y3));
  EXPECT_EQ(counters().gemm_calls.load(), 0);
  EXPECT_LT(max_abs_diff(b2.grad(), full({out}, static_cast<double>(R), DType::f64)), 1e-15);
}

TEST(GeluScaleLinear, SavesOnlyTheInputNotGeluOfIt) {
  // h and l train, W frozen: the composed ops keep h (gelu) and gelu(h) (mul); the fused op h.
  Tensor h = randn64({64, 256}, 41), l = randn64({256}, 42), w = randn64({8, 256}, 43, false);
  const int64_t before = counters().live_bytes.load();
  Tensor y = gelu_scale_linear(h, l, w, Tensor());
  const int64_t fused = counters().live_bytes.load() - before;
  y = Tensor();
  const int64_t before2 = counters().live_bytes.load();
  Tensor y2 = linear(mul(gelu(h), l), w, Tensor());
  const int64_t composed = counters().live_bytes.load() - before2;
  EXPECT_EQ(composed - fused, 64 * 256 * 8);  // exactly one [64, 256] float64 tensor less
}

TEST(GeluScaleLinear, InferenceReusesAnUnsharedInput) {
  Tensor l = randn64({6}, 51, false), w = randn64({4, 6}, 52, false), b = randn64({4}, 53, false);
  Tensor h = randn64({5, 6}, 54, false);
  Tensor ref = linear(mul(gelu(h), l), w, b);
  NoGradGuard ng;
  Tensor kept = h.clone();
  Tensor y_shared = gelu_scale_linear(kept, l, w, b);  // kept is still ours: it must not change
  EXPECT_LT(max_abs_diff(kept, h), 1e-15);
  EXPECT_LT(max_abs_diff(y_shared, ref), 1e-12);
  Tensor owned = h.clone();
  const int64_t before = counters().live_bytes.load();
  reset_peak_bytes();
  Tensor y = gelu_scale_linear(std::move(owned), l, w, b);
  EXPECT_EQ(counters().peak_bytes.load() - before, 5 * 4 * 8);  // the output only
  EXPECT_LT(max_abs_diff(y, ref), 1e-12);
}

TEST(GeluScaleLinear, FallbacksAndErrorsNameTheOp) {
  Tensor y = gelu_scale_linear(randn64({0, 5}, 61), randn64({5}, 62), randn64({3, 5}, 63), Tensor());
  EXPECT_EQ(y.sizes(), (Shape{0, 3}));
  EXPECT_THROW_MSG(gelu_scale_linear(randn64({2, 5}, 64), randn64({4}, 65), randn64({3, 5}, 66), Tensor()), ShapeError,
                   "gelu_scale_linear", "[4]", "[3, 5]", "[hidden]");
  EXPECT_THROW_MSG(gelu_scale_linear(randn64({2, 5}, 64), randn64({5}, 65).to(DType::f32), randn64({3, 5}, 66),
                                     Tensor()),
                   DTypeError, "gelu_scale_linear", "float32");
}

}  // namespace
}  // namespace peft
