// Numerically stable softmax and log_softmax (fused forward and backward).
#pragma once
#include "core/tensor.h"

namespace peft {

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

}  // namespace peft
