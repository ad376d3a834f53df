// The one file that talks to a BLAS library: GEMM calls, counted. The library is chosen at
// configure time: -DPEFT_BLAS=onednn (default: oneDNN's matmul for float32, which parallelises
// over the process's OpenMP team itself; OpenBLAS for float64), openblas (split across the team
// here, the library single-threaded) or reference (the plain loops); CMake defines
// PEFT_BLAS_ONEDNN / PEFT_BLAS_REFERENCE for this file only. No other file includes a BLAS or
// oneDNN header, so switching needs no other change.
#include "core/blas.h"

#if defined(PEFT_BLAS_ONEDNN)
#include <cblas.h>  // float64 (gradcheck) stays on OpenBLAS: oneDNN's matmul has no f64
#include <oneapi/dnnl/dnnl.hpp>
#elif !defined(PEFT_BLAS_REFERENCE)
#include <cblas.h>
#endif
#include <omp.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/bf16.h"
#include "core/counters.h"
#include "core/error.h"
#include "core/threads.h"

namespace peft::blas {

namespace {

std::atomic<Precision> g_precision{Precision::f32};

#if defined(PEFT_BLAS_REFERENCE)

// The plain loops of blas.h: slow, but what every other backend is tested against.
template <class T>
void call(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc) {
  gemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#else  // OpenBLAS, and oneDNN's float64 path

[[maybe_unused]] void call(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
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

#if defined(PEFT_BLAS_ONEDNN)

// oneDNN matmul, for the bf16 GEMMs (float32 runs dnnl_sgemm, below): the operands' strides describe row-major or transposed storage, so no copy is
// made; alpha is an output scale and beta a sum post-op. A primitive is created once per shape
// (creation costs far more than a small GEMM) and kept in a per-thread cache, so threads never
// wait on each other; primitives are immutable, so the cache needs no lock.
struct MatmulKey {
  bool ta, tb, bf16;  // bf16: A and B are packed bfloat16 copies (lda, ldb their packed strides)
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
  bool operator==(const MatmulKey& o) const { return std::memcmp(this, &o, sizeof(MatmulKey)) == 0; }
};
// FNV-1a over a key's bytes (the keys have no padding, so equal keys hash alike).
template <class Key>
struct BytesHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ULL;
    const auto* b = reinterpret_cast<const unsigned char*>(&k);
    for (size_t i = 0; i < sizeof(Key); ++i) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
  }
};

struct Matmul {
  dnnl::memory::desc a, b, c;
  dnnl::matmul prim;
  std::string impl;
};

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// The primitive for m's descriptors: C = alpha A B + beta C (alpha an output scale, beta a sum
// post-op), and the name of the kernel oneDNN chose.
void build_primitive(Matmul& m, float alpha, float beta) {
  dnnl::primitive_attr attr;
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (beta != 0.0f) {
    dnnl::post_ops po;
    po.append_sum(beta);
    attr.set_post_ops(po);
  }
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(m.a, m.b, m.c), attr, engine());
  m.impl = pd.impl_info_str();
  m.prim = dnnl::matmul(pd);
}

const Matmul& matmul_for(const MatmulKey& k) {
  thread_local std::unordered_map<MatmulKey, Matmul, BytesHash<MatmulKey>> cache;
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  Matmul m;
  const dt in = k.bf16 ? dt::bf16 : dt::f32;
  m.a = dnnl::memory::desc(dims{k.M, k.K}, in, k.ta ? dims{1, k.lda} : dims{k.lda, 1});
  m.b = dnnl::memory::desc(dims{k.K, k.N}, in, k.tb ? dims{1, k.ldb} : dims{k.ldb, 1});
  m.c = dnnl::memory::desc(dims{k.M, k.N}, dt::f32, dims{k.ldc, 1});
  build_primitive(m, k.alpha, k.beta);
  // Keep the cache bounded for programs that see many shapes (sweeps of sizes).
  if (cache.size() >= 4096) cache.clear();
  return cache.emplace(k, std::move(m)).first->second;
}

// float32 -> bfloat16 (core/bf16.h: round to nearest even, NaN stays NaN, AVX-512/AVX2 code
// where the CPU has it): rows x cols at row stride ld into a packed buffer. Large operands are
// converted by the OpenMP team.
void to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, std::vector<uint16_t>& dst) {
  dst.resize(static_cast<size_t>(rows * cols));
  uint16_t* d = dst.data();
  if (ld == cols) {  // one contiguous block: split it evenly, whatever the row length
    const int64_t n = rows * cols;
    const bool par = n >= (int64_t{1} << 16) && !omp_in_parallel();
    const int64_t chunk = 1 << 14;
#pragma omp parallel for if (par) schedule(static)
    for (int64_t i = 0; i < n; i += chunk) bf16::to_bf16(src + i, std::min(chunk, n - i), d + i);
    return;
  }
  const bool par = rows * cols >= (int64_t{1} << 16) && !omp_in_parallel();
#pragma omp parallel for if (par) schedule(static)
  for (int64_t r = 0; r < rows; ++r) bf16::to_bf16(src + r * ld, cols, d + r * cols);
}

