// blas::gemm (oneDNN, OpenBLAS or the reference loops) against the plain
// triple loop blas::gemm_reference: every transpose combination, padded leading dimensions,
// alpha/beta, the row and column split paths, calls from inside a parallel region, and counters.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/blas.h"
#include "core/counters.h"
#include "core/error.h"
#include "core/random.h"
#include "core/threads.h"

using namespace peft;

namespace {

// A GEMM problem with its operands stored as the flags say (A: [M,K] or [K,M], B: [K,N] or
// [N,K]), every leading dimension padded by `pad` columns to catch ld mix-ups.
template <class T>
struct Problem {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  std::vector<T> A, B, C;

  Problem(bool ta_, bool tb_, int64_t M_, int64_t N_, int64_t K_, int64_t pad, uint64_t seed)
      : ta(ta_), tb(tb_), M(M_), N(N_), K(K_) {
    lda = (ta ? M : K) + pad;
    ldb = (tb ? K : N) + pad;
    ldc = N + pad;
    Generator gen(seed);
    A.resize(static_cast<size_t>((ta ? K : M) * lda));
    B.resize(static_cast<size_t>((tb ? N : K) * ldb));
    C.resize(static_cast<size_t>(M * ldc));
    for (auto& v : A) v = static_cast<T>(gen.normal());
    for (auto& v : B) v = static_cast<T>(gen.normal());
    for (auto& v : C) v = static_cast<T>(gen.normal());
  }
};

// Runs blas::gemm and gemm_reference on copies of the same C and compares every element that
// the contract says is written; the padding columns of C must stay untouched.
template <class T>
void expect_matches_reference(const Problem<T>& p, T alpha, T beta, double tol) {
  std::vector<T> got = p.C, want = p.C;
  blas::gemm(p.ta, p.tb, p.M, p.N, p.K, alpha, p.A.data(), p.lda, p.B.data(), p.ldb, beta, got.data(), p.ldc);
  blas::gemm_reference(p.ta, p.tb, p.M, p.N, p.K, alpha, p.A.data(), p.lda, p.B.data(), p.ldb, beta, want.data(),
                       p.ldc);
  double worst = 0;
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t j = 0; j < p.ldc; ++j) {
      const size_t k = static_cast<size_t>(i * p.ldc + j);
      if (j >= p.N) {
        ASSERT_EQ(got[k], p.C[k]) << "padding of C written at (" << i << ", " << j << ")";
        continue;
      }
      const double err = std::fabs(static_cast<double>(got[k]) - static_cast<double>(want[k]));
      worst = std::max(worst, err / (1.0 + std::fabs(static_cast<double>(want[k]))));
    }
  EXPECT_LE(worst, tol) << "ta " << p.ta << " tb " << p.tb << " M " << p.M << " N " << p.N << " K " << p.K;
}

// Sets the thread count for one test and restores the previous one.
struct ThreadScope {
  int prev;
  explicit ThreadScope(int n) : prev(num_threads()) { set_num_threads(n); }
  ~ThreadScope() { set_num_threads(prev); }
};

}  // namespace

TEST(Blas, SmallShapesAllTransposeCombinations) {
  ThreadScope threads(1);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t pad : {0, 3}) {
        expect_matches_reference(Problem<double>(ta, tb, 5, 7, 3, pad, 1), 1.0, 0.0, 1e-13);
        expect_matches_reference(Problem<double>(ta, tb, 1, 9, 4, pad, 2), -0.5, 2.0, 1e-13);
        expect_matches_reference(Problem<double>(ta, tb, 6, 1, 1, pad, 3), 2.0, 1.0, 1e-13);
        expect_matches_reference(Problem<float>(ta, tb, 5, 7, 3, pad, 4), 1.0f, 0.0f, 1e-5);
        expect_matches_reference(Problem<float>(ta, tb, 8, 3, 11, pad, 5), 0.25f, -1.0f, 1e-5);
      }
}

TEST(Blas, LargeShapesSplitAcrossTwoThreads) {
  // 300x200x150 is above the split threshold (M*N*K >= 2^18): split by rows (M >= N). 40x600x100
  // has few rows and many columns: split by columns. Both with every transpose combination.
  ThreadScope threads(2);
  ASSERT_EQ(num_threads(), 2);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      expect_matches_reference(Problem<double>(ta, tb, 300, 200, 150, 0, 10), 1.0, 0.0, 1e-12);
      expect_matches_reference(Problem<double>(ta, tb, 40, 600, 100, 2, 11), 0.5, 1.5, 1e-12);
      expect_matches_reference(Problem<float>(ta, tb, 300, 200, 150, 1, 12), 1.0f, 0.0f, 1e-4);
      expect_matches_reference(Problem<float>(ta, tb, 40, 600, 100, 0, 13), -1.0f, 0.5f, 1e-4);
    }
}

