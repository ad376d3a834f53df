// (IA)^3's scales fused into the linear layers they sit on (methods.md "(IA)^3"), forward and
// backward side by side. Same math as the composed ops (linear, cat, mul, gelu), without their
// extra passes: the composed qkv scale reads and writes the [R, 3D] output once more in forward
// and twice in backward (dl and dz), and scaling fc2's input breaks gelu_linear's fusion, so GELU
// runs as its own op and saves gelu(h) beside h. Profiled at ~18% of a tiny (IA)^3 training step.
#pragma once
#include "core/tensor.h"

namespace peft {

// The fused qkv of a timm block with its k and v rows scaled, bias included:
//   z = x W^T + b [..., 3D],  y = [z_q | l_k * z_k | l_v * z_v].
// x: [..., in], w: [3D, in], b: [3D] or undefined, l_k, l_v: [D]. Saves the k/v blocks of z
// only when l_k or l_v trains, x only when W trains, W only when x needs a gradient; a frozen W
// costs no weight-gradient GEMM.
Tensor ia3_qkv_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& l_k, const Tensor& l_v);

// fc2 of a ViT MLP with its input scaled per hidden unit, GELU fused as in gelu_linear:
//   y = (gelu(h) * l) W^T + b.
// h: [..., hidden], l: [hidden], w: [out, hidden], b: [out] or undefined. Exact (erf) GELU.
// Saves h (not gelu(h)) when any of h, l, W trains; gelu(h) is recomputed in backward. When
// nothing is recorded and the caller hands over the only handle on a contiguous h (std::move),
// gelu(h) * l is written over h, as gelu_linear does for inference.
Tensor gelu_scale_linear(Tensor h, const Tensor& l, const Tensor& w, const Tensor& b);

}  // namespace peft