constexpr int64_t kBf16MinWork = int64_t{1} << 20;

void onednn_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const uint16_t* b_bf16) {
  if (K == 0) {  // oneDNN rejects an empty reduction; C = beta * C
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  // Small products (attention's per-head GEMMs at short sequences) gain nothing from bf16
  // kernels: the rounding passes would cost more than the multiply saves.
  // B == nullptr: B exists only in bfloat16 (a frozen weight stored so, nn/bf16_storage.h), so
  // the bf16 kernel runs whatever the size or the precision setting.
  if ((!B && b_bf16) ||
      (g_precision.load(std::memory_order_relaxed) == Precision::bf16 && M * N * K >= kBf16MinWork)) {
    // Round A and B to bfloat16 into per-thread buffers, packed in their stored orientation (a
    // transposed operand stays transposed, so no transpose is done here).
    // A B already rounded once (a cached weight, b_bf16) is read in place with its own ldb.
    thread_local dnnl::stream stream(engine());
    thread_local std::vector<uint16_t> pa, pb;
    const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
    to_bf16(A, a_rows, a_cols, lda, pa);
    if (!b_bf16) to_bf16(B, b_rows, b_cols, ldb, pb);
    const uint16_t* bp = b_bf16 ? b_bf16 : pb.data();
    const int64_t bld = b_bf16 ? ldb : b_cols;
    const Matmul& m = matmul_for(MatmulKey{ta, tb, true, M, N, K, a_cols, bld, ldc, alpha, beta});
    dnnl::memory a(m.a, engine(), pa.data()), b(m.b, engine(), const_cast<uint16_t*>(bp)), c(m.c, engine(), C);
    m.prim.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream.wait();
    return;
  }
  // float32: oneDNN's sgemm (row-major, BLAS arguments; its gemm:jit kernels), not the matmul
  // primitive. Measured on the ViT GEMMs (docs/performance.md, "Session 10"): equal or faster on
  // every shape, and 2.2x on the two with a row-major B of 3072 columns (fc2's dX and dW at
  // ViT-B), where matmul's brgemm kernel ran at 120-180 GFLOP/s on 2 cores.
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (st != dnnl_success)
    throw ValueError(fmt::format("gemm: oneDNN sgemm refused M={} N={} K={} lda={} ldb={} ldc={} (status {})", M, N,
                                 K, lda, ldb, ldc, static_cast<int>(st)));
}

// Batched bf16 matmul: 3-d descriptors {batch, rows, cols} whose strides carry the batch step
// and the transposes, so the operands are read where they lie. Keyed like MatmulKey (all int64,
// no padding, so the bytes compare), one cache per thread.
struct BatchKey {
  int64_t batch, ta, tb, M, N, K, lda, sa, ldb, sb, ldc, sc;
  float alpha, beta;
  bool operator==(const BatchKey& o) const { return std::memcmp(this, &o, sizeof(BatchKey)) == 0; }
};

const Matmul& batched_for(const BatchKey& k) {
  thread_local std::unordered_map<BatchKey, Matmul, BytesHash<BatchKey>> cache;
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  Matmul m;
  m.a = dnnl::memory::desc(dims{k.batch, k.M, k.K}, dt::bf16, k.ta ? dims{k.sa, 1, k.lda} : dims{k.sa, k.lda, 1});
  m.b = dnnl::memory::desc(dims{k.batch, k.K, k.N}, dt::bf16, k.tb ? dims{k.sb, 1, k.ldb} : dims{k.sb, k.ldb, 1});
  m.c = dnnl::memory::desc(dims{k.batch, k.M, k.N}, dt::f32, dims{k.sc, k.ldc, 1});
  build_primitive(m, k.alpha, k.beta);
  if (cache.size() >= 1024) cache.clear();
  return cache.emplace(k, std::move(m)).first->second;
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

bool bf16_supported() {
#if defined(PEFT_BLAS_ONEDNN)
  return true;
#else
  return false;
#endif
}

void set_precision(Precision p) {
  if (p == Precision::bf16 && !bf16_supported())
    throw ValueError(fmt::format("--precision bf16 needs the oneDNN GEMM backend; this build uses {} "
                                 "(configure with -DPEFT_BLAS=onednn)",
                                 backend_name()));
  g_precision.store(p);
}

Precision precision() { return g_precision.load(); }

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "f32"; }

int64_t bf16_min_work() {
#if defined(PEFT_BLAS_ONEDNN)
  return kBf16MinWork;
#else
  return 0;
#endif
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const uint16_t* b_bf16) {
#if defined(PEFT_BLAS_ONEDNN)
  // oneDNN splits the work over the process's OpenMP team itself (inside a parallel region,
  // e.g. attention's per-head loop, it runs on the calling thread).
  auto& c = counters();
  c.gemm_calls += 1;
  c.gemm_flops += 2 * M * N * K;
  if (M == 0 || N == 0) return;
  onednn_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, b_bf16);
#else
  // No bf16 path in this build: B itself is multiplied (a bf16-only B cannot arise here, since
  // nothing stores weights in bf16 without bf16_supported()).
  if (!B && b_bf16) throw ValueError("gemm: B exists only in bfloat16 and this build has no bf16 GEMM");
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

void gemm_batched_bf16_reference(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                                 const uint16_t* A, int64_t lda, int64_t sa, const uint16_t* B, int64_t ldb,
                                 int64_t sb, float beta, float* C, int64_t ldc, int64_t sc) {
  for (int64_t p = 0; p < batch; ++p) {
    const uint16_t *Ap = A + p * sa, *Bp = B + p * sb;
    float* Cp = C + p * sc;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float acc = 0;
        for (int64_t k = 0; k < K; ++k)
          acc += bf16::to_float(ta ? Ap[k * lda + i] : Ap[i * lda + k]) *
                 bf16::to_float(tb ? Bp[j * ldb + k] : Bp[k * ldb + j]);
        Cp[i * ldc + j] = alpha * acc + (beta == 0.0f ? 0.0f : beta * Cp[i * ldc + j]);
      }
  }
}

