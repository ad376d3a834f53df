// Fused scaled dot-product attention: per (batch, head) two GEMMs and a row softmax; saves q, k, v
// (not the probabilities: backward recomputes them head by head).
#include "autograd/ops/attention.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include <omp.h>

#include "autograd/node.h"
#include "autograd/ops/reduce.h"
#include "core/bf16.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/kernels/gemm_view.h"
#include "core/kernels/softmax.h"
#include "core/kernels/map.h"
#include "core/threads.h"

namespace peft {

namespace {

// Shapes of one attention call, read once at the op boundary.
struct Dims {
  int64_t B, H, Tq, Tk, hd, dv;
  double scale;
};

// The head matrices of x [B, H, R, C] are read in place when its last two dims form a BLAS
// matrix (unit stride on one of them, e.g. head views of a fused qkv projection); otherwise
// one contiguous copy is made here, before any parallel region.
Tensor blas_ready(const Tensor& x) {
  const int64_t sr = x.strides()[2], sc = x.strides()[3], R = x.size(2), C = x.size(3);
  const bool rows_ok = (sc == 1 || C == 1) && (sr >= std::max<int64_t>(C, 1) || R == 1);
  const bool cols_ok = (sr == 1 || R == 1) && (sc >= std::max<int64_t>(R, 1) || C == 1);
  return rows_ok || cols_ok ? x : x.clone();
}

// The (b, h) head matrix of x as a BLAS view (x already passed blas_ready).
template <class T>
kernels::MatView<T> head(const Tensor& x, int64_t b, int64_t h) {
  kernels::MatView<T> v{};
  kernels::mat_view(x, x.offset() + b * x.strides()[0] + h * x.strides()[1], v);
  return v;
}

Dims check_args(const char* op, const Tensor& q, const Tensor& k, const Tensor* v, const Tensor& mask,
                double scale) {
  if (!q.defined() || !k.defined() || (v && !v->defined()))
    throw ValueError(fmt::format("{}: undefined q, k or v. Hint: pass [B, H, T, hd] tensors", op));
  const Tensor& vv = v ? *v : k;
  if (q.dim() != 4 || k.dim() != 4 || vv.dim() != 4)
    throw ShapeError(fmt::format("{}: q, k, v must be 4-d [B, H, T, hd] (got q {}, k {}, v {}). "
                                 "Hint: split heads with reshape + permute",
                                 op, shape_str(q.sizes()), shape_str(k.sizes()), shape_str(vv.sizes())));
  if (q.size(0) != k.size(0) || q.size(1) != k.size(1) || q.size(3) != k.size(3) || vv.size(0) != k.size(0) ||
      vv.size(1) != k.size(1) || vv.size(2) != k.size(2))
    throw ShapeError(fmt::format("{}: shapes do not match (got q {}, k {}, v {}, expected q [B, H, Tq, hd], "
                                 "k [B, H, Tk, hd], v [B, H, Tk, dv])",
                                 op, shape_str(q.sizes()), shape_str(k.sizes()), shape_str(vv.sizes())));
  if (k.size(2) == 0 || q.size(3) == 0)
    throw ShapeError(fmt::format("{}: empty keys or head dim (got q {}, k {}). Hint: Tk and hd must be >= 1", op,
                                 shape_str(q.sizes()), shape_str(k.sizes())));
  if (q.dtype() != k.dtype() || q.dtype() != vv.dtype() || (mask.defined() && mask.dtype() != q.dtype()))
    throw DTypeError(fmt::format("{}: dtypes differ (q {}, k {}, v {}{}). Hint: convert with .to()", op,
                                 dtype_name(q.dtype()), dtype_name(k.dtype()), dtype_name(vv.dtype()),
                                 mask.defined() ? fmt::format(", mask {}", dtype_name(mask.dtype())) : ""));
  Dims d{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3), vv.size(3), scale};
  if (mask.defined()) {
    Shape full{d.B, d.H, d.Tq, d.Tk};
    bool ok = mask.dim() <= 4;
    for (int64_t i = 1; ok && i <= mask.dim(); ++i) {
      const int64_t m = mask.size(-i);
      ok = m == 1 || m == full[4 - i];
    }
    if (!ok)
      throw ShapeError(fmt::format("{}: mask {} does not broadcast to scores {} (q {}, k {}). "
                                   "Hint: use [Tq, Tk] or [B, 1, Tq, Tk]",
                                   op, shape_str(mask.sizes()), shape_str(full), shape_str(q.sizes()),
                                   shape_str(k.sizes())));
  }
  if (!(scale > 0)) d.scale = 1.0 / std::sqrt(static_cast<double>(d.hd));
  return d;
}

// Runs body(b, h, scratch) for every head, across the OpenMP team when there is enough work.
// Inside the team blas::gemm sees omp_in_parallel() and stays single-threaded; with one head it
// splits itself. `scratch` is the calling thread's own block of `scratch_per_thread` elements in
// `pool` (sized here for the team), so each head's [Tq, Tk] scores live in cache-sized buffers
// that are reused head after head instead of a [B, H, Tq, Tk] tensor.
template <class T, class F>
void for_each_head(const Dims& d, std::vector<T>& pool, int64_t scratch_per_thread, F body) {
  const int64_t BH = d.B * d.H;
  const bool par = BH > 1 && BH * d.Tq * d.Tk * (d.hd + d.dv) > kParallelGrain;
  const int team = par ? std::max(1, omp_get_max_threads()) : 1;
  pool.resize(static_cast<size_t>(team * scratch_per_thread));
#pragma omp parallel for schedule(static) if (par)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int t = par ? omp_get_thread_num() : 0;
    body(bh / d.H, bh % d.H, scratch_per_thread > 0 ? pool.data() + t * scratch_per_thread : nullptr);
  }
}

