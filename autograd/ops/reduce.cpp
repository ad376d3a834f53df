// Reductions: sum (the kernel), mean, var (composed), max/argmax along one dim, sum_to.
#include "autograd/ops/reduce.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/view.h"
#include "core/error.h"
#include "core/strided.h"
#include "core/threads.h"

namespace peft {

namespace {

// Which axes are reduced (empty dims = all), validated and de-duplicated.
std::vector<bool> reduce_mask(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> m(x.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    if (x.dim() == 0) continue;
    if (m[w] && !dims.empty())
      throw ShapeError(fmt::format("{}: dim {} appears twice in the reduction dims", op, d));
    m[w] = true;
  }
  return m;
}

Shape keepdim_shape(const Tensor& x, const std::vector<bool>& m) {
  Shape s = x.sizes();
  for (size_t i = 0; i < s.size(); ++i)
    if (m[i]) s[i] = 1;
  return s;
}

Shape squeezed_shape(const Tensor& x, const std::vector<bool>& m) {
  Shape s;
  for (size_t i = 0; i < x.sizes().size(); ++i)
    if (!m[i]) s.push_back(x.sizes()[i]);
  return s;
}

// o[c] = sum_r p[r, c] for a contiguous [R, C] buffer, accumulated in double, columns in chunks
// that threads own (deterministic, no atomics). The column loop vectorises (one running sum per
// column); compiled for AVX-512 / AVX2 too, since bias gradients call it on every linear.
template <class T>
void column_sums_impl(const T* p, int64_t R, int64_t C, T* o) {
  const int64_t chunk = 256;
#pragma omp parallel for if (R * C > kParallelGrain)
  for (int64_t c0 = 0; c0 < C; c0 += chunk) {
    const int64_t c1 = std::min(C, c0 + chunk);
    double acc[256] = {0};
    for (int64_t r = 0; r < R; ++r) {
      const T* row = p + r * C;
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
    }
    for (int64_t c = c0; c < c1; ++c) o[c] = static_cast<T>(acc[c - c0]);
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void column_sums(const float* p, int64_t R, int64_t C,
                                                                               float* o) {
  column_sums_impl(p, R, C, o);
}
void column_sums(const double* p, int64_t R, int64_t C, double* o) { column_sums_impl(p, R, C, o); }

// out (contiguous, keepdim layout) = sum of x over the masked axes, accumulated in double.
template <class T>
void sum_kernel(const Tensor& x, const std::vector<bool>& m, Tensor& out) {
  T* o = out.data<T>();
  const T* base = static_cast<const T*>(x.impl()->storage->data);
  // Fast path: contiguous x whose reduced axes all precede the kept ones, i.e. [R, C] summed over
  // R (bias gradients, sum_to of batch broadcasts): stream rows, one accumulator per column.
  size_t first_kept = 0;
  while (first_kept < m.size() && m[first_kept]) ++first_kept;
  bool prefix = x.is_contiguous() && std::all_of(m.begin() + first_kept, m.end(), [](bool b) { return !b; });
  if (prefix) {
    int64_t R = 1, C = 1;
    for (size_t i = 0; i < m.size(); ++i) (i < first_kept ? R : C) *= x.sizes()[i];
    column_sums(x.data<T>(), R, C, o);
    return;
  }
  // General path: kept axes outside, reduced axes inside, each output summed independently.
  Shape ks, kst, rs, rst;
  for (size_t i = 0; i < m.size(); ++i) {
    (m[i] ? rs : ks).push_back(x.sizes()[i]);
    (m[i] ? rst : kst).push_back(x.strides()[i]);
  }
  RowIter<1> outer{ks.empty() ? Shape{1} : ks, {kst.empty() ? Shape{0} : kst}, {x.offset()}};
  // RowIter walks rows; treat every kept index as a "row" by appending a unit inner dim.
  outer.sizes.push_back(1);
  outer.strides[0].push_back(0);
  RowIter<1> inner{rs.empty() ? Shape{1} : rs, {rst.empty() ? Shape{0} : rst}, {0}};
  const int64_t nout = outer.rows(), nin_rows = inner.rows(), nin = inner.inner(), s = inner.inner_stride(0);
#pragma omp parallel for if (x.numel() > kParallelGrain)
  for (int64_t i = 0; i < nout; ++i) {
    const int64_t off = outer.row_offsets(i)[0];
    double acc = 0;
    for (int64_t r = 0; r < nin_rows; ++r) {
      const T* p = base + off + inner.row_offsets(r)[0];
      for (int64_t j = 0; j < nin; ++j) acc += p[j * s];
    }
    o[i] = static_cast<T>(acc);
  }
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  auto m = reduce_mask(x, dims, "sum");
  Shape kshape = keepdim_shape(x, m);
  Tensor out = empty_uninitialized(kshape, x.dtype());  // sum_kernel writes every output
  dispatch_float(x.dtype(), "sum", [&](auto tag) { sum_kernel<decltype(tag)>(x, m, out); });
  if (!keepdim) out = out.as_strided(squeezed_shape(x, m), contiguous_strides(squeezed_shape(x, m)), 0);
  autograd::Recorder rec("sum", {x});
  if (rec) {
    Shape xs = x.sizes();
    rec.finish(out, [=](const Tensor& g) -> std::vector<Tensor> {
      // Put the reduced axes back as size 1, then broadcast: a stride-0 view, no copy.
      return {expand(reshape(g, kshape), xs)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  auto m = reduce_mask(x, dims, "mean");
  int64_t n = 1;
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i]) n *= x.sizes()[i];
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(std::max<int64_t>(n, 1)));
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, bool unbiased, bool keepdim) {
  auto m = reduce_mask(x, dims, "var");
  int64_t n = 1;
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i]) n *= x.sizes()[i];
  if (unbiased && n < 2)
    throw ShapeError(fmt::format("var: unbiased variance needs at least 2 elements, got {} in {}", n, shape_str(x.sizes())));
  Tensor centered = sub(x, mean(x, dims, true));
  return mul(sum(mul(centered, centered), dims, keepdim), 1.0 / static_cast<double>(unbiased ? n - 1 : n));
}

namespace {
// values and int64 indices of the max along `dim` (first max wins; NaN propagates).
void max_kernel(const Tensor& x, int64_t dim, Tensor& values, Tensor& indices) {
  Shape ks = x.sizes();
  ks[dim] = 1;
  values = empty(ks, x.dtype());
  indices = empty(ks, DType::i64);
  Shape os = x.sizes(), ost = x.strides();
  const int64_t n = os[dim], s = ost[dim];
  os[dim] = 1;
  os.push_back(1);
  ost.push_back(0);
  RowIter<1> it{os, {ost}, {x.offset()}};
  int64_t* idx = indices.data<int64_t>();
  dispatch_float(x.dtype(), "max", [&](auto tag) {
    using T = decltype(tag);
    const T* base = static_cast<const T*>(x.impl()->storage->data);
    T* v = values.data<T>();
    const int64_t rows = it.rows();
#pragma omp parallel for if (x.numel() > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* p = base + it.row_offsets(r)[0];
      int64_t best = 0;
      T bv = p[0];
      for (int64_t j = 1; j < n && !std::isnan(bv); ++j) {
        T c = p[j * s];
        if (c > bv || std::isnan(c)) {
          bv = c;
          best = j;
        }
      }
      v[r] = bv;
      idx[r] = best;
    }
  });
}
}  // namespace

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  dim = wrap_dim(dim, x.dim(), "max");
  if (x.dim() == 0) return x;
  if (x.size(dim) == 0) throw ShapeError(fmt::format("max: dim {} of {} is empty", dim, shape_str(x.sizes())));
  Tensor values, indices;
  max_kernel(x, dim, values, indices);
  Shape ks = values.sizes();
  if (!keepdim) values = squeeze(values.detach(), dim);
  autograd::Recorder rec("max", {x});
  if (rec) {
    rec.save({indices});
    Shape xs = x.sizes();
    DType dt = x.dtype();
    rec.finish(values, [=](const Tensor& g) -> std::vector<Tensor> {
      // Scatter the gradient to the winning index of each slice.
      Tensor gx = zeros(xs, dt);
      Tensor gk = contiguous(reshape(g, ks));
      const int64_t* idx = indices.data<int64_t>();
      Shape os = xs, ost = gx.strides();
      const int64_t s = ost[dim];
      os[dim] = 1;
      os.push_back(1);
      ost.push_back(0);
      RowIter<1> it{os, {ost}, {0}};
      dispatch_float(dt, "max backward", [&](auto tag) {
        using T = decltype(tag);
        T* base = gx.data<T>();
        const T* pg = gk.data<T>();
        for (int64_t r = 0; r < it.rows(); ++r) base[it.row_offsets(r)[0] + idx[r] * s] = pg[r];
      });
      return {gx};
    });
  }
  return values;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  dim = wrap_dim(dim, x.dim(), "argmax");
  if (x.dim() == 0) return zeros({}, DType::i64);  // a scalar is its own maximum (torch.argmax)
  if (x.size(dim) == 0) throw ShapeError(fmt::format("argmax: dim {} of {} is empty", dim, shape_str(x.sizes())));
  Tensor values, indices;
  max_kernel(x, dim, values, indices);
  return keepdim ? indices : squeeze(indices, dim);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.sizes() == shape) return x;
  const size_t lead = x.sizes().size() - shape.size();
  if (x.sizes().size() < shape.size())
    throw ShapeError(fmt::format("sum_to: cannot sum {} to the larger shape {}", shape_str(x.sizes()), shape_str(shape)));
  std::vector<int64_t> dims;
  for (size_t i = 0; i < x.sizes().size(); ++i) {
    if (i < lead) {
      dims.push_back(static_cast<int64_t>(i));
    } else if (shape[i - lead] == 1 && x.sizes()[i] != 1) {
      dims.push_back(static_cast<int64_t>(i));
    } else if (shape[i - lead] != x.sizes()[i]) {
      throw ShapeError(fmt::format("sum_to: {} is not a broadcast of {}", shape_str(x.sizes()), shape_str(shape)));
    }
  }
  if (dims.empty()) return reshape(x, shape);
  return reshape(sum(x, dims, true), shape);
}

}  // namespace peft
