// linear(gelu(h), W, b) as one op (the second half of a ViT MLP), forward and backward side by
// side. Same math as the two ops, but only h is saved: gelu(h) is recomputed in backward when
// W's gradient needs it. For full fine-tuning that halves the MLP's saved activations
// ([R, 4D] instead of 2 x [R, 4D] per block; ~17% of a ViT training step's peak memory) for one
// extra elementwise pass.
#pragma once
#include "core/tensor.h"

namespace peft {

// h: [..., hidden], w: [out, hidden], b: [out] or undefined. Exact (erf) GELU.
// When nothing is recorded (no_grad, or nothing requires grad) and the caller hands over the
// only handle on a contiguous h (std::move), GELU runs in place on h: inference then holds one
// [R, hidden] buffer per MLP instead of two.
Tensor gelu_linear(Tensor h, const Tensor& w, const Tensor& b);

}  // namespace peft
