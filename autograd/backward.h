// Reverse-mode differentiation: walks the recorded tape backwards from a tensor.
#pragma once
#include <functional>
#include <string>

#include "core/tensor.h"

namespace peft {

// Accumulates d(root)/d(leaf) into every reachable leaf's .grad (a leaf used twice gets the sum;
// leaves accumulate across calls, call zero_grad between steps). `grad` is the upstream gradient
// (default: 1 for a one-element root). The graph's saved tensors are released afterwards unless
// retain_graph is true; backward through a released graph throws StateError.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

// Called once for each reachable leaf as soon as its .grad is final: every node that could still
// add to it has run. An optimizer can then apply the leaf's update and free its gradient while
// backward goes on (nn::Optimizer::step_in_backward), so the gradients of a whole model are never
// alive at once. A leaf that received no gradient (every path to it was cut) is reported too.
using LeafGradReady = std::function<void(TensorImpl& leaf)>;
void backward(const Tensor& root, const LeafGradReady& on_grad_ready, bool retain_graph = false);

// Testing aid, never for training: while set, backward multiplies every input gradient of the
// nodes named `op` (e.g. "gelu") by `scale`. It injects a wrong backward on purpose, so that a test
// can prove a gradient check catches one (`peft gradcheck --break-op`). Process-wide and not
// thread-safe: set it before a check, clear it after. When off it costs one branch per node.
void set_debug_grad_scale(const std::string& op, double scale);
void clear_debug_grad_scale();

}  // namespace peft
