// Concatenation, indexing (index_select, gather, embedding) and masking (where, masked_fill) with their gradients.
#include "autograd/ops/index.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/view.h"
#include "core/error.h"
#include "core/kernels/map.h"
#include "core/strided.h"
#include "core/threads.h"

namespace peft {

namespace {

// Like dispatch_float but also for int64: indexing and masking move values of any dtype.
template <class F>
void dispatch_any(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    case DType::i64: f(int64_t{}); break;
    case DType::bf16:  // frozen GEMM weights only (nn/bf16_storage.h)
      throw DTypeError("indexing: bfloat16 tensors are frozen GEMM weights and are not indexed. Hint: index a float32 copy (to(DType::f32))");
  }
}

Tensor contiguous_copy(const Tensor& x) { return x.is_contiguous() ? x : x.clone(); }

// autograd::Recorder takes a fixed initializer list; cat has a runtime number of inputs, so its
// node is built here the same way: an edge per input that needs a gradient, nothing otherwise.
void record_list(const char* op, const std::vector<Tensor>& xs, Tensor& out,
                 const std::function<autograd::BackwardFn(const std::vector<bool>&)>& make_backward) {
  if (!grad_enabled()) {
    autograd::note_unrecorded_inputs(xs);  // a checkpointed forward's edges (autograd/checkpoint.h)
    return;
  }
  std::vector<bool> needs;
  bool any = false;
  for (const Tensor& t : xs) {
    needs.push_back(t.requires_grad());
    any = any || t.requires_grad();
  }
  if (!any) return;
  auto node = std::make_shared<autograd::Node>();
  node->name = op;
  for (size_t i = 0; i < xs.size(); ++i) {
    autograd::Edge e;
    if (needs[i]) {
      e.sizes = xs[i].sizes();
      if (xs[i].grad_fn())
        e.node = xs[i].grad_fn();
      else
        e.leaf = xs[i].impl_ptr();
    }
    node->next.push_back(std::move(e));
  }
  node->seq = autograd::next_sequence_number();
  node->backward = make_backward(needs);
  node->out_sizes = out.sizes();
  node->out_dtype = out.dtype();
  out.impl()->grad_fn = node;
  out.impl()->requires_grad = true;
}

// The indices of a 1-d or n-d int64 tensor, checked against [0, n).
std::vector<int64_t> checked_indices(const char* op, const Tensor& idx, int64_t n, const std::string& ctx) {
  if (idx.dtype() != DType::i64)
    throw DTypeError(fmt::format("{}: indices must be int64 (got {} {}, {}). Hint: build them with from_vector_i64",
                                 op, dtype_name(idx.dtype()), shape_str(idx.sizes()), ctx));
  std::vector<int64_t> v = idx.to_vector<int64_t>();
  for (int64_t i : v)
    if (i < 0 || i >= n)
      throw ValueError(fmt::format("{}: index {} out of range [0, {}) (got indices {}, {}). Hint: indices count "
                                   "from 0 and must be below the indexed size",
                                   op, i, n, shape_str(idx.sizes()), ctx));
  return v;
}

// 0/1 int64 tensor of cond's shape: nonzero (NaN included, as in PyTorch) counts as true.
Tensor truth(const Tensor& cond) {
  Tensor c = contiguous_copy(cond);
  Tensor m = empty(cond.sizes(), DType::i64);
  int64_t* pm = m.data<int64_t>();
  const int64_t n = c.numel();
  dispatch_any(c.dtype(), [&](auto tag) {
    using C = decltype(tag);
    const C* pc = c.data<C>();
    for (int64_t i = 0; i < n; ++i) pm[i] = pc[i] != C(0);
  });
  return m;
}

// out[i] = m[i] ? a[i] : b[i] with m (0/1 int64), a, b broadcast to `shape`; out contiguous.
template <class T>
Tensor select_kernel(const Tensor& m, const Tensor& a, const Tensor& b, const Shape& shape) {
  Tensor out = empty(shape, a.dtype());
  T* o = out.data<T>();
  const int64_t* bm = static_cast<const int64_t*>(m.impl()->storage->data);
  const T* ba = static_cast<const T*>(a.impl()->storage->data);
  const T* bb = static_cast<const T*>(b.impl()->storage->data);
  using kernels::broadcast_strides;
  RowIter<3> it{shape,
                {broadcast_strides(m, shape), broadcast_strides(a, shape), broadcast_strides(b, shape)},
                {m.offset(), a.offset(), b.offset()}};
  const int64_t rows = it.rows(), inner = it.inner();
  const int64_t sm = it.inner_stride(0), sa = it.inner_stride(1), sb = it.inner_stride(2);
#pragma omp parallel for if (out.numel() > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    auto off = it.row_offsets(r);
    const int64_t* pm = bm + off[0];
    const T* pa = ba + off[1];
    const T* pb = bb + off[2];
    T* q = o + r * inner;
    for (int64_t i = 0; i < inner; ++i) q[i] = pm[i * sm] ? pa[i * sa] : pb[i * sb];
  }
  return out;
}

