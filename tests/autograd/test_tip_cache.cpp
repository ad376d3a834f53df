// tip_cache_logits (Tip-Adapter's exp(-beta (1 - f keys^T)) onehot(labels)): equals the composed
// ops (values and both gradients, float64 and float32), gradcheck with non-contiguous inputs,
// freeze masks (no gradient, no GEMM and nothing saved for a frozen input), bad inputs.
#include <gtest/gtest.h>

#include <array>
#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/tip_cache.h"
#include "core/counters.h"
#include "tests/testing.h"

namespace peft {
namespace {
using testing::randn64;

Tensor one_hot(const std::vector<int64_t>& y, int64_t K, DType dt) {
  Tensor Y = zeros({static_cast<int64_t>(y.size()), K}, DType::f64);
  for (size_t n = 0; n < y.size(); ++n) Y.data<double>()[static_cast<int64_t>(n) * K + y[n]] = 1.0;
  return Y.to(dt);
}

// The official expression, op by op: exp((-1) * (beta - beta * f keys^T)) @ Y.
Tensor composed(const Tensor& f, const Tensor& keys, const std::vector<int64_t>& y, int64_t K, double beta) {
  Tensor A = matmul(f, transpose(keys, 0, 1));
  return matmul(exp(mul(add(mul(A, -beta), beta), -1.0)), one_hot(y, K, f.dtype()));
}

// Rows of norm ~1 (the cache's keys and features are unit vectors), as a trainable leaf.
Tensor unit_rows(const Shape& s, uint64_t seed, DType dt = DType::f64) {
  return mul(randn64(s, seed, false), 1.0 / std::sqrt(static_cast<double>(s[1]))).to(dt).requires_grad_();
}

double max_abs(const Tensor& t) { return max_abs_diff(t, zeros_like(t)); }

std::vector<int64_t> labels_for(int64_t NK, int64_t K) {
  std::vector<int64_t> y;
  for (int64_t n = 0; n < NK; ++n) y.push_back((n * 7 + 3) % K);
  return y;
}

// [3, 4] x [6, 4], and [40, 16] x [7000, 16]: above the op's parallel grain (2^18 affinities).
TEST(TipCacheLogits, MatchesComposedOps) {
  for (auto [B, E, NK, K] : {std::array<int64_t, 4>{3, 4, 6, 3}, std::array<int64_t, 4>{40, 16, 7000, 10}}) {
    const double beta = 5.5;
    Tensor f = unit_rows({B, E}, 1), keys = unit_rows({NK, E}, 2);
    const std::vector<int64_t> y = labels_for(NK, K);
    Tensor g = randn64({B, K}, 3, false);
    Tensor out1 = tip_cache_logits(f, keys, from_vector_i64(y, {NK}), K, beta);
    backward(out1, g);
    Tensor gf = f.grad(), gk = keys.grad();
    f.zero_grad();
    keys.zero_grad();
    Tensor out2 = composed(f, keys, y, K, beta);
    backward(out2, g);
    EXPECT_LT(max_abs_diff(out1, out2), 1e-12 * (1 + max_abs(out2)));
    EXPECT_LT(max_abs_diff(gf, f.grad()), 1e-12 * (1 + max_abs(f.grad())));
    EXPECT_LT(max_abs_diff(gk, keys.grad()), 1e-12 * (1 + max_abs(keys.grad())));
  }
}

TEST(TipCacheLogits, Float32MatchesComposedOps) {
  const int64_t B = 32, E = 64, NK = 1024, K = 10;  // the clip-micro cache of bench_feature_cache
  Tensor f = unit_rows({B, E}, 4, DType::f32), keys = unit_rows({NK, E}, 5, DType::f32);
  const std::vector<int64_t> y = labels_for(NK, K);
  Tensor g = randn64({B, K}, 6, false).to(DType::f32);
  Tensor out1 = tip_cache_logits(f, keys, from_vector_i64(y, {NK}), K, 1.0);
  backward(out1, g);
  Tensor gf = f.grad(), gk = keys.grad();
  f.zero_grad();
  keys.zero_grad();
  Tensor out2 = composed(f, keys, y, K, 1.0);
  backward(out2, g);
  EXPECT_LT(max_abs_diff(out1, out2), 1e-5 * max_abs(out2));
  EXPECT_LT(max_abs_diff(gf, f.grad()), 1e-5 * max_abs(f.grad()));
  EXPECT_LT(max_abs_diff(gk, keys.grad()), 1e-5 * max_abs(keys.grad()));
}

TEST(TipCacheLogits, GradcheckWithNonContiguousInputs) {
  const Tensor labels = from_vector_i64({0, 2, 1, 2, 0}, {5});
  auto fn = [&](const std::vector<Tensor>& in) {
    // f is a column slice of [3, 8]; keys come transposed from [4, 5].
    return tip_cache_logits(narrow(in[0], 1, 2, 4), transpose(in[1], 0, 1), labels, 3, 2.0);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn64({3, 8}, 7), randn64({4, 5}, 8)}));
}

