// A matrix seen through BLAS conventions: pointer, transpose flag and leading dimension.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>

#include "core/bf16_weights.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace peft::kernels {

// X(i, j) = trans ? p[j*ld + i] : p[i*ld + j]. A transposed tensor view maps to trans = true
// over the same memory, which is how GEMMs avoid copying transposes. bf16, when set, is the same
// matrix rounded to bfloat16 once (a weight, core/bf16_weights.h), laid out like p: the GEMM
// reads it as its B operand under --precision bf16 instead of rounding p again.
template <class T>
struct MatView {
  const T* p;
  int64_t rows, cols;
  bool trans;
  int64_t ld;
  const uint16_t* bf16 = nullptr;
  MatView t() const { return {p, cols, rows, !trans, ld, bf16}; }
};

// Describes the last two dims of x (at element offset `off` from the storage start) as a MatView,
// or returns false when neither dim has unit stride (the caller then copies).
template <class T>
bool mat_view(const Tensor& x, int64_t off, MatView<T>& v) {
  const int64_t R = x.size(-2), C = x.size(-1);
  const int64_t sr = x.strides()[x.dim() - 2], sc = x.strides()[x.dim() - 1];
  const T* p = static_cast<const T*>(x.impl()->storage->data) + off;
  if ((sc == 1 || C == 1) && (sr >= std::max<int64_t>(C, 1) || R == 1)) {
    v = {p, R, C, false, R == 1 ? std::max<int64_t>(C, 1) : sr};
    return true;
  }
  if ((sr == 1 || R == 1) && (sc >= std::max<int64_t>(R, 1) || C == 1)) {
    v = {p, R, C, true, C == 1 ? std::max<int64_t>(R, 1) : sc};
    return true;
  }
  return false;
}

// A weight w [rows, cols] as a MatView (w already passed mat_view's test), with its bfloat16 copy
// attached under --precision bf16 (core/bf16_weights.h; `keep` holds it alive while the GEMM
// runs). For float64 or precision f32 this is mat_view alone.
// A weight stored in bfloat16 (a frozen weight under --precision bf16, nn/bf16_storage.h) has
// no float32 values: p is null and bf16 points at its elements, so the GEMM reads it only as its
// bf16 B operand (core/blas.h). Its rows or columns must have unit stride (a Linear weight and
// its row blocks, e.g. q|k|v's, do).
template <class T>
MatView<T> weight_view(const Tensor& w, bf16::WeightCopy& keep) {
  MatView<T> v{};
  if (w.dtype() == DType::bf16) {
    if constexpr (!std::is_same_v<T, float>) {
      throw DTypeError("GEMM: a bfloat16 weight meets " + std::string(dtype_name(dtype_of<T>())) +
                       " inputs. Hint: bfloat16 weights pair with float32 activations (--precision bf16)");
    } else {
      MatView<uint16_t> b{};
      if (!mat_view(w, w.offset(), b))
        throw ShapeError("GEMM: a bfloat16 weight " + shape_str(w.sizes()) + " with neither unit row nor column stride");
      v = {nullptr, b.rows, b.cols, b.trans, b.ld, b.p};
    }
    return v;
  }
  mat_view(w, w.offset(), v);
  if constexpr (std::is_same_v<T, float>) {
    keep = bf16::weight_copy(w);
    if (keep) v.bf16 = keep->data();
  }
  return v;
}

// True when a GEMM may multiply x by weight w: the same dtype, or float32 x with a weight stored
// in bfloat16 (read through weight_view).
inline bool weight_pairs_with(const Tensor& x, const Tensor& w) {
  return x.dtype() == w.dtype() || (x.dtype() == DType::f32 && w.dtype() == DType::bf16);
}

// C[M,N] (row stride ldc) = alpha * A * B + beta * C.
// A bf16 copy of B (B.bf16) is handed on; one of A is not used (activations are rounded per call).
template <class T>
void gemm(const MatView<T>& A, const MatView<T>& B, T* C, int64_t ldc, T alpha = 1, T beta = 0) {
  if constexpr (std::is_same_v<T, float>)
    blas::gemm(A.trans, B.trans, A.rows, B.cols, A.cols, alpha, A.p, A.ld, B.p, B.ld, beta, C, ldc, B.bf16);
  else
    blas::gemm(A.trans, B.trans, A.rows, B.cols, A.cols, alpha, A.p, A.ld, B.p, B.ld, beta, C, ldc);
}

// t itself when contiguous, else a packed copy, outside autograd: the fused ops' kernels read
// their operands as plain row-major matrices.
inline Tensor contiguous_raw(const Tensor& t) { return t.is_contiguous() ? t : t.clone(); }

// A contiguous tensor seen as a row-major [rows, cols] matrix.
template <class T>
MatView<T> rows_of(const Tensor& t, int64_t rows, int64_t cols) {
  return MatView<T>{t.data<T>(), rows, cols, false, cols};
}

}  // namespace peft::kernels
