// Tensor: a cheap handle on shared storage with sizes, element strides and an offset (views never copy).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace peft {

namespace autograd {
struct Node;
}

// Everything a tensor is. Several Tensor handles may share one TensorImpl (like PyTorch's
// Tensor/TensorImpl), and several TensorImpls may share one Storage (views).
struct TensorImpl {
  StoragePtr storage;
  int64_t offset = 0;  // in elements
  Shape sizes;
  Shape strides;  // in elements; 0 where a dimension is broadcast (expand)
  DType dtype = DType::f32;
  bool requires_grad = false;                // leaves: set by the user; results: set by autograd
  std::shared_ptr<TensorImpl> grad;          // accumulated gradient of a leaf
  std::shared_ptr<autograd::Node> grad_fn;   // the op that produced this tensor (null for leaves)
  std::string name;                          // optional, shown in graphs and errors
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (like an empty torch::Tensor)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // ---- metadata
  const Shape& sizes() const { return impl_->sizes; }
  const Shape& shape() const { return impl_->sizes; }
  const Shape& strides() const { return impl_->strides; }
  int64_t offset() const { return impl_->offset; }
  int64_t dim() const { return static_cast<int64_t>(impl_->sizes.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl_->sizes); }
  DType dtype() const { return impl_->dtype; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  bool is_contiguous() const;
  // True when this handle is the only one on its tensor and nothing else (no view) shares its
  // storage: an op that was handed it may reuse the buffer in place.
  bool is_sole_owner() const { return impl_.use_count() == 1 && impl_->storage.use_count() == 1; }
  const std::string& name() const { return impl_->name; }
  Tensor& set_name(std::string n) {
    impl_->name = std::move(n);
    return *this;
  }

  // ---- data access (no autograd)
  // Pointer to the first element of this view; throws DTypeError when T does not match.
  template <class T> T* data() const;
  void* raw_data() const;
  double item() const;                                // a one-element tensor's value
  double at(const std::vector<int64_t>& index) const;  // one element, any dtype, as double
  template <class T> std::vector<T> to_vector() const;  // elements in logical (row-major) order

  // ---- autograd
  bool requires_grad() const { return impl_->requires_grad; }
  // Marks a leaf as trainable (or frozen). Throws StateError on a non-leaf.
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl_->grad_fn; }
  Tensor grad() const { return Tensor(impl_->grad); }  // undefined until backward reaches it
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  void zero_grad(bool set_to_none = true);
  Tensor detach() const;  // same storage, no autograd history, requires_grad false

  // ---- raw views and copies: never recorded by autograd (the differentiable ops live in
  // autograd/ops/view.h). Used by kernels, optimizers and initialisers.
  Tensor as_strided(const Shape& sizes, const Shape& strides, int64_t offset) const;
  Tensor clone() const;           // contiguous copy, no autograd history
  Tensor to(DType dtype) const;   // converted contiguous copy, no autograd history
  void copy_(const Tensor& src);  // elementwise copy of src (same numel, any layout/dtype)
  void fill_(double value);
  // Points this tensor (every handle on it, e.g. a module's parameter) at src's data, sizes and
  // dtype, like PyTorch's `p.data = src`: how a model is converted to float64 in place.
  void set_data(const Tensor& src);
  void bump_version() { impl_->storage->version++; }
  uint64_t version() const { return impl_->storage->version; }

  std::string str() const;  // readable text, like torch's repr

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// ---- factories (no autograd history; call requires_grad_() to make a trainable leaf)
Tensor empty(const Shape& sizes, DType dtype = DType::f32);  // zero-filled
// Like torch.empty: contents are garbage. Only for kernels that write every element (saves the
// memset that was ~3% of a training step).
Tensor empty_uninitialized(const Shape& sizes, DType dtype = DType::f32);
Tensor zeros(const Shape& sizes, DType dtype = DType::f32);
Tensor ones(const Shape& sizes, DType dtype = DType::f32);
Tensor full(const Shape& sizes, double value, DType dtype = DType::f32);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor scalar_tensor(double value, DType dtype = DType::f32);  // 0-d
// Values given in row-major order; throws ShapeError when the count does not match.
Tensor from_vector(const std::vector<double>& values, const Shape& sizes, DType dtype = DType::f32);
Tensor from_vector_i64(const std::vector<int64_t>& values, const Shape& sizes);
Tensor arange(int64_t n, DType dtype = DType::f32);

// Max |a-b| over elements (shapes must match). For tests and parity checks.
double max_abs_diff(const Tensor& a, const Tensor& b);
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

}  // namespace peft