TEST(TipCacheLogits, FrozenInputsGetNoGradientNoGemmAndAreNotSaved) {
  const int64_t B = 4, E = 3, NK = 6, K = 2;
  const Tensor labels = from_vector_i64(labels_for(NK, K), {NK});
  const size_t W = B * NK * 8, L = NK * 8;
  {  // Tip-Adapter-F: only the keys train. W, f (for d keys) and the labels are saved.
    Tensor f = randn64({B, E}, 9, false), keys = randn64({NK, E}, 10);
    Tensor out = tip_cache_logits(f, keys, labels, K, 1.0);
    EXPECT_EQ(out.grad_fn()->saved_bytes, W + static_cast<size_t>(B * E * 8) + L);
    reset_gemm_counters();
    backward(sum(out));
    EXPECT_EQ(counters().gemm_calls.load(), 1);  // d keys only
    EXPECT_TRUE(keys.grad().defined());
    EXPECT_FALSE(f.grad().defined());
  }
  {  // Only f needs a gradient: keys are saved instead of f.
    Tensor f = randn64({B, E}, 11), keys = randn64({NK, E}, 12, false);
    Tensor out = tip_cache_logits(f, keys, labels, K, 1.0);
    EXPECT_EQ(out.grad_fn()->saved_bytes, W + static_cast<size_t>(NK * E * 8) + L);
    reset_gemm_counters();
    backward(sum(out));
    EXPECT_EQ(counters().gemm_calls.load(), 1);  // d f only
    EXPECT_TRUE(f.grad().defined());
    EXPECT_FALSE(keys.grad().defined());
  }
  {  // Nothing trains (Tip-Adapter, or no_grad): no node at all.
    Tensor out = tip_cache_logits(randn64({B, E}, 13, false), randn64({NK, E}, 14, false), labels, K, 1.0);
    EXPECT_FALSE(out.requires_grad());
  }
}

TEST(TipCacheLogits, BadInputsNameTheProblem) {
  Tensor f = randn64({2, 3}, 15, false), keys = randn64({4, 3}, 16, false);
  EXPECT_THROW_MSG(tip_cache_logits(f, keys, from_vector_i64({0, 1, 5, 0}, {4}), 3, 1.0), ValueError,
                   "labels[2] = 5", "[0, 3)");
  EXPECT_THROW_MSG(tip_cache_logits(f, randn64({4, 2}, 17, false), from_vector_i64({0, 1, 2, 0}, {4}), 3, 1.0),
                   ShapeError, "tip_cache_logits", "[4, 2]");
  EXPECT_THROW_MSG(tip_cache_logits(f, keys, from_vector_i64({0, 1, 2}, {3}), 3, 1.0), ShapeError, "labels [3]");
  EXPECT_THROW_MSG(tip_cache_logits(f, keys.to(DType::f32), from_vector_i64({0, 1, 2, 0}, {4}), 3, 1.0), DTypeError,
                   "float64", "float32");
}

}  // namespace
}  // namespace peft