Tensor select_any(const Tensor& m, const Tensor& a, const Tensor& b, const Shape& shape) {
  Tensor out;
  dispatch_any(a.dtype(), [&](auto tag) { out = select_kernel<decltype(tag)>(m, a, b, shape); });
  return out;
}

// Product of sizes[lo:hi].
int64_t span_numel(const Shape& s, size_t lo, size_t hi) {
  int64_t n = 1;
  for (size_t i = lo; i < hi; ++i) n *= s[i];
  return n;
}

}  // namespace

// ---------------------------------------------------------------- cat / stack

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) throw ValueError("cat: expected at least one tensor (got an empty list)");
  for (const Tensor& t : xs)
    if (!t.defined()) throw ValueError("cat: undefined tensor in the list");
  const Tensor& x0 = xs[0];
  if (x0.dim() == 0) throw ShapeError("cat: zero-dimensional tensors cannot be concatenated. Hint: use stack");
  const int64_t d = wrap_dim(dim, x0.dim(), "cat");
  Shape out_shape = x0.sizes();
  out_shape[d] = 0;
  for (const Tensor& t : xs) {
    if (t.dtype() != x0.dtype())
      throw DTypeError(fmt::format("cat: dtypes differ ({} {} vs {} {}). Hint: convert with .to()",
                                   dtype_name(x0.dtype()), shape_str(x0.sizes()), dtype_name(t.dtype()),
                                   shape_str(t.sizes())));
    bool ok = t.dim() == x0.dim();
    for (int64_t i = 0; ok && i < t.dim(); ++i) ok = i == d || t.size(i) == x0.size(i);
    if (!ok)
      throw ShapeError(fmt::format("cat: shapes {} and {} differ outside dim {}. Hint: only the concatenated "
                                   "dim may differ",
                                   shape_str(x0.sizes()), shape_str(t.sizes()), d));
    out_shape[d] += t.size(d);
  }
  Tensor out = empty_uninitialized(out_shape, x0.dtype());  // every input lands in its slice
  std::vector<int64_t> starts;
  int64_t start = 0;
  for (const Tensor& t : xs) {
    starts.push_back(start);
    if (t.numel() > 0)  // each input lands in its slice of out
      out.as_strided(t.sizes(), out.strides(), out.offset() + start * out.strides()[d]).copy_(t);
    start += t.size(d);
  }
  std::vector<int64_t> lens;
  for (const Tensor& t : xs) lens.push_back(t.size(d));
  record_list("cat", xs, out, [&](const std::vector<bool>& needs) -> autograd::BackwardFn {
    return [=](const Tensor& g) {
      std::vector<Tensor> grads(needs.size());
      for (size_t i = 0; i < needs.size(); ++i)
        if (needs[i]) grads[i] = narrow(g, d, starts[i], lens[i]);  // the slice each input filled
      return grads;
    };
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) throw ValueError("stack: expected at least one tensor (got an empty list)");
  for (const Tensor& t : xs) {
    if (!t.defined()) throw ValueError("stack: undefined tensor in the list");
    if (t.sizes() != xs[0].sizes())
      throw ShapeError(fmt::format("stack: shapes {} and {} differ. Hint: stack needs equal shapes",
                                   shape_str(xs[0].sizes()), shape_str(t.sizes())));
  }
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (const Tensor& t : xs) parts.push_back(unsqueeze(t, d));
  return cat(parts, d);
}

