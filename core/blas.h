// GEMM entry point: the only place that talks to a BLAS library (-DPEFT_BLAS=onednn (default:
// oneDNN's sgemm for float32, its bf16 matmul for --precision bf16, OpenBLAS for float64), openblas, or reference (the plain loops
// below); core/blas.cpp is the only file that includes a BLAS or oneDNN header).
#pragma once
#include <cstdint>

namespace peft::blas {

// Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, with op = transpose when the
// flag is set (A is then stored [K,M], B [N,K]). Leading dimensions are row strides in elements.
// Counts one call and 2*M*N*K FLOPs in counters(); splits large problems across the OpenMP team.
// b_bf16, when given, is B already rounded to bfloat16 (core/bf16.h bits, same layout and ldb):
// a weight rounded once (core/bf16_weights.h) instead of on every call. It is read only when the
// bf16 path runs (precision() == bf16 and a product large enough), where the result is the same,
// bit for bit, as rounding B here; otherwise B itself is multiplied. B may be null when b_bf16 is
// given (a weight stored only in bfloat16, nn/bf16_storage.h): the bf16 path then always runs
// (oneDNN builds; others throw ValueError).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
          const uint16_t* b_bf16 = nullptr);
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// The plain triple loop with the same contract: what tests compare the BLAS path against, and
// what a lab reads first.
template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                    int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        T a = trans_a ? A[k * lda + i] : A[i * lda + k];
        T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      C[i * ldc + j] = alpha * acc + (beta == T(0) ? T(0) : beta * C[i * ldc + j]);
    }
}

// GEMM input precision for float32 GEMMs (float64 GEMMs are never reduced):
//   f32   the default, exact to every PyTorch reference;
//   bf16  A and B are rounded to bfloat16 (round to nearest even) and multiplied with float32
//         accumulation and a float32 result, like PyTorch's CPU autocast for matmul/linear. Needs
//         the oneDNN backend (it uses AVX512_BF16 / AMX kernels where the CPU has them). Products
//         below 2^20 multiply-adds (short attention heads) stay float32: the rounding passes
//         would cost more than the faster multiply saves.
// Process-wide; set once by the command line (--precision) before any work.
enum class Precision { f32, bf16 };
void set_precision(Precision p);  // ValueError when bf16 is asked of a backend without it
Precision precision();
bool bf16_supported();            // this build's backend can run bf16 GEMMs
const char* precision_name(Precision p);  // "f32" | "bf16"

// Batched GEMM on bfloat16 operands (bits as core/bf16.h writes them) with float32 accumulation
// and a float32 result, one oneDNN batched matmul for all `batch` problems (attention's QK^T and
// PV over every head under --precision bf16, like PyTorch's bf16 bmm): for b < batch,
//   C_b = alpha * op(A_b) op(B_b) + beta * C_b,  X_b = X + b * stride_x (elements).
// Needs bf16_supported() (ValueError otherwise). Counts one call and 2*batch*M*N*K FLOPs.
void gemm_batched_bf16(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb,
                       int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c);
// Its plain loops (float32 products of the exact bf16 values, float32 accumulation): what the
// tests compare the oneDNN path against.
void gemm_batched_bf16_reference(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                 float alpha, const uint16_t* A, int64_t lda, int64_t stride_a,
                                 const uint16_t* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                                 int64_t ldc, int64_t stride_c);

// The size from which a float32 GEMM runs in bf16 under --precision bf16 (M*N*K multiply-adds).
int64_t bf16_min_work();

// Keeps the BLAS library single-threaded (the thread policy of core/threads.h).
void set_blas_threads(int n);
// The library this build calls and the kernel set it picked for this CPU, e.g.
// "oneDNN 2.6.3 (sgemm gemm:jit avx512_core) + OpenBLAS (SkylakeX) for f64" or "OpenBLAS (Cooperlake)";
// under --precision bf16 the bf16 kernel too ("oneDNN 2.6.3 (sgemm gemm:jit avx512_core; bf16
// brg:avx512_core_amx_bf16) + ..."); starts with "oneDNN", "OpenBLAS" or "reference".
const char* backend_name();

}  // namespace peft::blas
