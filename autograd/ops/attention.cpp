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

// ---- every head in one batched bfloat16 GEMM (scaled_dot_product_attention_bf16) ----
// The two products (and the backward's four) run as one oneDNN batched matmul over all B*H
// heads with bfloat16 inputs and float32 accumulation (blas::gemm_batched_bf16), like PyTorch's
// autocast bmm; the scores, the mask, the softmax and its backward stay float32 (as autocast
// keeps softmax in float32). q, k, v are rounded once into packed copies that backward reuses
// (they replace the float32 q, k, v in the saved state). The float32 per-head path above is the
// reference the tests compare this one against.
using Bf16Buf = std::shared_ptr<std::vector<uint16_t>>;

Bf16Buf bf16_buffer(int64_t n) { return std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(n)); }

// Each x [B, H, R, C] (float32, any strides) rounded into a packed bfloat16 buffer, [B*H, R, C]
// or, with transpose, [B*H, C, R]; all of them in one pass across the team (q, k and v are
// usually head views of one qkv). The transposed copies let every batched product read its B
// operand untransposed: oneDNN's AMX kernel reorders a transposed B on every call (measured:
// QK^T with K^T as a strided view ran ~2x slower than with a packed K^T).
struct Pack {
  const Tensor* x;
  bool transpose;
};
std::vector<Bf16Buf> pack_heads(std::initializer_list<Pack> packs) {
  std::vector<Bf16Buf> out;
  std::vector<int64_t> first;  // first row (of the flattened [sum B*H*R] rows) of each tensor
  int64_t total = 0, elems = 0;
  for (const Pack& p : packs) {
    out.push_back(bf16_buffer(p.x->numel()));
    first.push_back(total);
    total += p.x->size(0) * p.x->size(1) * p.x->size(2);
    elems += p.x->numel();
  }
  const std::vector<Pack> ps(packs);
  const bool par = elems >= (int64_t{1} << 16) && !omp_in_parallel();
#pragma omp parallel for if (par) schedule(static)
  for (int64_t row = 0; row < total; ++row) {
    size_t t = first.size() - 1;
    while (first[t] > row) --t;
    const Tensor& x = *ps[t].x;
    const int64_t H = x.size(1), R = x.size(2), C = x.size(3), i = row - first[t];
    const int64_t bh = i / R, r = i % R;
    const Shape& st = x.strides();
    const float* src = static_cast<const float*>(x.impl()->storage->data) + x.offset() + (bh / H) * st[0] +
                       (bh % H) * st[1] + r * st[2];
    if (ps[t].transpose) {  // element (r, c) to [bh, c, r]
      uint16_t* dst = out[t]->data() + bh * R * C + r;
      for (int64_t c = 0; c < C; ++c) dst[c * R] = bf16::round_bits(src[c * st[3]]);
    } else if (st[3] == 1) {
      bf16::to_bf16(src, C, out[t]->data() + i * C);
    } else {
      uint16_t* dst = out[t]->data() + i * C;
      for (int64_t c = 0; c < C; ++c) dst[c] = bf16::round_bits(src[c * st[3]]);
    }
  }
  return out;
}

// S [B*H, Tq, Tk] = softmax(q k^T * scale + mask), float32, from the packed bf16 q and k^T: one
// batched GEMM, then per row (across the team) the mask, the softmax, and the row's bf16
// rounding into Pb for the P V product. Forward and the backward's recomputation both call
// this, so they see the same probabilities.
void probs_bf16(const Dims& d, const uint16_t* qb, const uint16_t* kTb, const MaskView<float>& mask, float* S,
                uint16_t* Pb) {
  const int64_t BH = d.B * d.H, TT = d.Tq * d.Tk;
  blas::gemm_batched_bf16(BH, false, false, d.Tq, d.Tk, d.hd, static_cast<float>(d.scale), qb, d.hd, d.Tq * d.hd,
                          kTb, d.Tk, d.Tk * d.hd, 0.0f, S, d.Tk, TT);
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
    bf16::to_bf16(r, d.Tk, Pb + row * d.Tk);
  }
}

