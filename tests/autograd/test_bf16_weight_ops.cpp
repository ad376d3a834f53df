// The ops that read a weight (linear, gelu_linear, lora_linear) under --precision bf16: with the
// weight's bfloat16 copy made once (core/bf16_weights.h) their outputs and input gradients are
// bit for bit those of rounding the weight on every call (the same weight as a computed, non-leaf
// tensor, which the cache never holds); frozen and trainable weights share one copy between
// forward and backward, and an update (version bump) makes a new one. float32 is untouched.
#include <gtest/gtest.h>

#include <cstring>

#include "autograd/backward.h"
#include "autograd/ops.h"
#include "autograd/ops/ia3.h"
#include "autograd/ops/lora.h"
#include "core/bf16_weights.h"
#include "core/error.h"
#include "core/blas.h"
#include "core/random.h"
#include "tests/testing.h"

using namespace peft;

namespace {

using peft::testing::Bf16Scope;

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.sizes() == b.sizes() && std::memcmp(a.data<float>(), b.data<float>(), a.nbytes()) == 0;
}

// The weight as a computed tensor with the same values (w * 1 is exact): never cached, so the
// GEMMs round it per call, the path the cache must reproduce.
Tensor computed_copy(const Tensor& w) {
  Tensor leaf = w.clone().requires_grad_(true);
  return mul(leaf, 1.0);
}

// Runs f(x, w) and f(x, other) forward and backward (dX) on the same x and output gradient and
// expects the outputs and dX to agree bit for bit.
template <class F>
void expect_same_bits(F f, const Shape& xshape, const Tensor& w, const Tensor& other, const char* what) {
  Generator g(17);
  Tensor x0 = randn(xshape, g);
  Tensor x1 = x0.clone().requires_grad_(true), x2 = x0.clone().requires_grad_(true);
  Tensor y1 = f(x1, w), y2 = f(x2, other);
  EXPECT_TRUE(same_bits(y1, y2)) << what << " forward";
  Tensor gy = randn(y1.sizes(), g);
  backward(y1, gy);
  backward(y2, gy);
  EXPECT_TRUE(same_bits(x1.grad(), x2.grad())) << what << " dX";
}

// w itself (its cached copy) against its computed copy (rounded per call).
template <class F>
void expect_cache_matches_per_call(F f, const Shape& xshape, const Tensor& w, const char* what) {
  expect_same_bits(f, xshape, w, computed_copy(w), what);
}

// The float32 weight (its cached bf16 copy) against the weight stored in bfloat16
// (nn/bf16_storage.h): the GEMMs see the same bf16 values.
template <class F>
void expect_stored_matches_cached(F f, const Shape& xshape, const Tensor& w, const char* what) {
  const Tensor wb = w.to(DType::bf16);
  expect_same_bits(f, xshape, w, wb, what);
  EXPECT_FALSE(wb.grad().defined()) << what << ": a stored bf16 weight is frozen";
}

}  // namespace

TEST(Bf16WeightOps, WeightStoredInBf16GivesTheCachedCopyBitForBit) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  Bf16Scope bf;
  Generator g(6);
  Tensor w = randn({192, 192}, g), b = randn({192}, g), w2 = randn({192, 640}, g);
  Tensor A = randn({4, 192}, g), B = randn({192, 4}, g), lk = randn({64}, g), lv = randn({64}, g),
         l = randn({640}, g);
  for (Tensor* t : {&A, &B, &lk, &lv, &l}) t->requires_grad_(true);
  expect_stored_matches_cached([&](const Tensor& x, const Tensor& wt) { return linear(x, wt, b); }, {2, 80, 192}, w,
                               "linear");
  expect_stored_matches_cached([&](const Tensor& x, const Tensor& wt) { return gelu_linear(x, wt, Tensor()); },
                               {160, 640}, w2, "gelu_linear");
  expect_stored_matches_cached(
      [&](const Tensor& x, const Tensor& wt) { return lora_linear(x, wt, b, A, B, 0.5); }, {160, 192}, w,
      "lora_linear");
  expect_stored_matches_cached(
      [&](const Tensor& x, const Tensor& wt) { return ia3_qkv_linear(x, wt, b, lk, lv); }, {160, 192}, w,
      "ia3_qkv_linear");
  expect_stored_matches_cached(
      [&](const Tensor& x, const Tensor& wt) { return gelu_scale_linear(x, l, wt, Tensor()); }, {160, 640}, w2,
      "gelu_scale_linear");
}