void gemm_batched_bf16(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, int64_t sa, const uint16_t* B, int64_t ldb, int64_t sb,
                       float beta, float* C, int64_t ldc, int64_t sc) {
  auto& c = counters();
  c.gemm_calls += 1;
  c.gemm_flops += 2 * batch * M * N * K;
  if (batch == 0 || M == 0 || N == 0) return;
#if defined(PEFT_BLAS_ONEDNN)
  if (K == 0) {  // oneDNN rejects an empty reduction; C = beta * C
    gemm_batched_bf16_reference(batch, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc);
    return;
  }
  thread_local dnnl::stream stream(engine());
  const Matmul& m = batched_for(BatchKey{batch, ta, tb, M, N, K, lda, sa, ldb, sb, ldc, sc, alpha, beta});
  dnnl::memory a(m.a, engine(), const_cast<uint16_t*>(A)), b(m.b, engine(), const_cast<uint16_t*>(B)),
      cm(m.c, engine(), C);
  m.prim.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, cm}});
  stream.wait();
#else
  (void)A, (void)lda, (void)sa, (void)B, (void)ldb, (void)sb, (void)beta, (void)C, (void)ldc, (void)sc, (void)alpha,
      (void)ta, (void)tb, (void)K;
  throw ValueError(fmt::format("gemm_batched_bf16 (--precision bf16) needs the oneDNN GEMM backend; this build uses {} "
                               "(configure with -DPEFT_BLAS=onednn)",
                               backend_name()));
#endif
}
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#if defined(PEFT_BLAS_REFERENCE)

void set_blas_threads(int) {}

const char* backend_name() { return "reference loops (blas.h gemm_reference)"; }

#elif defined(PEFT_BLAS_ONEDNN)

void set_blas_threads(int n) { openblas_set_num_threads(n); }  // the float64 path

const char* backend_name() {
  // e.g. "oneDNN 2.6.3 (sgemm gemm:jit avx512_core) + OpenBLAS (Haswell) for f64": the kernel oneDNN picked
  // for a ViT-sized f32 matmul on this CPU; with --precision bf16, the bf16 kernel as well, e.g.
  // "oneDNN 2.6.3 (sgemm gemm:jit avx512_core; bf16 brg:avx512_core_amx_bf16) + ...".
  // float32 runs dnnl_sgemm, whose kernels are the matmul primitive's gemm:jit family: named by
  // the widest ISA oneDNN uses on this CPU.
  static const std::string f32_name = [] {
    switch (dnnl::get_effective_cpu_isa()) {
      case dnnl::cpu_isa::avx2: return std::string("sgemm gemm:jit avx2");
      case dnnl::cpu_isa::avx2_vnni: return std::string("sgemm gemm:jit avx2");
      case dnnl::cpu_isa::avx512_core:
      case dnnl::cpu_isa::avx512_core_vnni:
      case dnnl::cpu_isa::avx512_core_bf16:
      case dnnl::cpu_isa::avx512_core_amx: return std::string("sgemm gemm:jit avx512_core");
      default: return std::string("sgemm gemm:jit");
    }
  }();
  static const std::string bf16_name = []() -> std::string {
    const MatmulKey k{false, true, true, 256, 768, 768, 768, 768, 768, 1.0f, 0.0f};
    try {
      return matmul_for(k).impl;
    } catch (const dnnl::error&) {  // a CPU without a bf16 matmul (no AVX-512)
      return "none on this CPU";
    }
  }();
  static const auto make = [](bool bf16) {
    const dnnl_version_t* v = dnnl_version();
    return std::string("oneDNN ") + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch) + " (" + f32_name + (bf16 ? "; bf16 " + bf16_name : std::string()) +
           ") + OpenBLAS (" + openblas_get_corename() + ") for f64";
  };
  static const std::string name_f32 = make(false), name_bf16 = make(true);
  return precision() == Precision::bf16 ? name_bf16.c_str() : name_f32.c_str();
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
