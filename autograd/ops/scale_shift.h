// SSF's scale and shift (methods.md "SSF") as one op: y = x * scale + shift over the last dim,
// forward and backward side by side. Same math as add(mul(x, scale), shift), in one pass each
// way: no [R, C] intermediate, and the scale and shift gradients come out of one sweep over g.
#pragma once
#include "core/tensor.h"

namespace peft {

// x: [..., C], scale, shift: [C]. Saves x only when scale needs its gradient. Other shapes fall
// back to the composed ops (which broadcast and check them).
Tensor scale_shift(const Tensor& x, const Tensor& scale, const Tensor& shift);

}  // namespace peft