TEST(Blas, SplitResultsAreReproducible) {
  // Blocks are independent GEMMs: two runs with the same thread count agree bit for bit.
  ThreadScope threads(2);
  Problem<float> p(false, true, 300, 200, 150, 0, 20);
  std::vector<float> c1(p.C.size(), 0.0f), c2(p.C.size(), 0.0f);
  blas::gemm(p.ta, p.tb, p.M, p.N, p.K, 1.0f, p.A.data(), p.lda, p.B.data(), p.ldb, 0.0f, c1.data(), p.ldc);
  blas::gemm(p.ta, p.tb, p.M, p.N, p.K, 1.0f, p.A.data(), p.lda, p.B.data(), p.ldb, 0.0f, c2.data(), p.ldc);
  EXPECT_EQ(c1, c2);
}

TEST(Blas, CallsFromInsideAParallelRegionRunSerially) {
  // Each thread of an outer team runs its own GEMM (as a parallel loop over heads would): the
  // split is skipped, the results are still right.
  ThreadScope threads(2);
  std::vector<Problem<double>> ps;
  for (int t = 0; t < 4; ++t) ps.emplace_back(t % 2 == 1, t >= 2, 80, 70, 60, 0, 30 + t);
  std::vector<std::vector<double>> got(4);
#pragma omp parallel for num_threads(2)
  for (int t = 0; t < 4; ++t) {
    auto& p = ps[t];
    got[t] = p.C;
    blas::gemm(p.ta, p.tb, p.M, p.N, p.K, 1.0, p.A.data(), p.lda, p.B.data(), p.ldb, 0.0, got[t].data(), p.ldc);
  }
  for (int t = 0; t < 4; ++t) {
    auto& p = ps[t];
    std::vector<double> want = p.C;
    blas::gemm_reference(p.ta, p.tb, p.M, p.N, p.K, 1.0, p.A.data(), p.lda, p.B.data(), p.ldb, 0.0, want.data(), p.ldc);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[t][i], want[i], 1e-12) << "problem " << t << " at " << i;
  }
}

TEST(Blas, BetaZeroIgnoresGarbageInC) {
  // BLAS contract: with beta == 0, C is written, not read; NaN left in C must not leak through.
  Problem<double> p(false, false, 4, 5, 3, 0, 40);
  std::fill(p.C.begin(), p.C.end(), std::numeric_limits<double>::quiet_NaN());
  std::vector<double> c = p.C;
  blas::gemm(false, false, p.M, p.N, p.K, 1.0, p.A.data(), p.lda, p.B.data(), p.ldb, 0.0, c.data(), p.ldc);
  for (double v : c) EXPECT_FALSE(std::isnan(v));
}

TEST(Blas, DegenerateShapes) {
  // K == 0: C = beta * C. M == 0 or N == 0: nothing to do (and nothing may be touched).
  Problem<double> p(false, false, 3, 4, 0, 1, 50);
  expect_matches_reference(p, 1.0, 0.5, 0.0);
  std::vector<double> c(4, 7.0);
  double a = 1, b = 1;
  blas::gemm(false, false, 0, 4, 2, 1.0, &a, 2, &b, 4, 0.0, c.data(), 4);
  blas::gemm(false, false, 1, 0, 2, 1.0, &a, 2, &b, 1, 0.0, c.data(), 1);
  EXPECT_EQ(c, std::vector<double>(4, 7.0));
}

