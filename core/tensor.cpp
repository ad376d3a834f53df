// Tensor handle: metadata, element access, raw views and copies, factories, printing.
#include "core/tensor.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/error.h"
#include "core/strided.h"
#include "core/threads.h"

namespace peft {

namespace {

constexpr int64_t kMaxTensorBytes = int64_t{1} << 56;  // 64 PiB: beyond any machine, far below overflow

std::shared_ptr<TensorImpl> make_impl(const Shape& sizes, DType dtype, bool zero_fill = true) {
  for (int64_t s : sizes)
    if (s < 0) throw ShapeError(fmt::format("empty: negative size in {}", shape_str(sizes)));
  auto impl = std::make_shared<TensorImpl>();
  int64_t nbytes = 0;  // checked: a wrapped byte count would allocate too little (issue 20)
  if (__builtin_mul_overflow(shape_numel(sizes), static_cast<int64_t>(dtype_size(dtype)), &nbytes) ||
      nbytes > kMaxTensorBytes)
    throw ShapeError(fmt::format("empty: a tensor of shape {} needs more bytes than can be allocated. Hint: a "
                                 "size (an option, a config or a file's metadata) is far too large",
                                 shape_str(sizes)));
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(nbytes), zero_fill);
  impl->sizes = sizes;
  impl->strides = contiguous_strides(sizes);
  impl->dtype = dtype;
  return impl;
}

// A bfloat16 element for the copy loops below: built from any number by rounding to nearest even
// through float32 (core/bf16.h), read back exactly.
struct BF16 {
  uint16_t bits;
  template <class T> explicit BF16(T v) : bits(bf16::round_bits(static_cast<float>(v))) {}
  template <class T> explicit operator T() const { return static_cast<T>(bf16::to_float(bits)); }
};
static_assert(sizeof(BF16) == 2);

double read_as_double(const void* base, DType dt, int64_t off) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(base)[off];
    case DType::f64: return static_cast<const double*>(base)[off];
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(base)[off]);
    case DType::bf16: return static_cast<double>(static_cast<const BF16*>(base)[off]);
  }
  return 0;
}

void write_from_double(void* base, DType dt, int64_t off, double v) {
  switch (dt) {
    case DType::f32: static_cast<float*>(base)[off] = static_cast<float>(v); break;
    case DType::f64: static_cast<double*>(base)[off] = v; break;
    case DType::i64: static_cast<int64_t*>(base)[off] = static_cast<int64_t>(v); break;
    case DType::bf16: static_cast<BF16*>(base)[off] = BF16(v); break;
  }
}

template <class Dst, class Src>
void copy_rows(const RowIter<2>& it, Dst* dst, const Src* src) {
  const int64_t n = it.inner(), sd = it.inner_stride(0), ss = it.inner_stride(1);
  const int64_t rows = it.rows();
#pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    auto off = it.row_offsets(r);
    Dst* d = dst + off[0];
    const Src* s = src + off[1];
    for (int64_t i = 0; i < n; ++i) d[i * sd] = static_cast<Dst>(s[i * ss]);
  }
}

template <class Dst>
void copy_from(const Tensor& dst, const Tensor& src, const RowIter<2>& it) {
  Dst* d = static_cast<Dst*>(dst.impl()->storage->data);
  const void* s = src.impl()->storage->data;
  switch (src.dtype()) {
    case DType::f32: copy_rows(it, d, static_cast<const float*>(s)); break;
    case DType::f64: copy_rows(it, d, static_cast<const double*>(s)); break;
    case DType::i64: copy_rows(it, d, static_cast<const int64_t*>(s)); break;
    case DType::bf16: copy_rows(it, d, static_cast<const BF16*>(s)); break;
  }
}

}  // namespace

