// Reverse-mode differentiation: walks the recorded tape backwards from a tensor.
#pragma once
#include <string>

#include "core/tensor.h"

namespace peft {

// Accumulates d(root)/d(leaf) into every reachable leaf's .grad (a leaf used twice gets the sum;
// leaves accumulate across calls, call zero_grad between steps). `grad` is the upstream gradient
// (default: 1 for a one-element root). The graph's saved tensors are released afterwards unless
// retain_graph is true; backward through a released graph throws StateError.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

// Testing aid, never for training: while set, backward multiplies every input gradient of the
// nodes named `op` (e.g. "gelu") by `scale`. It injects a wrong backward on purpose, so that a test
// can prove a gradient check catches one (`peft gradcheck --break-op`). Process-wide and not
// thread-safe: set it before a check, clear it after. When off it costs one branch per node.
void set_debug_grad_scale(const std::string& op, double scale);
void clear_debug_grad_scale();

}  // namespace peft