// The additive mask as read by every head (broadcast strides), or nothing.
template <class T>
struct MaskView {
  const T* base = nullptr;
  Shape strides = Shape(4, 0);
  MaskView(const Tensor& mask, const Dims& d) {
    if (!mask.defined()) return;
    base = static_cast<const T*>(mask.impl()->storage->data) + mask.offset();
    strides = kernels::broadcast_strides(mask, {d.B, d.H, d.Tq, d.Tk});
  }
};

// S [Tq, Tk] = softmax(q_h k_h^T * scale + mask) for head (b, h), written to S. A row whose
// scores are all -inf (every key masked) gets zeros instead of 0/0 = NaN, so it contributes
// nothing downstream. Forward and backward call this same code, so the probabilities that
// backward recomputes are the ones forward used.
template <class T>
void head_probs(const Dims& d, const Tensor& q, const Tensor& k, const MaskView<T>& mask, int64_t b, int64_t h,
                T* S) {
  kernels::gemm(head<T>(q, b, h), head<T>(k, b, h).t(), S, d.Tk, static_cast<T>(d.scale));
  for (int64_t i = 0; i < d.Tq; ++i) {
    T* row = S + i * d.Tk;
    if (mask.base) {
      const Shape& ms = mask.strides;
      const T* m = mask.base + b * ms[0] + h * ms[1] + i * ms[2];
      for (int64_t j = 0; j < d.Tk; ++j) row[j] += m[j * ms[3]];
    }
    kernels::softmax_row_inplace(row, d.Tk);  // max-subtracted; an all -inf row gives zeros
  }
}