int64_t Tensor::size(int64_t d) const {
  // wrap_dim lets dim 0 / -1 through for 0-d tensors (for reductions); a 0-d tensor has no size.
  if (dim() == 0) throw ShapeError(fmt::format("size: dim {} of a 0-d tensor. Hint: it has no dims", d));
  return impl_->sizes[wrap_dim(d, dim(), "size")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = impl_->sizes.size(); i-- > 0;) {
    if (impl_->sizes[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->sizes[i];
  }
  return true;
}

template <class T>
T* Tensor::data() const {
  if (dtype() != dtype_of<T>())
    throw DTypeError(fmt::format("data: tensor holds {}, asked for {}", dtype_name(dtype()),
                                 dtype_name(dtype_of<T>())));
  return static_cast<T*>(impl_->storage->data) + impl_->offset;
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;

void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data) + impl_->offset * static_cast<int64_t>(dtype_size(dtype()));
}

double Tensor::item() const {
  if (numel() != 1)
    throw ShapeError(fmt::format("item: expected a one-element tensor, got shape {}", shape_str(sizes())));
  return read_as_double(impl_->storage->data, dtype(), impl_->offset);
}

double Tensor::at(const std::vector<int64_t>& index) const {
  if (static_cast<int64_t>(index.size()) != dim())
    throw ShapeError(fmt::format("at: {} indices for a tensor of shape {}", index.size(), shape_str(sizes())));
  int64_t off = impl_->offset;
  for (size_t d = 0; d < index.size(); ++d) {
    int64_t i = index[d] < 0 ? index[d] + impl_->sizes[d] : index[d];
    if (i < 0 || i >= impl_->sizes[d])
      throw ShapeError(fmt::format("at: index {} out of range for dim {} of shape {}", index[d], d,
                                   shape_str(sizes())));
    off += i * impl_->strides[d];
  }
  return read_as_double(impl_->storage->data, dtype(), off);
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = (dtype() == dtype_of<T>() && is_contiguous()) ? *this : to(dtype_of<T>());
  const T* p = c.data<T>();
  return std::vector<T>(p, p + numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

Tensor& Tensor::requires_grad_(bool on) {
  if (!is_leaf())
    throw StateError("requires_grad_: only leaf tensors can change requires_grad. Hint: use detach() first");
  if (on && !is_floating(dtype()))
    throw DTypeError(fmt::format("requires_grad_: {} tensors cannot require grad", dtype_name(dtype())));
  // bfloat16 holds frozen weights only (nn/bf16_storage.h); training keeps float32 master weights.
  if (on && dtype() == DType::bf16)
    throw DTypeError("requires_grad_: a bfloat16 tensor (a frozen weight stored in bf16 under --precision bf16) "
                     "cannot train. Hint: choose what trains before the model is stored in bf16");
  impl_->requires_grad = on;
  return *this;
}

void Tensor::zero_grad(bool set_to_none) {
  if (!impl_->grad) return;
  if (set_to_none) {
    impl_->grad.reset();
  } else {
    Tensor(impl_->grad).fill_(0.0);
  }
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->requires_grad = false;
  impl->grad.reset();
  impl->grad_fn.reset();
  return Tensor(impl);
}

Tensor Tensor::as_strided(const Shape& sizes, const Shape& strides, int64_t offset) const {
  if (sizes.size() != strides.size())
    throw ShapeError(fmt::format("as_strided: {} sizes but {} strides", sizes.size(), strides.size()));
  // The view must stay inside the storage: check the largest reachable element.
  int64_t hi = offset, lo = offset;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 0) { hi = lo = offset; break; }
    int64_t span = (sizes[d] - 1) * strides[d];
    if (span > 0) hi += span; else lo += span;
  }
  int64_t cap = static_cast<int64_t>(impl_->storage->nbytes / dtype_size(dtype()));
  if (lo < 0 || (shape_numel(sizes) > 0 && hi >= cap))
    throw ShapeError(fmt::format("as_strided: view {} with strides {} at offset {} leaves the storage of {} elements",
                                 shape_str(sizes), shape_str(strides), offset, cap));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = offset;
  impl->sizes = sizes;
  impl->strides = strides;
  impl->dtype = dtype();
  return Tensor(impl);
}

Tensor Tensor::clone() const { return to(dtype()); }

Tensor Tensor::to(DType dt) const {
  Tensor out = empty_uninitialized(sizes(), dt);  // copy_ writes every element
  out.copy_(*this);
  return out;
}

void Tensor::copy_(const Tensor& src) {
  if (src.numel() != numel())
    throw ShapeError(fmt::format("copy_: source {} has {} elements, destination {} has {}",
                                 shape_str(src.sizes()), src.numel(), shape_str(sizes()), numel()));
  if (numel() == 0) return;
  // Same shape: iterate both views; otherwise view the source as row-major with our shape.
  Tensor s = src;
  if (src.sizes() != sizes()) {
    s = src.is_contiguous() ? src.as_strided(sizes(), contiguous_strides(sizes()), src.offset())
                            : src.clone().as_strided(sizes(), contiguous_strides(sizes()), 0);
  }
  if (dtype() == s.dtype() && is_contiguous() && s.is_contiguous()) {
    std::memcpy(raw_data(), s.raw_data(), nbytes());
  } else {
    RowIter<2> it{sizes(), {strides(), s.strides()}, {offset(), s.offset()}};
    switch (dtype()) {
      case DType::f32: copy_from<float>(*this, s, it); break;
      case DType::f64: copy_from<double>(*this, s, it); break;
      case DType::i64: copy_from<int64_t>(*this, s, it); break;
      case DType::bf16: copy_from<BF16>(*this, s, it); break;
    }
  }
  bump_version();
}

void Tensor::set_data(const Tensor& src) {
  impl_->storage = src.impl()->storage;
  impl_->offset = src.offset();
  impl_->sizes = src.sizes();
  impl_->strides = src.strides();
  impl_->dtype = src.dtype();
  impl_->grad.reset();
}

void Tensor::fill_(double value) {
  RowIter<1> it{sizes(), {strides()}, {offset()}};
  void* base = impl_->storage->data;
  for (int64_t r = 0; r < it.rows(); ++r) {
    int64_t off = it.row_offsets(r)[0];
    for (int64_t i = 0; i < it.inner(); ++i) write_from_double(base, dtype(), off + i * it.inner_stride(0), value);
  }
  bump_version();
}

namespace {
// Appends the sub-tensor at `off` along dims [d, ndim) of a contiguous value list, eliding the
// middle of long dimensions as PyTorch does.
void format_dim(std::string& out, const std::vector<double>& v, const Shape& sizes, size_t d,
                int64_t off, bool integer) {
  if (d == sizes.size()) {
    out += integer ? fmt::format("{}", static_cast<int64_t>(v[off])) : fmt::format("{:.4f}", v[off]);
    return;
  }
  int64_t stride = 1;
  for (size_t k = d + 1; k < sizes.size(); ++k) stride *= sizes[k];
  out += "[";
  const int64_t n = sizes[d];
  for (int64_t i = 0; i < n; ++i) {
    if (n > 6 && i == 3) {
      out += "..., ";
      i = n - 3;
    }
    format_dim(out, v, sizes, d + 1, off + i * stride, integer);
    if (i + 1 < n) out += d + 1 == sizes.size() ? ", " : ",\n" + std::string(8 + d, ' ');
  }
  out += "]";
}
}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::string out = "tensor(";
  format_dim(out, to_vector<double>(), sizes(), 0, 0, dtype() == DType::i64);
  out += fmt::format(", shape={}, dtype={}", shape_str(sizes()), dtype_name(dtype()));
  if (requires_grad()) out += ", requires_grad=True";
  return out + ")";
}

