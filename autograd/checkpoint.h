// Activation checkpointing (torch.utils.checkpoint): trade a second forward for the activations.
#pragma once
#include <functional>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace peft {

using CheckpointFn = std::function<Tensor(const Tensor& x)>;

// y = fn(x), recorded as ONE node that saves only x. The forward runs without recording, so none
// of fn's intermediate activations outlive it; backward restores the generators to their state
// before the forward, recomputes fn(x) with recording, backpropagates the incoming gradient through
// that graph and frees it. Gradients are bit-identical to calling fn(x) directly, provided fn is
// deterministic given x, its tensors and `generators` (every random draw fn makes must come from
// one of them: dropout and drop-path masks are drawn again, identically).
//
// The node's inputs are x and every tensor needing a gradient that fn read (found while the
// forward runs: autograd::InputCapture), so the freeze mask holds, and an optimizer stepping
// inside backward (nn::Optimizer::step_in_backward) sees a parameter as final only after the
// recompute that adds to its gradient. Leaves read by fn get their gradient from the recompute
// directly, in the same order as without checkpointing.
//
// fn (and the generators) must outlive backward: the node keeps a copy of fn to recompute with,
// so capture tensors and modules by value (shared_ptr), never locals by reference.
// With grad mode off it is fn(x). fn must not modify x or its tensors in place (backward checks x's
// version, as every saved tensor's).
Tensor checkpoint(const CheckpointFn& fn, const Tensor& x, const std::vector<Generator*>& generators = {});

}  // namespace peft
