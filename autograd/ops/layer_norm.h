// LayerNorm over the last dim, fused: forward saves only mean and rstd.
#pragma once
#include "core/tensor.h"

namespace peft {

// x: [..., D]; weight, bias: [D] or undefined. Biased variance, eps inside the sqrt (as PyTorch).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace peft
