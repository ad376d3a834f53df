// The one file that talks to a BLAS library: GEMM calls, counted, and split across the OpenMP
// team (the library itself stays single-threaded). The library is chosen at configure time:
// -DPEFT_BLAS=openblas (default) or -DPEFT_BLAS=blis, which defines PEFT_BLAS_BLIS for this file
// only. No other file includes a BLAS header, so switching needs no other change.
#include "core/blas.h"

#if defined(PEFT_BLAS_BLIS)
#include <blis.h>
#else
#include <cblas.h>
#endif
#include <omp.h>

#include <algorithm>
#include <string>

#include "core/counters.h"
#include "core/threads.h"

namespace peft::blas {

namespace {

#if defined(PEFT_BLAS_BLIS)

// BLIS's typed API takes a row and a column stride per operand, so row-major storage is passed
// as it is (row stride = leading dimension, column stride = 1), with no layout flag to flip.
// BLIS 0.9 declares the inputs non-const although it only reads them, hence the const_casts.
trans_t trans(bool t) { return t ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE; }

void call(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  bli_sgemm(trans(ta), trans(tb), M, N, K, &alpha, const_cast<float*>(A), lda, 1, const_cast<float*>(B), ldb, 1,
            &beta, C, ldc, 1);
}
void call(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  bli_dgemm(trans(ta), trans(tb), M, N, K, &alpha, const_cast<double*>(A), lda, 1, const_cast<double*>(B), ldb, 1,
            &beta, C, ldc, 1);
}

#else

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

#endif

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

#if defined(PEFT_BLAS_BLIS)

// BLIS's OpenMP build would otherwise size its own team from BLIS_NUM_THREADS / OMP_NUM_THREADS;
// a global count of 1 keeps every call on the calling thread, whatever the environment says.
void set_blas_threads(int n) { bli_thread_set_num_threads(n); }

const char* backend_name() {
  // e.g. "BLIS 0.9.0 (zen3)": the kernel set BLIS picked for this CPU at run time.
  static const std::string name =
      std::string("BLIS ") + bli_info_get_version_str() + " (" + bli_arch_string(bli_arch_query_id()) + ")";
  return name.c_str();
}

#else

void set_blas_threads(int n) { openblas_set_num_threads(n); }

const char* backend_name() {
  // e.g. "OpenBLAS (Cooperlake)": the kernel set OpenBLAS's DYNAMIC_ARCH picked for this CPU.
  static const std::string name = std::string("OpenBLAS (") + openblas_get_corename() + ")";
  return name.c_str();
}

#endif

}  // namespace peft::blas
