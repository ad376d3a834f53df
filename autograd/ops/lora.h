// LoRA linear as one op: y = x W^T + b + scale * (x A^T) B^T (methods.md "LoRA"), forward and
// backward side by side. Same math as composing linear/mul/add, without the two elementwise
// passes over [R, out] and the gradient accumulation they cost (~5% of a LoRA training step).
#pragma once
#include "core/tensor.h"

namespace peft {

// x: [..., in], w: [out, in], b: [out] or undefined, A: [r, in], B: [out, r]. Gradients flow to
// every input that needs one; W's weight-gradient GEMM runs only when W trains.
Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B, double scale);

}  // namespace peft
