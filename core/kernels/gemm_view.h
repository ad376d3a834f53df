// A matrix seen through BLAS conventions: pointer, transpose flag and leading dimension.
#pragma once
#include <cstdint>

#include "core/blas.h"
#include "core/tensor.h"

namespace peft::kernels {

// X(i, j) = trans ? p[j*ld + i] : p[i*ld + j]. A transposed tensor view maps to trans = true
// over the same memory, which is how GEMMs avoid copying transposes.
template <class T>
struct MatView {
  const T* p;
  int64_t rows, cols;
  bool trans;
  int64_t ld;
  MatView t() const { return {p, cols, rows, !trans, ld}; }
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

// C[M,N] (row stride ldc) = alpha * A * B + beta * C.
template <class T>
void gemm(const MatView<T>& A, const MatView<T>& B, T* C, int64_t ldc, T alpha = 1, T beta = 0) {
  blas::gemm(A.trans, B.trans, A.rows, B.cols, A.cols, alpha, A.p, A.ld, B.p, B.ld, beta, C, ldc);
}

}  // namespace peft::kernels
