// A node of the tape: one recorded op, its edges to its inputs, and the closure that computes their gradients.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft::autograd {

struct Node;

// Where the gradient of one op input goes: the node that produced it, or a leaf's .grad.
// An undefined edge means "this input needs no gradient" (frozen, integer, or no_grad):
// the op's backward must not compute it. This is the freeze mask.
struct Edge {
  std::shared_ptr<Node> node;
  std::shared_ptr<TensorImpl> leaf;
  Shape sizes;  // the input's shape, checked against the gradient the op returns
  bool defined() const { return node || leaf; }
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

struct Node {
  std::string name;      // op name, e.g. "linear"
  uint64_t seq = 0;      // position on the tape: recording order is a topological order
  std::vector<Edge> next;  // one per op input, in the op's argument order
  BackwardFn backward;     // grad_out -> one gradient per input (undefined where not needed)
  Shape out_sizes;
  DType out_dtype = DType::f32;
  // Saved tensors' storages and the versions they had when saved: an in-place write between
  // forward and backward would make the gradient silently wrong, so backward checks them.
  std::vector<std::pair<std::shared_ptr<Storage>, uint64_t>> saved_versions;
  std::vector<Shape> saved_shapes;
  size_t saved_bytes = 0;  // bytes kept alive for backward (graph dumps, labs, memory tests)
  bool released = false;   // set after backward without retain_graph

  // Inputs that need no gradient (frozen parameters, data, constants): they get no Edge, so
  // without this list a graph dump (autograd/to_dot.h) could not show frozen leaves at all.
  // Display only: backward never reads it, and weak pointers keep nothing alive.
  struct FrozenInput {
    size_t index;                      // argument position in the op
    std::weak_ptr<TensorImpl> tensor;  // expired once the tensor is gone
    Shape sizes;
  };
  std::vector<FrozenInput> frozen_inputs;

  bool needs_grad(size_t i) const { return i < next.size() && next[i].defined(); }
};

// The helper every differentiable op uses. Typical use:
//
//   Recorder rec("mul", {a, b});            // computes the freeze mask
//   if (rec) {                              // some input needs a gradient and grad mode is on
//     rec.save({rec.needs(0) ? b : Tensor(), rec.needs(1) ? a : Tensor()});
//     rec.finish(out, [=](const Tensor& g) { ... return {ga, gb}; });
//   }
//
// Save only what the needed gradients use: a frozen weight's op saves no activation for it.
class Recorder {
 public:
  Recorder(const char* op, std::initializer_list<Tensor> inputs) : Recorder(op, std::vector<Tensor>(inputs)) {}
  Recorder(const char* op, const std::vector<Tensor>& inputs);  // ops with a variable input count (cat)
  explicit operator bool() const { return any_; }
  bool needs(size_t i) const { return i < needs_.size() && needs_[i]; }
  void save(std::initializer_list<Tensor> tensors);  // undefined tensors are skipped
  void finish(Tensor& out, BackwardFn fn);

 private:
  std::shared_ptr<Node> node_;
  std::vector<bool> needs_;
  bool any_ = false;
};

uint64_t next_sequence_number();

// Activation checkpointing (autograd/checkpoint.h) runs a block's forward without recording, yet
// its node needs an edge to every tensor needing a gradient that the forward read (parameters,
// a method's shared factors, tensors computed before the block). While a capture is installed on
// this thread, ops running in no-grad mode report those inputs to it (Recorder and cat's node).
struct InputCapture {
  std::vector<Tensor> tensors;  // each TensorImpl once, in first-use order
};
InputCapture* set_input_capture(InputCapture* capture);  // installs one (nullptr: none), returns the previous
// Called by ops that do not record because grad mode is off: notes the inputs that require grad.
void note_unrecorded_inputs(const std::vector<Tensor>& inputs);

}  // namespace peft::autograd