TEST(Blas, CountsOneCallAndTwoMNKFlopsPerGemm) {
  ThreadScope threads(2);
  Problem<float> small(false, false, 5, 7, 3, 0, 60), big(true, false, 300, 200, 150, 0, 61);
  reset_gemm_counters();
  std::vector<float> c = small.C;
  blas::gemm(false, false, 5, 7, 3, 1.0f, small.A.data(), small.lda, small.B.data(), small.ldb, 0.0f, c.data(), small.ldc);
  EXPECT_EQ(counters().gemm_calls, 1);
  EXPECT_EQ(counters().gemm_flops, 2 * 5 * 7 * 3);
  c = big.C;  // the split path still counts one call
  blas::gemm(true, false, 300, 200, 150, 1.0f, big.A.data(), big.lda, big.B.data(), big.ldb, 0.0f, c.data(), big.ldc);
  EXPECT_EQ(counters().gemm_calls, 2);
  EXPECT_EQ(counters().gemm_flops, 2 * 5 * 7 * 3 + 2 * 300 * 200 * 150);
  reset_gemm_counters();
  EXPECT_EQ(counters().gemm_calls, 0);
  EXPECT_EQ(counters().gemm_flops, 0);
}

TEST(Blas, ThreadPolicy) {
  ThreadScope threads(2);
  EXPECT_EQ(num_threads(), 2);
  EXPECT_NE(thread_policy().find("2"), std::string::npos) << thread_policy();
  // oneDNN, OpenBLAS or the reference loops, whichever -DPEFT_BLAS chose; the thread policy names it.
  const std::string name = blas::backend_name();
  EXPECT_TRUE(name.rfind("oneDNN", 0) == 0 || name.rfind("OpenBLAS", 0) == 0 || name.rfind("reference", 0) == 0)
      << name;
  EXPECT_NE(thread_policy().find(name), std::string::npos) << thread_policy();
}

namespace {
// x rounded to bfloat16 (round to nearest even), as a float.
float round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}
}  // namespace

// --precision bf16: A and B rounded to bfloat16, float32 accumulation; equal to the plain loops
// on the rounded inputs up to the accumulation order, and refused where the backend has no bf16.
TEST(Blas, Bf16PrecisionRoundsTheInputsAndAccumulatesInFloat32) {
  if (!blas::bf16_supported()) {
    EXPECT_THROW(blas::set_precision(blas::Precision::bf16), ValueError);
    return;
  }
  const int64_t M = 67, N = 129, K = 161;  // above the bf16 threshold (2^20 multiply-adds)
  Generator g(7);
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    std::vector<float> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N)), C(static_cast<size_t>(M * N), 0.5f);
    for (float& v : A) v = static_cast<float>(g.normal());
    for (float& v : B) v = static_cast<float>(g.normal());
    std::vector<float> Ar(A), Br(B), Cr(C);
    for (float& v : Ar) v = round_bf16(v);
    for (float& v : Br) v = round_bf16(v);
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    blas::set_precision(blas::Precision::bf16);
    blas::gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, C.data(), N);
    blas::set_precision(blas::Precision::f32);
    blas::gemm_reference<float>(ta, tb, M, N, K, 0.5f, Ar.data(), lda, Br.data(), ldb, 2.0f, Cr.data(), N);
    double worst = 0;
    for (size_t i = 0; i < C.size(); ++i) worst = std::max(worst, std::fabs(double(C[i]) - double(Cr[i])));
    EXPECT_LE(worst, 1e-3) << "ta " << ta << " tb " << tb;
    // and it is really reduced: the f32 product of the unrounded inputs differs
    std::vector<float> Cf(static_cast<size_t>(M * N), 0.5f);
    blas::gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, Cf.data(), N);
    double diff = 0;
    for (size_t i = 0; i < C.size(); ++i) diff = std::max(diff, std::fabs(double(C[i]) - double(Cf[i])));
    EXPECT_GT(diff, 1e-3);
  }
  EXPECT_EQ(blas::precision(), blas::Precision::f32);
}

TEST(Blas, Bf16PrecisionLeavesSmallProductsInFloat32) {
  if (!blas::bf16_supported()) return;
  // 8 x 8 x 8: below the threshold, computed exactly as in float32.
  std::vector<float> A(64), B(64), C(64, 0.0f), Cf(64, 0.0f);
  Generator g(3);
  for (float& v : A) v = static_cast<float>(g.normal());
  for (float& v : B) v = static_cast<float>(g.normal());
  blas::set_precision(blas::Precision::bf16);
  blas::gemm(false, false, 8, 8, 8, 1.0f, A.data(), 8, B.data(), 8, 0.0f, C.data(), 8);
  blas::set_precision(blas::Precision::f32);
  blas::gemm(false, false, 8, 8, 8, 1.0f, A.data(), 8, B.data(), 8, 0.0f, Cf.data(), 8);
  EXPECT_EQ(C, Cf);
}
