// Lab 4 exercises (docs/labs/04-freeze-masks.md): what freezing saves, measured and predicted.
// Reference solutions filled in so that tests/labs/test_lab04.cpp passes.
#pragma once
#include <algorithm>
#include <memory>
#include <vector>

#include "autograd/backward.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/counters.h"
#include "core/random.h"
#include "nn/linear.h"

namespace lab04 {

using peft::Tensor;

// L square Linear layers (with bias) and a relu between consecutive layers:
// x [B, W] -> linear -> relu -> linear -> ... -> linear -> [B, W].
struct LinearStack {
  LinearStack(int64_t layers, int64_t width, peft::Generator& gen) {
    for (int64_t i = 0; i < layers; ++i) linears.push_back(std::make_shared<peft::nn::Linear>(width, width, true, gen));
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = x;
    for (size_t i = 0; i < linears.size(); ++i) {
      h = linears[i]->forward(h);
      if (i + 1 < linears.size()) h = peft::relu(h);
    }
    return h;
  }
  // trainable[i] sets requires_grad of layer i's weight and bias.
  void set_trainable(const std::vector<bool>& trainable) {
    for (size_t i = 0; i < linears.size(); ++i) {
      linears[i]->weight.requires_grad_(trainable[i]);
      linears[i]->bias.requires_grad_(trainable[i]);
    }
  }
  std::vector<std::shared_ptr<peft::nn::Linear>> linears;
};

// The cost of one training step, loss = sum(stack(x)), for a frozen input x.
struct StepCost {
  int64_t forward_gemms = 0;   // BLAS GEMM calls during the forward pass
  int64_t backward_gemms = 0;  // ... during backward
  int64_t ops = 0;             // nodes recorded on the tape
  size_t saved_bytes = 0;      // bytes the tape keeps alive for backward
  bool operator==(const StepCost&) const = default;
};

// Exercise 1: measure one step. GEMM calls come from peft::counters() (core/counters.h; reset
// with peft::reset_gemm_counters()); the tape's size comes from walking Node::next from
// loss.grad_fn() and adding up Node::saved_bytes: that walk re-implements autograd::tape_stats
// (autograd/to_dot.cpp). Leaves the stack's gradients zeroed.
inline StepCost measure_step(const LinearStack& stack, const Tensor& x) {
  using peft::autograd::Node;
  StepCost cost;
  peft::reset_gemm_counters();
  Tensor loss = peft::sum(stack.forward(x));
  cost.forward_gemms = peft::counters().gemm_calls;
  std::vector<const Node*> stack_nodes;
  std::vector<const Node*> seen;
  if (loss.grad_fn()) stack_nodes.push_back(loss.grad_fn().get());
  while (!stack_nodes.empty()) {  // depth-first; `seen` counts a node reached twice only once
    const Node* n = stack_nodes.back();
    stack_nodes.pop_back();
    if (std::find(seen.begin(), seen.end(), n) != seen.end()) continue;
    seen.push_back(n);
    ++cost.ops;
    cost.saved_bytes += n->saved_bytes;
    for (const auto& e : n->next)
      if (e.node) stack_nodes.push_back(e.node.get());
  }
  peft::reset_gemm_counters();
  if (loss.requires_grad()) peft::backward(loss);
  cost.backward_gemms = peft::counters().gemm_calls;
  for (auto& l : stack.linears) l->zero_grad();
  return cost;
}

// Exercise 2: predict the same numbers from the freeze pattern alone, using how peft::linear's
// backward works (autograd/ops/matmul.cpp: dX = dY W only if x needs a gradient, saving W;
// dW = dY^T X only if W is trainable, saving X; db is a reduction, not a GEMM) and that relu saves
// its output. Layer i's input needs a gradient iff some layer before it is trainable.
inline StepCost predict_step(const std::vector<bool>& trainable, int64_t batch, int64_t width, size_t elem_size) {
  StepCost cost;
  const size_t act = static_cast<size_t>(batch * width) * elem_size;   // one activation [B, W]
  const size_t wgt = static_cast<size_t>(width * width) * elem_size;   // one weight [W, W]
  const size_t L = trainable.size();
  bool input_needs_grad = false;  // does layer i's input need a gradient?
  for (size_t i = 0; i < L; ++i) {
    cost.forward_gemms += 1;
    const bool records = trainable[i] || input_needs_grad;
    if (records) {
      cost.ops += 1;                                     // linear
      if (trainable[i]) {  // dW = dY^T X: one GEMM, keeps X
        cost.backward_gemms += 1;
        cost.saved_bytes += act;
      }
      if (input_needs_grad) {  // dX = dY W: one GEMM, keeps W
        cost.backward_gemms += 1;
        cost.saved_bytes += wgt;
      }
      if (i + 1 < L) {  // the relu after it records too and keeps its output
        cost.ops += 1;
        cost.saved_bytes += act;
      }
    }
    input_needs_grad = records;
  }
  if (input_needs_grad) cost.ops += 1;  // sum (saves nothing)
  return cost;
}

}  // namespace lab04