// Below the bf16 threshold, in q|k|v row blocks (cross-attention's narrow views), in column
// blocks, and with --precision f32 set, a bf16 weight still multiplies as bf16 x bf16 with
// float32 accumulation: the product of the rounded operands, to float32 summation error.
TEST(Bf16WeightOps, Bf16WeightRunsAtAnySizeInViewsAndUnderFloat32Precision) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  Generator g(7);
  Tensor w = randn({12, 16}, g), x = randn({5, 16}, g);
  Tensor wb = w.to(DType::bf16), wr = wb.to(DType::f32), xr = x.to(DType::bf16).to(DType::f32);
  for (bool bf : {false, true}) {
    blas::set_precision(bf ? blas::Precision::bf16 : blas::Precision::f32);
    SCOPED_TRACE(bf ? "precision bf16" : "precision f32");
    EXPECT_LT(max_abs_diff(linear(x, wb), matmul(xr, transpose(wr, 0, 1))), 1e-5);
    Tensor rows = narrow(wb, 0, 4, 4), cols = narrow(wb, 1, 3, 8);  // [4, 16], [12, 8]
    EXPECT_LT(max_abs_diff(linear(x, rows), narrow(matmul(xr, transpose(wr, 0, 1)), 1, 4, 4)), 1e-5);
    Tensor x8 = narrow(x, 1, 0, 8).clone().requires_grad_(true);
    Tensor y = linear(x8, cols);
    EXPECT_LT(max_abs_diff(y, matmul(narrow(xr, 1, 0, 8), transpose(narrow(wr, 1, 3, 8), 0, 1))), 1e-5);
    Tensor gy = ones(y.sizes());
    backward(y, gy);  // dX = gY W_cols, W read through its strided bf16 view
    EXPECT_LT(max_abs_diff(x8.grad(), matmul(gy.to(DType::bf16).to(DType::f32), narrow(wr, 1, 3, 8))), 1e-5);
  }
  blas::set_precision(blas::Precision::f32);
}

TEST(Bf16WeightOps, Float64InputsWithABf16WeightAreRefused) {
  Tensor wb = ones({4, 4}).to(DType::bf16);
  EXPECT_THROW(linear(ones({2, 4}, DType::f64), wb), DTypeError);
  EXPECT_THROW(lora_linear(ones({2, 4}, DType::f64), wb, Tensor(), ones({1, 4}), ones({4, 1}), 1.0), DTypeError);
}

TEST(Bf16WeightOps, CachedWeightGivesThePerCallRoundingBitForBit) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  Bf16Scope bf;
  Generator g(3);
  // Sizes above the bf16 threshold (2^20 multiply-adds), like a ViT block's linears.
  Tensor w = randn({160, 192}, g), b = randn({160}, g), w2 = randn({192, 640}, g);
  Tensor A = randn({4, 192}, g), B = randn({160, 4}, g);
  expect_cache_matches_per_call([&](const Tensor& x, const Tensor& wt) { return linear(x, wt, b); }, {2, 80, 192}, w,
                                "linear");
  expect_cache_matches_per_call([&](const Tensor& x, const Tensor& wt) { return gelu_linear(x, wt, Tensor()); },
                                {160, 640}, w2, "gelu_linear");
  expect_cache_matches_per_call(
      [&](const Tensor& x, const Tensor& wt) { return lora_linear(x, wt, b, A, B, 0.5); }, {160, 192}, w,
      "lora_linear");
  EXPECT_GT(bf16::weight_cache_stats().hits, 0u) << "backward reused forward's copies";
}

TEST(Bf16WeightOps, FrozenWeightIsRoundedOnceTrainableOncePerUpdate) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  Bf16Scope bf;
  Generator g(4);
  Tensor frozen = randn({192, 192}, g), trainable = randn({192, 192}, g).requires_grad_(true);
  Tensor x = randn({64, 192}, g).requires_grad_(true);
  for (int step = 0; step < 3; ++step) {
    Tensor y = linear(linear(x, frozen), trainable);
    backward(sum(y));
    EXPECT_TRUE(trainable.grad().defined());
    EXPECT_FALSE(frozen.grad().defined()) << "frozen stays without a gradient";
    trainable.bump_version();  // what the optimizer's update does
  }
  const bf16::WeightCacheStats s = bf16::weight_cache_stats();
  // frozen: 1 miss then hits; trainable: 1 miss per step, its backward a hit.
  EXPECT_EQ(s.misses, 1u + 3u);
  EXPECT_EQ(s.hits, 2u * 3u + 2u);
  EXPECT_EQ(s.entries, 2u);
}

TEST(Bf16WeightOps, Float32PrecisionNeverTouchesTheCache) {
  bf16::clear_weight_cache();
  Generator g(5);
  Tensor w = randn({192, 192}, g), x = randn({64, 192}, g).requires_grad_(true);
  backward(sum(linear(x, w)));
  const bf16::WeightCacheStats s = bf16::weight_cache_stats();
  EXPECT_EQ(s.misses + s.hits + s.entries, 0u);
}
