// The ops that read a weight (linear, gelu_linear, lora_linear) under --precision bf16: with the
// weight's bfloat16 copy made once (core/bf16_weights.h) their outputs and input gradients are
// bit for bit those of rounding the weight on every call (the same weight as a computed, non-leaf
// tensor, which the cache never holds); frozen and trainable weights share one copy between
// forward and backward, and an update (version bump) makes a new one. float32 is untouched.
#include <gtest/gtest.h>

#include <cstring>

#include "autograd/backward.h"
#include "autograd/ops.h"
#include "autograd/ops/lora.h"
#include "core/bf16_weights.h"
#include "core/blas.h"
#include "core/random.h"

using namespace peft;

namespace {

struct Bf16Scope {
  Bf16Scope() {
    bf16::clear_weight_cache();
    blas::set_precision(blas::Precision::bf16);
  }
  ~Bf16Scope() {
    blas::set_precision(blas::Precision::f32);
    bf16::clear_weight_cache();
  }
};

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.sizes() == b.sizes() && std::memcmp(a.data<float>(), b.data<float>(), a.nbytes()) == 0;
}

// The weight as a computed tensor with the same values (w * 1 is exact): never cached, so the
// GEMMs round it per call, the path the cache must reproduce.
Tensor computed_copy(const Tensor& w) {
  Tensor leaf = w.clone().requires_grad_(true);
  return mul(leaf, 1.0);
}

// Runs f(x, w) forward and backward (dX) for w itself and for its computed copy.
template <class F>
void expect_cache_matches_per_call(F f, const Shape& xshape, const Tensor& w, const char* what) {
  Generator g(17);
  Tensor x0 = randn(xshape, g);
  Tensor x1 = x0.clone().requires_grad_(true), x2 = x0.clone().requires_grad_(true);
  Tensor y1 = f(x1, w), y2 = f(x2, computed_copy(w));
  EXPECT_TRUE(same_bits(y1, y2)) << what << " forward";
  Tensor gy = randn(y1.sizes(), g);
  backward(y1, gy);
  backward(y2, gy);
  EXPECT_TRUE(same_bits(x1.grad(), x2.grad())) << what << " dX";
}

}  // namespace

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
