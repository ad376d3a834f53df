// L2 normalisation along a dim (CLIP features), built from differentiable ops.
#pragma once
#include "core/tensor.h"

namespace peft {

// x / max(||x||_2, eps) along dim (torch.nn.functional.normalize).
Tensor l2_normalize(const Tensor& x, int64_t dim = -1, double eps = 1e-12);

}  // namespace peft
