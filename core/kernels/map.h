// Elementwise map kernels over strided, broadcast operands (contiguous fast path + general path).
#pragma once
#include "core/strided.h"
#include "core/tensor.h"
#include "core/threads.h"

namespace peft::kernels {

// Strides of `t` seen with the shape `out` (broadcasting): 0 for new or size-1 dims.
inline Shape broadcast_strides(const Tensor& t, const Shape& out) {
  Shape st(out.size(), 0);
  const size_t lead = out.size() - t.sizes().size();
  for (size_t i = 0; i < t.sizes().size(); ++i)
    st[lead + i] = t.sizes()[i] == 1 ? 0 : t.strides()[i];
  return st;
}

// out[i] = f(x[i]); out is a new contiguous tensor of x's shape and dtype T.
template <class T, class F>
Tensor unary_map(const Tensor& x, F f) {
  Tensor out = empty_uninitialized(x.sizes(), x.dtype());  // every element written below
  T* o = out.data<T>();
  const int64_t n = x.numel();
  if (x.is_contiguous()) {
    const T* p = x.data<T>();
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = f(p[i]);
    return out;
  }
  const T* base = static_cast<const T*>(x.impl()->storage->data);
  RowIter<1> it{x.sizes(), {x.strides()}, {x.offset()}};
  const int64_t rows = it.rows(), inner = it.inner(), s = it.inner_stride(0);
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = base + it.row_offsets(r)[0];
    T* q = o + r * inner;
    for (int64_t i = 0; i < inner; ++i) q[i] = f(p[i * s]);
  }
  return out;
}

// out[i] = f(a[i], b[i]) with a, b broadcast to `shape`; out contiguous, dtype T.
template <class T, class F>
Tensor binary_map(const Tensor& a, const Tensor& b, const Shape& shape, F f) {
  Tensor out = empty_uninitialized(shape, a.dtype());  // every element written below
  T* o = out.data<T>();
  const int64_t n = out.numel();
  if (a.sizes() == shape && b.sizes() == shape && a.is_contiguous() && b.is_contiguous()) {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], pb[i]);
    return out;
  }
  const T* ba = static_cast<const T*>(a.impl()->storage->data);
  const T* bb = static_cast<const T*>(b.impl()->storage->data);
  RowIter<2> it{shape, {broadcast_strides(a, shape), broadcast_strides(b, shape)}, {a.offset(), b.offset()}};
  const int64_t rows = it.rows(), inner = it.inner(), sa = it.inner_stride(0), sb = it.inner_stride(1);
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    auto off = it.row_offsets(r);
    const T* pa = ba + off[0];
    const T* pb = bb + off[1];
    T* q = o + r * inner;
    for (int64_t i = 0; i < inner; ++i) q[i] = f(pa[i * sa], pb[i * sb]);
  }
  return out;
}

}  // namespace peft::kernels