// Saved for backward: q, k, v, and the probabilities P [B, H, Tq, Tk] only while P is small.
// P costs Tq*Tk per head against Tq*hd + Tk*(hd + dv) for q, k, v; once it would add more than
// half of that (self-attention: T > 1.5 hd, e.g. ViT-B/16's 197 tokens at hd 64: 15 MB per
// block, 180 MB per batch of 8), backward recomputes each head's P from q and k instead, the way
// flash attention does: one more Tq x Tk x hd GEMM and a row softmax per head, in a cache-sized
// per-thread scratch block. Short sequences (the tiny bench's 65 tokens, CLIP text, CVPT's
// prompt keys) keep P and skip the recomputation.
bool saves_probs(const Dims& d) { return 2 * d.Tq * d.Tk <= d.Tq * d.hd + d.Tk * (d.hd + d.dv); }

// ---- --precision bf16: every head in one batched bfloat16 GEMM ----
// Under bf16 the two products (and the backward's four) run as one oneDNN batched matmul over
// all B*H heads with bfloat16 inputs and float32 accumulation (blas::gemm_batched_bf16), like
// PyTorch's autocast bmm; the scores, the mask, the softmax and its backward stay float32 (as
// autocast keeps softmax in float32). q, k, v are rounded once into packed [B*H, T, hd] copies
// that backward reuses (they replace the float32 q, k, v in the saved state, so the qkv
// projection's output need not be kept). The float32 per-head path above is the reference the
// tests compare this one against.
using Bf16Buf = std::shared_ptr<std::vector<uint16_t>>;

bool runs_bf16(const Tensor& q) {
  return q.dtype() == DType::f32 && blas::precision() == blas::Precision::bf16 && blas::bf16_supported();
}

// x [B, H, R, C] (float32, any strides) rounded into a packed [B*H, R, C] bfloat16 buffer.
Bf16Buf pack_heads(const Tensor& x) {
  const int64_t B = x.size(0), H = x.size(1), R = x.size(2), C = x.size(3);
  auto out = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(B * H * R * C));
  if (x.is_contiguous()) {
    bf16::to_bf16_parallel(x.data<float>(), x.numel(), out->data());
    return out;
  }
  const float* base = static_cast<const float*>(x.impl()->storage->data) + x.offset();
  const Shape& st = x.strides();
  const bool par = B * H * R * C >= (int64_t{1} << 16) && !omp_in_parallel();
#pragma omp parallel for collapse(2) if (par) schedule(static)
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t r = 0; r < R; ++r) {
      const float* src = base + (bh / H) * st[0] + (bh % H) * st[1] + r * st[2];
      uint16_t* dst = out->data() + (bh * R + r) * C;
      if (st[3] == 1) {
        bf16::to_bf16(src, C, dst);
      } else {
        for (int64_t c = 0; c < C; ++c) dst[c] = bf16::round_bits(src[c * st[3]]);
      }
    }
  return out;
}

Bf16Buf round_flat(const float* p, int64_t n) {
  auto out = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(n));
  bf16::to_bf16_parallel(p, n, out->data());
  return out;
}

// S [B*H, Tq, Tk] = softmax(q k^T * scale + mask), float32, from the packed bf16 q and k: one
// batched GEMM, then the mask and the row softmax across the team. Forward and the backward's
// recomputation both call this, so they see the same probabilities.
void probs_bf16(const Dims& d, const uint16_t* qb, const uint16_t* kb, const MaskView<float>& mask, float* S) {
  const int64_t BH = d.B * d.H, TT = d.Tq * d.Tk;
  blas::gemm_batched_bf16(BH, false, true, d.Tq, d.Tk, d.hd, static_cast<float>(d.scale), qb, d.hd, d.Tq * d.hd, kb,
                          d.hd, d.Tk * d.hd, 0.0f, S, d.Tk, TT);
  const bool par = BH * TT > kParallelGrain && !omp_in_parallel();
#pragma omp parallel for if (par) schedule(static)
  for (int64_t row = 0; row < BH * d.Tq; ++row) {
    const int64_t bh = row / d.Tq, i = row % d.Tq;
    float* r = S + row * d.Tk;
    if (mask.base) {
      const Shape& ms = mask.strides;
      const float* m = mask.base + (bh / d.H) * ms[0] + (bh % d.H) * ms[1] + i * ms[2];
      for (int64_t j = 0; j < d.Tk; ++j) r[j] += m[j * ms[3]];
    }
    kernels::softmax_row_inplace(r, d.Tk);
  }
}

