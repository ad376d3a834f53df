// Matrix products on BLAS, with transpose flags instead of copies.
#pragma once
#include "core/tensor.h"

namespace peft {

// a: [..., M, K], b: [..., K, N] -> [..., M, N]; batch dims broadcast; 1-d operands as torch.matmul.
Tensor matmul(const Tensor& a, const Tensor& b);

// y = x W^T + b. x: [..., in], W: [out, in], b: [out] or undefined -> [..., out].
// Backward computes dX = dY W only if x needs grad, dW = dY^T X only if W needs grad (and saves
// x only then), db = sum(dY) only if b needs grad: a frozen weight costs no GEMM and no memory.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

}  // namespace peft
