// Patch-embedding convolution (stride = kernel, no padding) as unfold + one GEMM.
#pragma once
#include "core/tensor.h"

namespace peft {

// x: [B, C, H, W], w: [D, C, P, P], b: [D] or undefined -> tokens [B, N, D] with N = (H/P)*(W/P)
// in row-major patch order; equals conv2d(x, w, b, stride=P).flatten(2).transpose(1, 2).
Tensor conv2d_patch(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

}  // namespace peft
