// The backward engine: collect the nodes reachable from the root, run them in reverse tape order.
#include "autograd/backward.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "autograd/anomaly.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops/elementwise.h"
#include "core/error.h"
#include "core/threads.h"

namespace peft {

namespace {

using autograd::Node;

// True when g is a dense tensor that nothing else refers to: no other handle, no view of its
// storage, no autograd history. Such a gradient can become a leaf's .grad as it is.
bool sole_owner(const Tensor& g) {
  return g.is_sole_owner() && g.offset() == 0 && g.is_contiguous() && g.impl()->storage->nbytes == g.nbytes() &&
         !g.requires_grad();
}

// Adds g into a leaf's .grad. The first gradient becomes the .grad: taken over when the engine
// holds the only handle (a weight-gradient GEMM's fresh output: no copy of a model's worth of gradients
// per step), copied otherwise (a view, or a tensor another consumer still reads).
void accumulate_leaf(TensorImpl& leaf, Tensor g) {
  if (!leaf.grad) {
    if (g.dtype() == leaf.dtype && sole_owner(g)) {
      leaf.grad = g.impl_ptr();
      return;
    }
    Tensor c = g.dtype() == leaf.dtype ? g.clone() : g.to(leaf.dtype);
    leaf.grad = c.impl_ptr();
  } else {
    Tensor acc(leaf.grad);
    acc.copy_(add(acc, g));
  }
}

void check_versions(const Node& n) {
  for (size_t i = 0; i < n.saved_versions.size(); ++i) {
    const auto& [storage, version] = n.saved_versions[i];
    if (storage->version != version)
      throw StateError(fmt::format(
          "backward: a tensor of shape {} saved by '{}' was modified in place after it was saved "
          "(version {} expected, found {}). Hint: do not write into tensors that the graph still needs",
          shape_str(n.saved_shapes[i]), n.name, version, storage->version));
  }
}

// set_debug_grad_scale's state: the op whose gradients are scaled ("" = off).
std::string g_debug_scale_op;
double g_debug_scale = 1.0;

void apply_debug_grad_scale(const Node& n, std::vector<Tensor>& grads) {
  if (n.name != g_debug_scale_op) return;
  for (Tensor& gi : grads)
    if (gi.defined()) gi = mul(gi, scalar_tensor(g_debug_scale, gi.dtype()));
}

}  // namespace

void set_debug_grad_scale(const std::string& op, double scale) {
  g_debug_scale_op = op;
  g_debug_scale = scale;
}

void clear_debug_grad_scale() { set_debug_grad_scale("", 1.0); }

namespace {
// acc += g. In place when acc is a contiguous buffer nobody else holds (the usual case: a
// gradient an op just allocated), saving a [R, D] allocation per residual connection; else a
// new tensor, since acc may be shared (add's backward hands the same g to both inputs).
void accumulate_into(Tensor& acc, const Tensor& g) {
  const bool sole_owner = acc.impl_ptr().use_count() == 1 && acc.impl()->storage.use_count() == 1;
  if (!sole_owner || !acc.is_contiguous() || !g.is_contiguous() || acc.sizes() != g.sizes() ||
      acc.dtype() != g.dtype()) {
    acc = add(acc, g);
    return;
  }
  dispatch_float(acc.dtype(), "backward accumulate", [&](auto tag) {
    using T = decltype(tag);
    T* a = acc.data<T>();
    const T* b = g.data<T>();
    const int64_t n = acc.numel();
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) a[i] += b[i];
  });
}
}  // namespace