// ---------------------------------------------------------------- index_select

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& idx) {
  if (!x.defined() || !idx.defined()) throw ValueError("index_select: undefined argument");
  if (x.dim() == 0 || idx.dim() != 1)
    throw ShapeError(fmt::format("index_select: expects x with >= 1 dim and 1-d indices (got x {}, indices {})",
                                 shape_str(x.sizes()), shape_str(idx.sizes())));
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  const std::vector<int64_t> ids =
      checked_indices("index_select", idx, x.size(d), fmt::format("x {}, dim {}", shape_str(x.sizes()), d));
  // x viewed as [outer, n, inner] -> out [outer, m, inner]
  const int64_t outer = span_numel(x.sizes(), 0, d), n = x.size(d), inner = span_numel(x.sizes(), d + 1, x.dim());
  const int64_t m = static_cast<int64_t>(ids.size());
  Shape out_shape = x.sizes();
  out_shape[d] = m;
  Tensor xc = contiguous_copy(x);
  Tensor out = empty(out_shape, x.dtype());
  const size_t es = dtype_size(x.dtype());
  const char* src = static_cast<const char*>(xc.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(dst + ((o * m + i) * inner) * es, src + ((o * n + ids[i]) * inner) * es, inner * es);

  autograd::Recorder rec("index_select", {x});
  if (rec) {
    Shape xshape = x.sizes();
    rec.finish(out, [=](const Tensor& g0) -> std::vector<Tensor> {
      Tensor g = contiguous_copy(g0);
      Tensor gx = zeros(xshape, g.dtype());
      dispatch_float(g.dtype(), "index_select backward", [&](auto tag) {
        using T = decltype(tag);
        const T* pg = g.data<T>();
        T* px = gx.data<T>();
        // scatter-add: an index picked twice receives both gradients
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t i = 0; i < m; ++i) {
            const T* s = pg + (o * m + i) * inner;
            T* t = px + (o * n + ids[i]) * inner;
            for (int64_t j = 0; j < inner; ++j) t[j] += s[j];
          }
      });
      return {gx};
    });
  }
  return out;
}

// ---------------------------------------------------------------- gather

namespace {

// Element offset in contiguous x for each output position of gather (idx shape, idx[.] along d).
std::vector<int64_t> gather_offsets(const Shape& xshape, const Shape& ishape, int64_t d,
                                    const std::vector<int64_t>& ids) {
  const Shape xs = contiguous_strides(xshape);
  const int64_t n = shape_numel(ishape), nd = static_cast<int64_t>(ishape.size());
  std::vector<int64_t> offs(n);
  std::vector<int64_t> coord(nd, 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t off = 0;
    for (int64_t a = 0; a < nd; ++a) off += (a == d ? ids[e] : coord[a]) * xs[a];
    offs[e] = off;
    for (int64_t a = nd - 1; a >= 0; --a) {  // next row-major coordinate
      if (++coord[a] < ishape[a]) break;
      coord[a] = 0;
    }
  }
  return offs;
}

}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& idx) {
  if (!x.defined() || !idx.defined()) throw ValueError("gather: undefined argument");
  const int64_t d = wrap_dim(dim, std::max<int64_t>(x.dim(), 1), "gather");
  bool ok = idx.dim() == x.dim();
  for (int64_t a = 0; ok && a < x.dim(); ++a) ok = a == d || idx.size(a) <= x.size(a);
  if (!ok)
    throw ShapeError(fmt::format("gather: index {} does not fit x {} along dim {} (expected the same rank and "
                                 "index sizes <= x sizes outside dim). Hint: torch.gather semantics",
                                 shape_str(idx.sizes()), shape_str(x.sizes()), d));
  const std::vector<int64_t> ids =
      checked_indices("gather", idx, x.dim() == 0 ? 1 : x.size(d), fmt::format("x {}, dim {}", shape_str(x.sizes()), d));
  const std::vector<int64_t> offs = gather_offsets(x.sizes(), idx.sizes(), d, ids);
  Tensor xc = contiguous_copy(x);
  Tensor out = empty(idx.sizes(), x.dtype());
  dispatch_any(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    for (size_t e = 0; e < offs.size(); ++e) po[e] = px[offs[e]];
  });

  autograd::Recorder rec("gather", {x});
  if (rec) {
    Shape xshape = x.sizes();
    rec.finish(out, [=](const Tensor& g0) -> std::vector<Tensor> {
      Tensor g = contiguous_copy(g0);
      Tensor gx = zeros(xshape, g.dtype());
      dispatch_float(g.dtype(), "gather backward", [&](auto tag) {
        using T = decltype(tag);
        const T* pg = g.data<T>();
        T* px = gx.data<T>();
        for (size_t e = 0; e < offs.size(); ++e) px[offs[e]] += pg[e];  // scatter-add
      });
      return {gx};
    });
  }
  return out;
}