Tensor sdpa_bf16(const Dims& d, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& mask,
                 autograd::Recorder& rec) {
  const int64_t BH = d.B * d.H, TT = d.Tq * d.Tk;
  // q, k^T and v for forward; k and v^T as well when backward will need dQ = dS K, dP = dO V^T.
  const bool grads = rec && (rec.needs(0) || rec.needs(1) || rec.needs(3));
  const std::vector<Bf16Buf> packed = grads ? pack_heads({{&q0, false}, {&k0, true}, {&v0, false}, {&k0, false},
                                                          {&v0, true}})
                                            : pack_heads({{&q0, false}, {&k0, true}, {&v0, false}});
  const Bf16Buf qb = packed[0], kTb = packed[1], vb = packed[2];
  const Bf16Buf kb = grads ? packed[3] : nullptr, vTb = grads ? packed[4] : nullptr;
  const bool keep_p = rec && saves_probs(d);
  Tensor P = empty_uninitialized({d.B, d.H, d.Tq, d.Tk}, DType::f32);  // saved only while small
  Bf16Buf pb = bf16_buffer(BH * TT);  // P in bf16, for P V (and backward's P^T dO while saved)
  MaskView<float> m(mask, d);
  probs_bf16(d, qb->data(), kTb->data(), m, P.data<float>(), pb->data());
  Tensor out = empty_uninitialized({d.B, d.H, d.Tq, d.dv}, DType::f32);
  blas::gemm_batched_bf16(BH, false, false, d.Tq, d.dv, d.Tk, 1.0f, pb->data(), d.Tk, TT, vb->data(), d.dv,
                          d.Tk * d.dv, 0.0f, out.data<float>(), d.dv, d.Tq * d.dv);  // O = P V
  if (!rec) return out;
  const bool nq = rec.needs(0), nk = rec.needs(1), nv = rec.needs(2), nm = rec.needs(3);
  const bool ns = nq || nk || nm;
  const Tensor Ps = keep_p ? P : Tensor();
  if (!keep_p) pb.reset();
  const Tensor ms = !keep_p && mask.defined() ? mask.detach() : Tensor();
  rec.save({Ps, ms});
  const Shape qshape = q0.sizes(), kshape = k0.sizes(), vshape = v0.sizes();
  const Shape mshape = mask.defined() ? mask.sizes() : Shape{};
  rec.finish(out, [=](const Tensor& g0) -> std::vector<Tensor> {
    const Bf16Buf gb = pack_heads({{&g0, false}})[0];  // dO [B*H, Tq, dv]
    Tensor p = Ps;
    Bf16Buf p16 = pb;
    if (!p.defined()) {  // recomputed exactly as forward computed it
      p = empty_uninitialized({d.B, d.H, d.Tq, d.Tk}, DType::f32);
      p16 = bf16_buffer(BH * TT);
      MaskView<float> mv(ms, d);
      probs_bf16(d, qb->data(), kTb->data(), mv, p.data<float>(), p16->data());
    }
    const float* P = p.data<float>();
    Tensor dq, dk, dv, dm;
    if (nv) {  // dV [Tk, dv] = P^T dO
      dv = empty_uninitialized(vshape, DType::f32);
      blas::gemm_batched_bf16(BH, true, false, d.Tk, d.dv, d.Tq, 1.0f, p16->data(), d.Tk, TT, gb->data(), d.dv,
                              d.Tq * d.dv, 0.0f, dv.data<float>(), d.dv, d.Tk * d.dv);
    }
    if (!ns) return {dq, dk, dv, dm};
    Tensor dS = empty_uninitialized({d.B, d.H, d.Tq, d.Tk}, DType::f32);
    float* ds = dS.data<float>();
    // dP [Tq, Tk] = dO V^T; then per row dS = P * (dP - sum_j dP_j P_j) in float32, and its bf16
    // rounding for the two products below (into the recomputed P's bf16 buffer, no longer needed;
    // a saved one stays intact for a second backward with retain_graph)
    blas::gemm_batched_bf16(BH, false, false, d.Tq, d.Tk, d.dv, 1.0f, gb->data(), d.dv, d.Tq * d.dv, vTb->data(), d.Tk,
                            d.Tk * d.dv, 0.0f, ds, d.Tk, TT);
    const Bf16Buf sb = !Ps.defined() ? p16 : bf16_buffer(BH * TT);
    const bool par = BH * TT > kParallelGrain && !omp_in_parallel();
#pragma omp parallel for if (par) schedule(static)
    for (int64_t row = 0; row < BH * d.Tq; ++row) {
      kernels::softmax_row_backward_inplace(P + row * d.Tk, ds + row * d.Tk, d.Tk);
      bf16::to_bf16(ds + row * d.Tk, d.Tk, sb->data() + row * d.Tk);
    }
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

Tensor scaled_dot_product_attention_bf16(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                         double scale) {
  const char* op = "scaled_dot_product_attention_bf16";
  Dims d = check_args(op, q, k, &v, mask, scale);
  if (q.dtype() != DType::f32)
    throw DTypeError(fmt::format("{}: needs float32 q, k, v (got {}). Hint: the float64 path is "
                                 "scaled_dot_product_attention",
                                 op, dtype_name(q.dtype())));
  if (!blas::bf16_supported())
    throw ValueError(fmt::format("{}: needs the oneDNN GEMM backend (this build: {}). Hint: use "
                                 "scaled_dot_product_attention",
                                 op, blas::backend_name()));
  autograd::Recorder rec(op, {q, k, v, mask});
  return sdpa_bf16(d, q, k, v, mask, rec);
}

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
