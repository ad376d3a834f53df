// core/bf16_weights and blas::gemm's b_bf16 operand: a weight rounded once gives the same bits as
// the per-call rounding; the copy is reused until the weight changes (version), dies (storage) or
// precision is f32; strided and computed (non-leaf) weights get none. Also the batched bf16 GEMM
// (attention under --precision bf16) against its plain loops.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/bf16_weights.h"
#include "core/blas.h"
#include "core/random.h"
#include "core/tensor.h"

using namespace peft;

namespace {

// Sets the process-wide precision for one test and restores float32 after it.
struct PrecisionScope {
  explicit PrecisionScope(blas::Precision p) {
    bf16::clear_weight_cache();
    blas::set_precision(p);
  }
  ~PrecisionScope() {
    blas::set_precision(blas::Precision::f32);
    bf16::clear_weight_cache();
  }
};

std::vector<float> normal(size_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(g.normal());
  return v;
}

std::vector<uint16_t> rounded(const std::vector<float>& v) {
  std::vector<uint16_t> r(v.size());
  bf16::to_bf16(v.data(), static_cast<int64_t>(v.size()), r.data());
  return r;
}

}  // namespace

TEST(Bf16Weights, GemmWithARoundedOnceBEqualsThePerCallRoundingBitForBit) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  PrecisionScope bf(blas::Precision::bf16);
  // Above the bf16 threshold (bf16 path) and below it (float32 path: b_bf16 must be ignored).
  for (int64_t M : {257, 9})
    for (int t = 0; t < 4; ++t) {
      const int64_t N = 192, K = 160;
      const bool ta = t & 1, tb = t & 2;
      const std::vector<float> A = normal(size_t(M * K), 1 + t), B = normal(size_t(K * N), 11 + t);
      const std::vector<uint16_t> Bb = rounded(B);
      const int64_t lda = ta ? M : K, ldb = tb ? K : N;
      std::vector<float> per_call(size_t(M * N), 0.25f), once(per_call);
      blas::gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 1.0f, per_call.data(), N);
      blas::gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 1.0f, once.data(), N, Bb.data());
      EXPECT_EQ(0, std::memcmp(per_call.data(), once.data(), per_call.size() * sizeof(float)))
          << "M " << M << " ta " << ta << " tb " << tb;
    }
}

TEST(Bf16Weights, FloatPrecisionIgnoresTheRoundedCopy) {
  // Under f32 a (deliberately wrong) b_bf16 is never read: the default stays exact.
  const int64_t M = 128, N = 96, K = 128;
  const std::vector<float> A = normal(size_t(M * K), 3), B = normal(size_t(K * N), 4);
  const std::vector<uint16_t> zeros(B.size(), 0);
  std::vector<float> plain(size_t(M * N)), given(size_t(M * N));
  blas::gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, plain.data(), N);
  blas::gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, given.data(), N, zeros.data());
  EXPECT_EQ(plain, given);
}

TEST(Bf16Weights, CopyIsTheRoundingMadeOnceAndReused) {
  Generator g(5);
  Tensor w = randn({64, 48}, g);
  EXPECT_EQ(bf16::weight_copy(w), nullptr) << "precision f32 makes no copy";
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  PrecisionScope bf(blas::Precision::bf16);
  bf16::WeightCopy c1 = bf16::weight_copy(w);
  ASSERT_NE(c1, nullptr);
  const std::vector<float> wv = w.to_vector<float>();
  EXPECT_EQ(*c1, rounded(wv));
  bf16::WeightCopy c2 = bf16::weight_copy(w);
  EXPECT_EQ(c1.get(), c2.get()) << "the second call reuses the first copy";
  const bf16::WeightCacheStats s = bf16::weight_cache_stats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, size_t(64 * 48 * 2));
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  // A trainable leaf is cached as well (once per optimizer step: the update bumps the version).
  w.requires_grad_(true);
  EXPECT_EQ(bf16::weight_copy(w).get(), c1.get());
}