Tensor sdpa_bf16(const Dims& d, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& mask,
                 autograd::Recorder& rec) {
  const int64_t BH = d.B * d.H, TT = d.Tq * d.Tk;
  const Bf16Buf qb = pack_heads(q0), kb = pack_heads(k0), vb = pack_heads(v0);
  const bool keep_p = rec && saves_probs(d);
  Tensor P = empty_uninitialized({d.B, d.H, d.Tq, d.Tk}, DType::f32);  // saved only while small
  MaskView<float> m(mask, d);
  probs_bf16(d, qb->data(), kb->data(), m, P.data<float>());
  Tensor out = empty_uninitialized({d.B, d.H, d.Tq, d.dv}, DType::f32);
  {
    const Bf16Buf pb = round_flat(P.data<float>(), BH * TT);
    blas::gemm_batched_bf16(BH, false, false, d.Tq, d.dv, d.Tk, 1.0f, pb->data(), d.Tk, TT, vb->data(), d.dv,
                            d.Tk * d.dv, 0.0f, out.data<float>(), d.dv, d.Tq * d.dv);  // O = P V
  }
  if (!rec) return out;
  const bool nq = rec.needs(0), nk = rec.needs(1), nv = rec.needs(2), nm = rec.needs(3);
  const bool ns = nq || nk || nm;
  const Tensor Ps = keep_p ? P : Tensor();
  const Tensor ms = !keep_p && mask.defined() ? mask.detach() : Tensor();
  rec.save({Ps, ms});
  const Shape qshape = q0.sizes(), kshape = k0.sizes(), vshape = v0.sizes();
  const Shape mshape = mask.defined() ? mask.sizes() : Shape{};
  rec.finish(out, [=](const Tensor& g0) -> std::vector<Tensor> {
    const Bf16Buf gb = pack_heads(g0);  // dO [B*H, Tq, dv]
    Tensor p = Ps;
    if (!p.defined()) {  // recomputed exactly as forward computed it
      p = empty_uninitialized({d.B, d.H, d.Tq, d.Tk}, DType::f32);
      MaskView<float> mv(ms, d);
      probs_bf16(d, qb->data(), kb->data(), mv, p.data<float>());
    }
    float* P = p.data<float>();
    Tensor dq, dk, dv, dm;
    {
      const Bf16Buf pb = round_flat(P, BH * TT);
      if (nv) {  // dV [Tk, dv] = P^T dO
        dv = empty_uninitialized(vshape, DType::f32);
        blas::gemm_batched_bf16(BH, true, false, d.Tk, d.dv, d.Tq, 1.0f, pb->data(), d.Tk, TT, gb->data(), d.dv,
                                d.Tq * d.dv, 0.0f, dv.data<float>(), d.dv, d.Tk * d.dv);
      }
    }
    if (!ns) return {dq, dk, dv, dm};
    Tensor dS = empty_uninitialized({d.B, d.H, d.Tq, d.Tk}, DType::f32);
    float* ds = dS.data<float>();
    // dP [Tq, Tk] = dO V^T, then per row dS = P * (dP - sum_j dP_j P_j), float32
    blas::gemm_batched_bf16(BH, false, true, d.Tq, d.Tk, d.dv, 1.0f, gb->data(), d.dv, d.Tq * d.dv, vb->data(), d.dv,
                            d.Tk * d.dv, 0.0f, ds, d.Tk, TT);
    const bool par = BH * TT > kParallelGrain && !omp_in_parallel();
#pragma omp parallel for if (par) schedule(static)
    for (int64_t row = 0; row < BH * d.Tq; ++row)
      kernels::softmax_row_backward_inplace(P + row * d.Tk, ds + row * d.Tk, d.Tk);
    const Bf16Buf sb = round_flat(ds, BH * TT);
    const float sc = static_cast<float>(d.scale);
    if (nq) {  // dQ [Tq, hd] = dS K s
      dq = empty_uninitialized(qshape, DType::f32);
      blas::gemm_batched_bf16(BH, false, false, d.Tq, d.hd, d.Tk, sc, sb->data(), d.Tk, TT, kb->data(), d.hd,
                              d.Tk * d.hd, 0.0f, dq.data<float>(), d.hd, d.Tq * d.hd);
    }
    if (nk) {  // dK [Tk, hd] = dS^T Q s
      dk = empty_uninitialized(kshape, DType::f32);
      blas::gemm_batched_bf16(BH, true, false, d.Tk, d.hd, d.Tq, sc, sb->data(), d.Tk, TT, qb->data(), d.hd,
                              d.Tq * d.hd, 0.0f, dk.data<float>(), d.hd, d.Tk * d.hd);
    }
    if (nm) dm = sum_to(dS, mshape);  // the mask is additive: dS summed over its broadcast dims
    return {dq, dk, dv, dm};
  });
  return out;
}

}  // namespace