// ---------------------------------------------------------------- embedding

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  if (!weight.defined() || !ids.defined()) throw ValueError("embedding: undefined argument");
  if (weight.dim() != 2)
    throw ShapeError(fmt::format("embedding: weight must be [V, D] (got weight {}, ids {})",
                                 shape_str(weight.sizes()), shape_str(ids.sizes())));
  const int64_t V = weight.size(0), D = weight.size(1);
  if (ids.dtype() != DType::i64)
    throw DTypeError(fmt::format("embedding: ids must be int64 (got {} ids {}, weight {}). Hint: build them with "
                                 "from_vector_i64",
                                 dtype_name(ids.dtype()), shape_str(ids.sizes()), shape_str(weight.sizes())));
  std::vector<int64_t> rows = ids.to_vector<int64_t>();
  for (int64_t id : rows)
    if (id < 0 || id >= V)
      throw ValueError(fmt::format("embedding: id {} out of range for vocabulary size V = {} (got ids {}, weight {}). "
                                   "Hint: ids must lie in [0, {})",
                                   id, V, shape_str(ids.sizes()), shape_str(weight.sizes()), V));
  Shape out_shape = ids.sizes();
  out_shape.push_back(D);
  Tensor wc = contiguous_copy(weight);
  Tensor out = empty(out_shape, weight.dtype());
  const size_t es = dtype_size(weight.dtype());
  const char* src = static_cast<const char*>(wc.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  const int64_t n = static_cast<int64_t>(rows.size());
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * D * es, src + rows[i] * D * es, D * es);

  autograd::Recorder rec("embedding", {weight});
  if (rec) {
    rec.finish(out, [=](const Tensor& g0) -> std::vector<Tensor> {
      Tensor g = contiguous_copy(g0);
      Tensor gw = zeros({V, D}, g.dtype());
      dispatch_float(g.dtype(), "embedding backward", [&](auto tag) {
        using T = decltype(tag);
        const T* pg = g.data<T>();
        T* pw = gw.data<T>();
        // scatter-add into the used rows; a repeated id sums its gradients
        for (int64_t i = 0; i < n; ++i) {
          T* row = pw + rows[i] * D;
          for (int64_t j = 0; j < D; ++j) row[j] += pg[i * D + j];
        }
      });
      return {gw};
    });
  }
  return out;
}

// ---------------------------------------------------------------- where / masked_fill

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (!cond.defined() || !a.defined() || !b.defined()) throw ValueError("where: undefined argument");
  if (a.dtype() != b.dtype())
    throw DTypeError(fmt::format("where: dtypes of a and b differ ({} {} vs {} {}). Hint: convert with .to()",
                                 dtype_name(a.dtype()), shape_str(a.sizes()), dtype_name(b.dtype()),
                                 shape_str(b.sizes())));
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.sizes(), a.sizes(), "where"), b.sizes(), "where");
  Tensor m = truth(cond);
  Tensor out = select_any(m, a, b, shape);
  autograd::Recorder rec("where", {a, b});  // cond is a selector: it gets no gradient
  if (rec) {
    const bool na = rec.needs(0), nb = rec.needs(1);
    rec.save({m});
    Shape sa = a.sizes(), sb = b.sizes();
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      // route g by the mask (not g*m, which would turn an inf upstream gradient into NaN)
      Tensor zero = scalar_tensor(0.0, g.dtype());
      Tensor ga = na ? sum_to(select_any(m, g, zero, shape), sa) : Tensor();
      Tensor gb = nb ? sum_to(select_any(m, zero, g, shape), sb) : Tensor();
      return {ga, gb};
    });
  }
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  if (!x.defined() || !mask.defined()) throw ValueError("masked_fill: undefined argument");
  if (broadcast_shapes(x.sizes(), mask.sizes(), "masked_fill") != x.sizes())
    throw ShapeError(fmt::format("masked_fill: mask {} does not broadcast to x {}. Hint: the mask may only have "
                                 "size-1 or missing leading dims",
                                 shape_str(mask.sizes()), shape_str(x.sizes())));
  if (x.dtype() == DType::i64 && !std::isfinite(value))
    throw ValueError(fmt::format("masked_fill: value {} cannot be stored in an int64 tensor {}", value,
                                 shape_str(x.sizes())));
  Tensor m = truth(mask);
  Tensor out = select_any(m, scalar_tensor(value, x.dtype()), x, x.sizes());
  autograd::Recorder rec("masked_fill", {x});
  if (rec) {
    rec.save({m});
    Shape xshape = x.sizes();
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      return {select_any(m, scalar_tensor(0.0, g.dtype()), g, xshape)};  // filled places get no gradient
    });
  }
  return out;
}

}  // namespace peft
