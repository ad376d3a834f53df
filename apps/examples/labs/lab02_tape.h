// Lab 2 exercises (docs/labs/02-tape.md): a new differentiable op on the tape, and the tape order.
// The reference solutions are filled in so that tests/labs/test_lab02.cpp passes.
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>
#include <vector>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/kernels/map.h"

namespace lab02 {

using peft::Tensor;

// softplus(x) = log(1 + e^x) without overflow: for x > 0 it is x + log1p(e^-x).
template <class T>
T softplus_scalar(T v) {
  return v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
}

// Exercise 1: softplus, forward and backward, recorded with autograd::Recorder. It follows the
// pattern of peft::sigmoid in autograd/ops/unary.cpp (a new op: the library has no softplus).
//   forward:  y = log(1 + e^x)           (elementwise, float32 and float64)
//   backward: dx = g * sigmoid(x)        (so the node saves x, detached)
// With a frozen x (or under NoGradGuard) nothing is recorded and nothing is saved.
inline Tensor softplus(const Tensor& x) {
  if (!x.defined() || !peft::is_floating(x.dtype()))
    throw peft::DTypeError(fmt::format("softplus: expected a float32 or float64 tensor, got {}. Hint: convert with .to()",
                                       x.defined() ? peft::dtype_name(x.dtype()) : "an undefined tensor"));
  Tensor y;
  peft::dispatch_float(x.dtype(), "softplus", [&](auto tag) {
    using T = decltype(tag);
    y = peft::kernels::unary_map<T>(x, [](T v) { return softplus_scalar(v); });
  });
  peft::autograd::Recorder rec("softplus", {x});
  if (rec) {
    Tensor xs = x.detach();  // detached: the saved input must not hold a node of its own
    rec.save({xs});
    rec.finish(y, [xs](const Tensor& g) -> std::vector<Tensor> {
      return {peft::mul(g, peft::sigmoid(xs))};  // runs under no_grad: records nothing
    });
  }
  return y;
}

// Exercise 2: the order in which backward runs the ops behind `root`: collect every node
// reachable through Node::next, then sort by decreasing Node::seq (recording order is a
// topological order, so its reverse is a valid backward order). Re-implements the collection
// step of peft::backward (autograd/backward.cpp). Returns the op names; empty for a leaf.
inline std::vector<std::string> backward_order(const Tensor& root) {
  using peft::autograd::Node;
  std::vector<const Node*> nodes;
  if (!root.defined() || !root.grad_fn()) return {};
  std::unordered_set<const Node*> seen{root.grad_fn().get()};
  std::vector<const Node*> stack{root.grad_fn().get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    nodes.push_back(n);
    for (const auto& e : n->next)
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
  }
  std::sort(nodes.begin(), nodes.end(), [](const Node* a, const Node* b) { return a->seq > b->seq; });
  std::vector<std::string> names;
  for (const Node* n : nodes) names.push_back(n->name);
  return names;
}

}  // namespace lab02