// ---- factories

Tensor empty(const Shape& sizes, DType dtype) { return Tensor(make_impl(sizes, dtype)); }
Tensor empty_uninitialized(const Shape& sizes, DType dtype) { return Tensor(make_impl(sizes, dtype, false)); }
Tensor zeros(const Shape& sizes, DType dtype) { return empty(sizes, dtype); }
Tensor ones(const Shape& sizes, DType dtype) { return full(sizes, 1.0, dtype); }
Tensor full(const Shape& sizes, double value, DType dtype) {
  Tensor t = empty(sizes, dtype);
  if (value != 0.0) t.fill_(value);
  return t;
}
Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.sizes(), t.dtype()); }
Tensor scalar_tensor(double value, DType dtype) { return full({}, value, dtype); }

Tensor from_vector(const std::vector<double>& values, const Shape& sizes, DType dtype) {
  if (static_cast<int64_t>(values.size()) != shape_numel(sizes))
    throw ShapeError(fmt::format("from_vector: {} values for shape {} ({} elements)", values.size(),
                                 shape_str(sizes), shape_numel(sizes)));
  Tensor t = empty(sizes, dtype);
  for (size_t i = 0; i < values.size(); ++i) write_from_double(t.impl()->storage->data, dtype, static_cast<int64_t>(i), values[i]);
  return t;
}

Tensor from_vector_i64(const std::vector<int64_t>& values, const Shape& sizes) {
  if (static_cast<int64_t>(values.size()) != shape_numel(sizes))
    throw ShapeError(fmt::format("from_vector_i64: {} values for shape {} ({} elements)", values.size(),
                                 shape_str(sizes), shape_numel(sizes)));
  Tensor t = empty(sizes, DType::i64);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

Tensor arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) write_from_double(t.impl()->storage->data, dtype, i, static_cast<double>(i));
  return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.sizes() != b.sizes())
    throw ShapeError(fmt::format("max_abs_diff: shapes {} and {} differ", shape_str(a.sizes()), shape_str(b.sizes())));
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    double d = std::fabs(va[i] - vb[i]);
    if (std::isnan(d)) return d;
    m = std::max(m, d);
  }
  return m;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.sizes() != b.sizes()) return false;
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i)
    if (!(std::fabs(va[i] - vb[i]) <= atol + rtol * std::fabs(vb[i]))) return false;
  return true;
}

}  // namespace peft
