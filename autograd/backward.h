// Reverse-mode differentiation: walks the recorded tape backwards from a tensor.
#pragma once
#include "core/tensor.h"

namespace peft {

// Accumulates d(root)/d(leaf) into every reachable leaf's .grad (a leaf used twice gets the sum;
// leaves accumulate across calls, call zero_grad between steps). `grad` is the upstream gradient
// (default: 1 for a one-element root). The graph's saved tensors are released afterwards unless
// retain_graph is true; backward through a released graph throws StateError.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

}  // namespace peft
