// "Show me the graph": the recorded tape behind a tensor as Graphviz DOT text.
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"

namespace peft::autograd {

// Fill colours, public so that tests and docs can refer to them.
inline constexpr const char* kOpColor = "lightgoldenrod1";      // a recorded op (autograd::Node)
inline constexpr const char* kTrainableColor = "palegreen";     // a leaf that requires grad
inline constexpr const char* kFrozenColor = "lightsteelblue1";  // an input that needs no grad

// DOT of every node reachable from root.grad_fn():
//  - one box per recorded op: op name, output shape, dtype and the bytes it saved for backward;
//  - one ellipse per trainable leaf (kTrainableColor): its name from leaf_names when known,
//    else its own name or "leaf", and its shape;
//  - one ellipse per frozen input of a recorded op (kFrozenColor; dashed when unnamed, e.g. the
//    images or labels), taken from Node::frozen_inputs;
//  - edges run from inputs to the ops that use them (the data flow), labelled with the
//    argument position when an op has several inputs.
// Frozen parts of the model that feed no recorded op are not on the tape and do not appear:
// that is the point of freeze masks. Pass names from Module::named_parameters(), e.g.
//   std::map<const TensorImpl*, std::string> names;
//   for (auto& [n, p] : model.named_parameters()) names[p.impl()] = n;
// Throws ValueError for an undefined root. Call it before backward: a released graph is still
// drawn, but its saved-byte counts are those recorded at forward time.
std::string to_dot(const Tensor& root, const std::map<const TensorImpl*, std::string>& leaf_names = {});

// The numbers to_dot prints in its caption, for programs and tests.
struct TapeStats {
  int64_t ops = 0;               // recorded nodes reachable from the root
  size_t saved_bytes = 0;        // sum of Node::saved_bytes over them
  int64_t trainable_leaves = 0;  // distinct leaves that receive a gradient
};
TapeStats tape_stats(const Tensor& root);  // all zero for a leaf or an undefined tensor

}  // namespace peft::autograd