namespace {
void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph, const LeafGradReady* on_ready) {
  if (!root.defined() || !root.requires_grad())
    throw StateError("backward: the tensor does not require grad and has no grad_fn. Hint: did you "
                     "freeze every parameter, or compute it under NoGradGuard?");
  Tensor g0 = grad;
  if (!g0.defined()) {
    if (root.numel() != 1)
      throw ShapeError(fmt::format("backward: implicit gradient needs a one-element output, got {}. "
                                   "Hint: pass an upstream gradient",
                                   shape_str(root.sizes())));
    g0 = ones(root.sizes(), root.dtype());
  } else if (g0.sizes() != root.sizes()) {
    throw ShapeError(fmt::format("backward: gradient shape {} does not match output shape {}",
                                 shape_str(g0.sizes()), shape_str(root.sizes())));
  }
  NoGradGuard no_grad;
  if (!root.grad_fn()) {  // a leaf: d(root)/d(root)
    accumulate_leaf(*root.impl(), g0);
    if (on_ready) (*on_ready)(*root.impl());
    return;
  }

  // Collect every node reachable from the root. Sequence numbers were handed out in recording
  // order, so decreasing seq is a valid reverse topological order: this is the tape.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{root.grad_fn().get()};
  seen.insert(stack.back());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (const auto& e : n->next)
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
  }
  std::sort(order.begin(), order.end(), [](Node* a, Node* b) { return a->seq > b->seq; });

  // For the ready hook: how many edges into each leaf are still to run. A leaf's gradient is
  // final when its count reaches 0 (nodes that receive nothing count down too).
  std::unordered_map<TensorImpl*, int64_t> pending;
  if (on_ready)
    for (Node* n : order)
      for (const auto& e : n->next)
        if (e.leaf) ++pending[e.leaf.get()];
  auto leaf_edges_done = [&](Node* n) {
    if (!on_ready) return;
    for (const auto& e : n->next)
      if (e.leaf && --pending[e.leaf.get()] == 0) (*on_ready)(*e.leaf);
  };

  std::unordered_map<Node*, Tensor> grads;
  grads[root.grad_fn().get()] = g0;
  for (Node* n : order) {
    auto it = grads.find(n);
    if (it == grads.end()) {  // nothing flowed into this node
      leaf_edges_done(n);
      continue;
    }
    Tensor g = std::move(it->second);
    grads.erase(it);
    if (n->released || !n->backward)
      throw StateError(fmt::format("backward: '{}' was already run and its saved tensors freed. "
                                   "Hint: pass retain_graph=true to the first backward",
                                   n->name));
    check_versions(*n);
    std::vector<Tensor> in_grads = n->backward(g);
    if (!g_debug_scale_op.empty()) apply_debug_grad_scale(*n, in_grads);
    if (!detect_anomaly_enabled()) g = Tensor();  // in_grads hold what they need; a leaf may take over its buffer
    if (in_grads.size() != n->next.size())
      throw StateError(fmt::format("backward: '{}' returned {} gradients for {} inputs", n->name,
                                   in_grads.size(), n->next.size()));
    for (size_t i = 0; i < in_grads.size(); ++i) {
      const auto& e = n->next[i];
      Tensor& gi = in_grads[i];
      if (!e.defined() || !gi.defined()) continue;
      if (gi.sizes() != e.sizes)
        throw StateError(fmt::format("backward: '{}' returned a gradient of shape {} for input {} of shape {}",
                                     n->name, shape_str(gi.sizes()), i, shape_str(e.sizes)));
      if (detect_anomaly_enabled()) autograd::check_backward(*n, i, gi, g);
      if (e.leaf) {
        accumulate_leaf(*e.leaf, std::move(gi));
      } else {
        auto [slot, inserted] = grads.try_emplace(e.node.get(), gi);
        if (!inserted) accumulate_into(slot->second, gi);
      }
    }
    leaf_edges_done(n);
    if (!retain_graph) {
      // Frees the saved tensors: the closure's copies and the version records' storage handles
      // (which alone kept every activation alive to the end of backward: ViT-B full FT held its
      // activations and all its gradients at once, +330 MB of peak).
      n->backward = nullptr;
      n->saved_versions.clear();
      n->saved_versions.shrink_to_fit();
      n->released = true;
    }
  }
}

}  // namespace

void backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  run_backward(root, grad, retain_graph, nullptr);
}

void backward(const Tensor& root, const LeafGradReady& on_grad_ready, bool retain_graph) {
  run_backward(root, Tensor(), retain_graph, &on_grad_ready);
}

}  // namespace peft
