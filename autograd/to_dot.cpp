// Graphviz DOT of the tape: ops as boxes, trainable and frozen leaves as coloured ellipses.
#include "autograd/to_dot.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "autograd/node.h"
#include "core/error.h"

namespace peft::autograd {

namespace {

// Text inside a double-quoted DOT string: quotes and backslashes escaped.
std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string human_bytes(size_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < 1024 * 1024) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{:.1f} MiB", b / (1024.0 * 1024.0));
}

// The label of a leaf: the caller's name, else the tensor's own debug name, else `fallback`.
std::string leaf_label(const TensorImpl* t, const std::map<const TensorImpl*, std::string>& names,
                       const std::string& fallback, bool* named) {
  auto it = names.find(t);
  *named = true;
  if (it != names.end()) return it->second;
  if (t && !t->name.empty()) return t->name;
  *named = false;
  return fallback;
}

// Every node reachable from the root (the same walk as backward), in tape (recording) order.
std::vector<const Node*> reachable_nodes(const Tensor& root) {
  std::vector<const Node*> nodes;
  if (!root.defined() || !root.grad_fn()) return nodes;
  std::unordered_set<const Node*> seen{root.grad_fn().get()};
  std::vector<const Node*> stack{root.grad_fn().get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    nodes.push_back(n);
    for (const Edge& e : n->next)
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
  }
  std::sort(nodes.begin(), nodes.end(), [](const Node* a, const Node* b) { return a->seq < b->seq; });
  return nodes;
}

}  // namespace

TapeStats tape_stats(const Tensor& root) {
  TapeStats s;
  std::unordered_set<const TensorImpl*> leaves;
  for (const Node* n : reachable_nodes(root)) {
    ++s.ops;
    s.saved_bytes += n->saved_bytes;
    for (const Edge& e : n->next)
      if (e.leaf) leaves.insert(e.leaf.get());
  }
  s.trainable_leaves = static_cast<int64_t>(leaves.size());
  return s;
}

std::string to_dot(const Tensor& root, const std::map<const TensorImpl*, std::string>& leaf_names) {
  if (!root.defined()) throw ValueError("to_dot: undefined tensor. Hint: pass the tensor whose graph to draw (the loss)");
  std::string out = "digraph tape {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  auto leaf_line = [&](const std::string& id, const std::string& label, const Shape& s, const char* color,
                       const char* style) {
    out += fmt::format("  {} [shape=ellipse, style=\"{}\", fillcolor={}, label=\"{}\\n{}\"];\n", id, style, color,
                       escape(label), shape_str(s));
  };

  if (!root.grad_fn()) {  // a leaf alone: nothing was recorded
    bool named = false;
    std::string label = leaf_label(root.impl(), leaf_names, "leaf", &named);
    leaf_line("leaf0", label, root.sizes(), root.requires_grad() ? kTrainableColor : kFrozenColor,
              root.requires_grad() || named ? "filled" : "filled,dashed");
    return out + "}\n";
  }

  const std::vector<const Node*> nodes = reachable_nodes(root);
  std::unordered_map<const Node*, std::string> node_id;
  size_t total_saved = 0;
  for (size_t k = 0; k < nodes.size(); ++k) {
    const Node* n = nodes[k];
    node_id[n] = fmt::format("op{}", k);
    total_saved += n->saved_bytes;
    out += fmt::format("  op{} [shape=box, style=filled, fillcolor={}{}, label=\"{}\\n{} {}\\nsaved {}{}\"];\n", k,
                       kOpColor, n == root.grad_fn().get() ? ", penwidth=2" : "", escape(n->name),
                       shape_str(n->out_sizes), dtype_name(n->out_dtype), human_bytes(n->saved_bytes),
                       n->released ? " (released)" : "");
  }

  // Leaves: one ellipse per tensor, shared by every op that uses it. Frozen inputs that are gone
  // already (temporaries) cannot be told apart, so each of those gets its own ellipse.
  std::unordered_map<const TensorImpl*, std::string> leaf_id;
  size_t next_leaf = 0;
  auto trainable_leaf = [&](const TensorImpl* t, const Shape& s) {
    auto [it, inserted] = leaf_id.try_emplace(t, "");
    if (!inserted) return it->second;
    it->second = fmt::format("leaf{}", next_leaf++);
    bool named = false;
    leaf_line(it->second, leaf_label(t, leaf_names, "leaf", &named), s, kTrainableColor, "filled");
    return it->second;
  };
  auto frozen_leaf = [&](const Node::FrozenInput& f) {
    std::shared_ptr<TensorImpl> t = f.tensor.lock();
    if (t) {
      auto it = leaf_id.find(t.get());
      if (it != leaf_id.end()) return it->second;
    }
    std::string id = fmt::format("leaf{}", next_leaf++);
    if (t) leaf_id[t.get()] = id;
    bool named = false;
    std::string label = leaf_label(t.get(), leaf_names, t ? "input" : "input (freed)", &named);
    leaf_line(id, label, f.sizes, kFrozenColor, named ? "filled" : "filled,dashed");
    return id;
  };

  for (const Node* n : nodes) {
    const bool many = n->next.size() > 1;
    auto edge = [&](const std::string& from, size_t index) {
      out += many ? fmt::format("  {} -> {} [label=\"{}\"];\n", from, node_id[n], index)
                  : fmt::format("  {} -> {};\n", from, node_id[n]);
    };
    for (size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (e.node) edge(node_id[e.node.get()], i);
      else if (e.leaf) edge(trainable_leaf(e.leaf.get(), e.sizes), i);
    }
    for (const Node::FrozenInput& f : n->frozen_inputs) edge(frozen_leaf(f), f.index);
  }
  out += fmt::format("  label=\"{} ops, {} saved for backward\";\n}}\n", nodes.size(), human_bytes(total_saved));
  return out;
}

}  // namespace peft::autograd
