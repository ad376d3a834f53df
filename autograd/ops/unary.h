// Differentiable unary elementwise ops (activations and math functions).
#pragma once
#include "core/tensor.h"

namespace peft {

Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);        // gradient 0 at x == 0 (as PyTorch)
Tensor gelu(const Tensor& x);        // exact erf form: 0.5 x (1 + erf(x / sqrt 2))
Tensor quick_gelu(const Tensor& x);  // x * sigmoid(1.702 x) (OpenAI CLIP)
Tensor abs(const Tensor& x);         // gradient sign(x), 0 at 0

}  // namespace peft
