// OpenBLAS calls, counted, and split across the OpenMP team (OpenBLAS itself stays single-threaded).
#include "core/blas.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "core/counters.h"
#include "core/threads.h"

namespace peft::blas {

namespace {

void call(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
              (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
void call(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
              (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

// Splits C by rows (or by columns when there are few rows) into one block per thread; each block
// is an independent GEMM, so results do not depend on timing, only on the thread count.
template <class T>
void gemm_impl(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  auto& c = counters();
  c.gemm_calls += 1;
  c.gemm_flops += 2 * M * N * K;
  if (M == 0 || N == 0) return;
  const int threads = num_threads();
  const bool big = M * N * K >= (int64_t)1 << 18;
  if (threads <= 1 || !big || omp_in_parallel()) {
    call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const bool split_rows = M >= N || M >= 64 * threads;
  const int64_t extent = split_rows ? M : N;
  const int parts = (int)std::min<int64_t>(threads, std::max<int64_t>(1, extent / 16));
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int p = 0; p < parts; ++p) {
    int64_t lo = extent * p / parts, hi = extent * (p + 1) / parts;
    if (hi <= lo) continue;
    if (split_rows) {
      const T* Ap = ta ? A + lo : A + lo * lda;
      call(ta, tb, hi - lo, N, K, alpha, Ap, lda, B, ldb, beta, C + lo * ldc, ldc);
    } else {
      const T* Bp = tb ? B + lo * ldb : B + lo;
      call(ta, tb, M, hi - lo, K, alpha, A, lda, Bp, ldb, beta, C + lo, ldc);
    }
  }
}

}  // namespace

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void set_blas_threads(int n) { openblas_set_num_threads(n); }
const char* backend_name() { return "OpenBLAS"; }

}  // namespace peft::blas