TEST(Bf16Weights, AnInPlaceChangeInvalidatesTheCopy) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  PrecisionScope bf(blas::Precision::bf16);
  Generator g(6);
  Tensor w = randn({32, 40}, g);
  bf16::WeightCopy before = bf16::weight_copy(w);
  w.copy_(randn({32, 40}, g));  // e.g. a checkpoint load or a LoRA merge
  bf16::WeightCopy after = bf16::weight_copy(w);
  ASSERT_NE(after, nullptr);
  EXPECT_NE(*before, *after);
  EXPECT_EQ(*after, rounded(w.to_vector<float>()));
  w.fill_(2.0);
  EXPECT_EQ(*bf16::weight_copy(w), std::vector<uint16_t>(32 * 40, bf16::round_bits(2.0f)));
  w.data<float>()[0] = 3.0f;  // a raw write followed by the bump every in-place writer does
  w.bump_version();
  EXPECT_EQ((*bf16::weight_copy(w))[0], bf16::round_bits(3.0f));
}

TEST(Bf16Weights, ADeadWeightsCopyIsDroppedAndNeverMatchesANewOne) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  PrecisionScope bf(blas::Precision::bf16);
  Generator g(8);
  {
    Tensor w = randn({16, 16}, g);
    bf16::weight_copy(w);
    EXPECT_EQ(bf16::weight_cache_stats().entries, 1u);
  }
  EXPECT_EQ(bf16::weight_cache_stats().entries, 0u) << "its storage is gone";
  Tensor w2 = full({16, 16}, 1.5);
  EXPECT_EQ(*bf16::weight_copy(w2), std::vector<uint16_t>(256, bf16::round_bits(1.5f)));
  EXPECT_EQ(bf16::weight_cache_stats().entries, 1u) << "the dead entry was dropped on the miss";
}

TEST(Bf16Weights, StridedFloat64AndEmptyWeightsGetNoCopy) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  PrecisionScope bf(blas::Precision::bf16);
  Generator g(9);
  Tensor w = randn({8, 6}, g);
  EXPECT_EQ(bf16::weight_copy(w.as_strided({6, 8}, {1, 6}, 0)), nullptr);  // transposed view
  EXPECT_EQ(bf16::weight_copy(randn({8, 6}, g, DType::f64)), nullptr);
  EXPECT_EQ(bf16::weight_copy(empty({0, 6})), nullptr);
  EXPECT_EQ(bf16::weight_copy(randn({2, 3, 4}, g)), nullptr);  // not a matrix
}

TEST(Bf16Weights, BatchedBf16GemmMatchesItsPlainLoops) {
  if (!blas::bf16_supported()) {
    std::vector<uint16_t> a(4), b(4);
    std::vector<float> c(4);
    EXPECT_THROW(blas::gemm_batched_bf16(1, false, false, 2, 2, 2, 1.0f, a.data(), 2, 4, b.data(), 2, 4, 0.0f,
                                         c.data(), 2, 4),
                 ValueError);
    return;
  }
  // Attention's shapes: QK^T (B transposed), PV, and the backward's transposed A; batch strides
  // larger than a matrix (heads interleaved in one buffer) and alpha/beta.
  const int64_t batch = 6, M = 33, N = 17, K = 24;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const int64_t lda = ta ? M + 3 : K + 5, ldb = tb ? K + 2 : N + 1;
    const int64_t sa = (ta ? K : M) * lda + 7, sb = (tb ? N : K) * ldb + 3, ldc = N + 4, sc = M * ldc + 9;
    const std::vector<uint16_t> A = rounded(normal(size_t(batch * sa), 20 + t)),
                                B = rounded(normal(size_t(batch * sb), 30 + t));
    std::vector<float> C(size_t(batch * sc), 0.5f), R(C);
    blas::gemm_batched_bf16(batch, ta, tb, M, N, K, 0.25f, A.data(), lda, sa, B.data(), ldb, sb, 1.0f, C.data(),
                            ldc, sc);
    blas::gemm_batched_bf16_reference(batch, ta, tb, M, N, K, 0.25f, A.data(), lda, sa, B.data(), ldb, sb, 1.0f,
                                      R.data(), ldc, sc);
    double worst = 0;
    for (size_t i = 0; i < C.size(); ++i) worst = std::max(worst, std::fabs(double(C[i]) - double(R[i])));
    EXPECT_LE(worst, 1e-4) << "ta " << ta << " tb " << tb;  // exact products, f32 sums in another order
    EXPECT_EQ(C[size_t(M * ldc)], 0.5f) << "gap between batches untouched";
  }
}