Tensor attention_probs(const Tensor& q0, const Tensor& k0, const Tensor& mask, double scale) {
  Dims d = check_args("attention_probs", q0, k0, nullptr, mask, scale);
  Tensor q = blas_ready(q0), k = blas_ready(k0);
  Tensor P = empty({d.B, d.H, d.Tq, d.Tk}, q.dtype());
  dispatch_float(q.dtype(), "attention_probs", [&](auto tag) {
    using T = decltype(tag);
    MaskView<T> m(mask, d);
    T* p = P.data<T>();
    std::vector<T> none;
    for_each_head<T>(d, none, 0, [&](int64_t b, int64_t h, T*) {
      head_probs<T>(d, q, k, m, b, h, p + (b * d.H + h) * d.Tq * d.Tk);
    });
  });
  return P;
}

Tensor scaled_dot_product_attention(const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& mask,
                                    double scale) {
  const char* op = "scaled_dot_product_attention";
  Dims d = check_args(op, q0, k0, &v0, mask, scale);
  if (runs_bf16(q0)) {  // --precision bf16: all heads in one batched bf16 GEMM
    autograd::Recorder rec(op, {q0, k0, v0, mask});
    return sdpa_bf16(d, q0, k0, v0, mask, rec);
  }
  Tensor q = blas_ready(q0), k = blas_ready(k0), v = blas_ready(v0);
  autograd::Recorder rec(op, {q0, k0, v0, mask});
  const int64_t TT = d.Tq * d.Tk;
  // Per head: P = softmax(q k^T s + mask), then O = P V. P goes to the saved tensor when backward
  // will read it, otherwise to the thread's scratch block.
  Tensor P = rec && saves_probs(d) ? empty_uninitialized({d.B, d.H, d.Tq, d.Tk}, q.dtype()) : Tensor();
  Tensor out = empty_uninitialized({d.B, d.H, d.Tq, d.dv}, q.dtype());  // [B, H, Tq, dv]
  dispatch_float(q.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    MaskView<T> m(mask, d);
    T* o = out.data<T>();
    std::vector<T> scratch;
    for_each_head<T>(d, scratch, P.defined() ? 0 : TT, [&](int64_t b, int64_t h, T* buf) {
      T* S = P.defined() ? P.data<T>() + (b * d.H + h) * TT : buf;
      head_probs<T>(d, q, k, m, b, h, S);
      kernels::MatView<T> Pm{S, d.Tq, d.Tk, false, d.Tk};
      kernels::gemm(Pm, head<T>(v, b, h), o + (b * d.H + h) * d.Tq * d.dv, d.dv);  // O = P V
    });
  });
  if (!rec) return out;

  const bool nq = rec.needs(0), nk = rec.needs(1), nv = rec.needs(2), nm = rec.needs(3);
  const bool ns = nq || nk || nm;  // the score gradient dS is needed
  const bool recompute = !P.defined();
  // dQ = dS K needs K, dK = dS^T Q needs Q, dP = dO V^T needs V; recomputing P needs q and k.
  // q, k, v are usually views of one qkv projection, so saving them keeps that one tensor alive.
  Tensor qs = nk || recompute ? q.detach() : Tensor(), ks = nq || recompute ? k.detach() : Tensor();
  Tensor vs = ns ? v.detach() : Tensor(), ms = recompute && mask.defined() ? mask.detach() : Tensor();
  rec.save({P, qs, ks, vs, ms});
  Shape qshape = q0.sizes(), kshape = k0.sizes(), vshape = v0.sizes();
  Shape mshape = mask.defined() ? mask.sizes() : Shape{};
  rec.finish(out, [=](const Tensor& g0) -> std::vector<Tensor> {
    Tensor g = blas_ready(g0);  // dO: [B, H, Tq, dv]
    Tensor dq = nq ? empty_uninitialized(qshape, g.dtype()) : Tensor();
    Tensor dk = nk ? empty_uninitialized(kshape, g.dtype()) : Tensor();
    Tensor dv = nv ? empty_uninitialized(vshape, g.dtype()) : Tensor();
    // dS is a whole tensor only when the mask needs its gradient; otherwise each head's dS
    // lives in the thread's scratch block (beside its recomputed P).
    Tensor dS = nm ? empty_uninitialized({d.B, d.H, d.Tq, d.Tk}, g.dtype()) : Tensor();
    dispatch_float(g.dtype(), "scaled_dot_product_attention backward", [&](auto tag) {
      using T = decltype(tag);
      MaskView<T> m(ms, d);
      std::vector<T> scratch;
      const int64_t per_thread = (recompute ? TT : 0) + (ns && !nm ? TT : 0);
      for_each_head<T>(d, scratch, per_thread, [&](int64_t b, int64_t h, T* buf) {
        const int64_t bh = b * d.H + h;
        T* p = recompute ? buf : const_cast<T*>(P.data<T>()) + bh * TT;
        if (recompute) head_probs<T>(d, qs, ks, m, b, h, p);  // P again, exactly as forward computed it
        kernels::MatView<T> Pm{p, d.Tq, d.Tk, false, d.Tk};
        kernels::MatView<T> G = head<T>(g, b, h);
        if (nv) kernels::gemm(Pm.t(), G, dv.data<T>() + bh * d.Tk * d.dv, d.dv);  // dV = P^T dO
        if (!ns) return;
        T* ds = nm ? dS.data<T>() + bh * TT : buf + (recompute ? TT : 0);
        kernels::gemm(G, head<T>(vs, b, h).t(), ds, d.Tk);  // dP = dO V^T
        // softmax backward per row: dS = P * (dP - sum_j dP_j P_j)
        for (int64_t i = 0; i < d.Tq; ++i) kernels::softmax_row_backward_inplace(p + i * d.Tk, ds + i * d.Tk, d.Tk);
        kernels::MatView<T> dSm{ds, d.Tq, d.Tk, false, d.Tk};
        const T sc = static_cast<T>(d.scale);
        if (nq) kernels::gemm(dSm, head<T>(ks, b, h), dq.data<T>() + bh * d.Tq * d.hd, d.hd, sc);  // dQ = dS K s
        if (nk) kernels::gemm(dSm.t(), head<T>(qs, b, h), dk.data<T>() + bh * d.Tk * d.hd, d.hd, sc);  // dK = dS^T Q s
      });
    });
    // The mask is additive, so its gradient is dS summed over the broadcast dims.
    Tensor dm = nm ? sum_to(dS, mshape) : Tensor();
    return {dq, dk, dv, dm};
  });
  return out;
}

}  // namespace peft
