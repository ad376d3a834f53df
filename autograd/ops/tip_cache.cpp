// tip_cache_logits: affinity GEMM, then exp and the sum by label in one pass; backward reads W.
#include "autograd/ops/tip_cache.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "autograd/node.h"
#include "core/error.h"
#include "core/kernels/fast_math.h"
#include "core/kernels/gemm_view.h"
#include "core/threads.h"

namespace peft {

namespace {
// A pass costs < 1 ns per element; waking the team costs tens of microseconds, which a
// clip-micro step (32 x 1024 affinities) would pay twice per step at T = 2 for no gain.
constexpr int64_t kTipParallelGrain = int64_t{1} << 18;

using kernels::contiguous_raw;
using kernels::rows_of;

// w[i] = exp(-(beta - beta * w[i])) in place: float through kernels::exp_full (the exp op's
// kernel, so the fused and composed forms agree), float64 through libm (gradcheck's precision).
// Separate from the label sum below so that this loop vectorises (AVX clones for float).
__attribute__((target_clones("avx512f", "avx2", "default"))) void exp_affinity(float* w, int64_t n, float beta) {
  for (int64_t i = 0; i < n; ++i) w[i] = kernels::exp_full(-(beta - beta * w[i]));
}
void exp_affinity(double* w, int64_t n, double beta) {
  for (int64_t i = 0; i < n; ++i) w[i] = std::exp(-(beta - beta * w[i]));
}

// Forward, after A = f keys^T is in w: w = exp(...) and out[b, y_n] += w[b, n]. Rows are
// independent, so the team splits them. (Measured: this scalar sum beats a class-sorted sum with
// AVX-512 gathers, 7.3 vs 7.9 ms per clip-micro epoch.)
template <class T>
void cache_logits_rows(T* w, T* out, T* scratch, const int32_t* y, int64_t B, int64_t NK, int64_t K, T beta) {
#pragma omp parallel for if (B * NK > kTipParallelGrain)
  for (int64_t b = 0; b < B; ++b) {
    T* wr = w + b * NK;
    exp_affinity(wr, NK, beta);
    // Two interleaved partial sums: consecutive keys of one class would otherwise wait on each
    // other's store (the odd keys go into this thread's scratch row).
    T* orow = out + b * K;
    T* odd = scratch + static_cast<int64_t>(omp_get_thread_num()) * K;
    for (int64_t k = 0; k < K; ++k) orow[k] = odd[k] = T(0);
    int64_t n = 0;
    for (; n + 1 < NK; n += 2) {
      orow[y[n]] += wr[n];
      odd[y[n + 1]] += wr[n + 1];
    }
    if (n < NK) orow[y[n]] += wr[n];
    for (int64_t k = 0; k < K; ++k) orow[k] += odd[k];
  }
}

// Backward: dA[b, n] = d out[b, y_n] * dW/dA = g[b, y_n] * beta * W[b, n]. One row; the read of
// g is a gather from K values in L1 (vectorised with AVX2/AVX-512 gathers in the clones).
template <class T>
__attribute__((always_inline)) inline void affinity_grad_row(const T* gr, const T* wr, T* dr, const int32_t* y,
                                                              int64_t NK, T beta) {
  for (int64_t n = 0; n < NK; ++n) dr[n] = gr[y[n]] * beta * wr[n];
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void affinity_grad_row_f32(
    const float* gr, const float* wr, float* dr, const int32_t* y, int64_t NK, float beta) {
  affinity_grad_row(gr, wr, dr, y, NK, beta);
}
void grad_row(const float* gr, const float* wr, float* dr, const int32_t* y, int64_t NK, float beta) {
  affinity_grad_row_f32(gr, wr, dr, y, NK, beta);
}
void grad_row(const double* gr, const double* wr, double* dr, const int32_t* y, int64_t NK, double beta) {
  affinity_grad_row(gr, wr, dr, y, NK, beta);
}

template <class T>
void affinity_grad_rows(const T* g, const T* w, T* dA, const int32_t* y, int64_t B, int64_t NK, int64_t K, T beta) {
#pragma omp parallel for if (B * NK > kTipParallelGrain)
  for (int64_t b = 0; b < B; ++b) grad_row(g + b * K, w + b * NK, dA + b * NK, y, NK, beta);
}
}  // namespace

Tensor tip_cache_logits(const Tensor& f, const Tensor& keys, const Tensor& labels, int64_t K, double beta) {
  if (!f.defined() || !keys.defined() || !labels.defined() || f.dim() != 2 || keys.dim() != 2 ||
      keys.size(1) != f.size(1) || labels.dim() != 1 || labels.size(0) != keys.size(0))
    throw ShapeError(fmt::format("tip_cache_logits: features {}, keys {}, labels {} (expected f [B, E], keys [NK, E], "
                                 "labels [NK])",
                                 f.defined() ? shape_str(f.sizes()) : "undefined",
                                 keys.defined() ? shape_str(keys.sizes()) : "undefined",
                                 labels.defined() ? shape_str(labels.sizes()) : "undefined"));
  if (!is_floating(f.dtype()) || keys.dtype() != f.dtype() || labels.dtype() != DType::i64)
    throw DTypeError(fmt::format("tip_cache_logits: dtypes f {}, keys {}, labels {} (expected f and keys of one float "
                                 "dtype, labels int64)",
                                 dtype_name(f.dtype()), dtype_name(keys.dtype()), dtype_name(labels.dtype())));
  const int64_t B = f.size(0), E = f.size(1), NK = keys.size(0);
  if (E == 0 || K <= 0)
    throw ShapeError(fmt::format("tip_cache_logits: E = {}, K = {} (expected both >= 1)", E, K));
  Tensor yc = contiguous_raw(labels);
  const int64_t* y64 = yc.data<int64_t>();
  std::vector<int32_t> y(static_cast<size_t>(NK));  // 32-bit indices gather twice as wide
  for (int64_t n = 0; n < NK; ++n) {
    if (y64[n] < 0 || y64[n] >= K)
      throw ValueError(fmt::format("tip_cache_logits: labels[{}] = {} is outside [0, {})", n, y64[n], K));
    y[static_cast<size_t>(n)] = static_cast<int32_t>(y64[n]);
  }

  Tensor fc = contiguous_raw(f), kc = contiguous_raw(keys);
  Tensor w = empty_uninitialized({B, NK}, f.dtype());  // A, then W in place
  Tensor out = empty_uninitialized({B, K}, f.dtype());
  dispatch_float(f.dtype(), "tip_cache_logits", [&](auto tag) {
    using T = decltype(tag);
    kernels::gemm(rows_of<T>(fc, B, E), rows_of<T>(kc, NK, E).t(), w.data<T>(), NK);  // A = f keys^T
    std::vector<T> scratch(static_cast<size_t>(K * std::max(1, omp_get_max_threads())));  // per thread
    cache_logits_rows<T>(w.data<T>(), out.data<T>(), scratch.data(), y.data(), B, NK, K, T(beta));
  });

  autograd::Recorder rec("tip_cache_logits", {f, keys, labels});
  if (!rec) return out;
  const bool nf = rec.needs(0), nk = rec.needs(1);
  Tensor fs = nk ? fc : Tensor(), ks = nf ? kc : Tensor();
  rec.save({w, fs, ks, yc});
  rec.finish(out, [=](const Tensor& g0) -> std::vector<Tensor> {
    Tensor g = contiguous_raw(g0);  // [B, K]
    Tensor gf, gk;
    dispatch_float(g.dtype(), "tip_cache_logits backward", [&](auto tag) {
      using T = decltype(tag);
      Tensor dA = empty_uninitialized({B, NK}, g.dtype());
      affinity_grad_rows<T>(g.data<T>(), w.data<T>(), dA.data<T>(), y.data(), B, NK, K, T(beta));
      auto DA = rows_of<T>(dA, B, NK);
      if (nk) {  // d keys [NK, E] = dA^T f
        gk = empty_uninitialized({NK, E}, g.dtype());
        kernels::gemm(DA.t(), rows_of<T>(fs, B, E), gk.data<T>(), E);
      }
      if (nf) {  // d f [B, E] = dA keys
        gf = empty_uninitialized({B, E}, g.dtype());
        kernels::gemm(DA, rows_of<T>(ks, NK, E), gf.data<T>(), E);
      }
    });
    return {gf, gk, Tensor()};
  });
  return out;
}

}  // namespace peft
