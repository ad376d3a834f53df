// Activation checkpointing: a forward without recording, recomputed with recording in backward.
#include "autograd/checkpoint.h"

#include <fmt/format.h>

#include <unordered_set>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/error.h"

namespace peft {

namespace {

// Installs an input capture for one scope (and takes it down on an exception too).
class CaptureScope {
 public:
  explicit CaptureScope(autograd::InputCapture* c) : prev_(autograd::set_input_capture(c)) {}
  ~CaptureScope() { autograd::set_input_capture(prev_); }
  CaptureScope(const CaptureScope&) = delete;
  CaptureScope& operator=(const CaptureScope&) = delete;

 private:
  autograd::InputCapture* prev_;
};

// Grad mode on for one scope: backward runs under NoGradGuard, the recompute must record.
class EnableGradScope {
 public:
  EnableGradScope() : prev_(grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradScope() { set_grad_enabled(prev_); }
  EnableGradScope(const EnableGradScope&) = delete;
  EnableGradScope& operator=(const EnableGradScope&) = delete;

 private:
  bool prev_;
};

// Sets the generators to the states they had before the first forward (so that the recompute
// draws the same dropout masks) and back to where they are now when the scope ends: the draws
// that followed the first forward (later blocks, the next step) must not be replayed twice.
class GeneratorReplay {
 public:
  GeneratorReplay(const std::vector<Generator*>& gens, const std::vector<Generator>& before) : gens_(gens) {
    for (size_t i = 0; i < gens_.size(); ++i) {
      now_.push_back(*gens_[i]);
      *gens_[i] = before[i];
    }
  }
  ~GeneratorReplay() {
    for (size_t i = 0; i < gens_.size(); ++i) *gens_[i] = now_[i];
  }
  GeneratorReplay(const GeneratorReplay&) = delete;
  GeneratorReplay& operator=(const GeneratorReplay&) = delete;

 private:
  std::vector<Generator*> gens_;
  std::vector<Generator> now_;
};

// For the recompute, tensors computed before the checkpoint (they have a grad_fn on the outer
// tape) become leaves: the inner backward must stop at them and hand their gradient to the outer
// one instead of running outer nodes itself. Restored (history back, .grad taken) at the end.
class DetachedHistory {
 public:
  explicit DetachedHistory(const std::vector<Tensor>& ts) : ts_(ts) {
    for (const Tensor& t : ts_) {
      fns_.push_back(t.impl()->grad_fn);
      t.impl()->grad_fn.reset();
      t.impl()->grad.reset();
    }
  }
  // The gradient each received (undefined where none flowed), in order.
  std::vector<Tensor> take_grads() {
    std::vector<Tensor> g;
    for (const Tensor& t : ts_) {
      g.emplace_back(t.impl()->grad);
      t.impl()->grad.reset();
    }
    return g;
  }
  ~DetachedHistory() {
    for (size_t i = 0; i < ts_.size(); ++i) {
      ts_[i].impl()->grad_fn = fns_[i];
      ts_[i].impl()->grad.reset();
    }
  }
  DetachedHistory(const DetachedHistory&) = delete;
  DetachedHistory& operator=(const DetachedHistory&) = delete;

 private:
  std::vector<Tensor> ts_;
  std::vector<std::shared_ptr<autograd::Node>> fns_;
};

// The recomputed graph must read exactly what the first forward read: a leaf or an outer-tape
// tensor it did not declare would get a gradient behind the outer engine's back (an optimizer
// stepping in backward would miss it), and an outer node reached here would run twice.
void check_recomputed_graph(const Tensor& y, uint64_t boundary, const std::unordered_set<const TensorImpl*>& allowed) {
  std::vector<autograd::Node*> stack{y.grad_fn().get()};
  std::unordered_set<autograd::Node*> seen{stack.back()};
  while (!stack.empty()) {
    autograd::Node* n = stack.back();
    stack.pop_back();
    for (const autograd::Edge& e : n->next) {
      const bool outer_node = e.node && e.node->seq <= boundary;
      if ((e.leaf && !allowed.count(e.leaf.get())) || outer_node)
        throw StateError(fmt::format(
            "checkpoint: the recomputed forward read a tensor of shape {} (through '{}') that the first forward did "
            "not read. Hint: the checkpointed function must be deterministic given its input, its tensors and the "
            "generators passed to checkpoint() (or run the model without --checkpoint-activations)",
            shape_str(e.sizes), n->name));
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }
}

}  // namespace

Tensor checkpoint(const CheckpointFn& fn, const Tensor& x, const std::vector<Generator*>& generators) {
  if (!x.defined()) throw ValueError("checkpoint: undefined input");
  if (!grad_enabled()) return fn(x);
  std::vector<Generator> before;
  for (Generator* g : generators) {
    if (!g) throw ValueError("checkpoint: null generator. Hint: pass the generators the function draws from");
    before.push_back(*g);
  }

  // First forward: nothing recorded, so fn's activations are freed as it goes; the capture
  // collects the tensors needing a gradient that it read.
  autograd::InputCapture cap;
  Tensor out;
  {
    NoGradGuard no_grad;
    CaptureScope scope(&cap);
    out = fn(x);
  }
  if (!out.defined()) throw ValueError("checkpoint: the function returned an undefined tensor");
  out = out.detach();  // a fresh handle: fn may return x itself (or a view sharing its TensorImpl)

  std::vector<Tensor> inputs{x};
  for (const Tensor& t : cap.tensors)
    if (t.impl() != x.impl()) inputs.push_back(t);
  autograd::Recorder rec("checkpoint", inputs);
  if (!rec) return out;  // nothing fn read needs a gradient
  const bool needs_x = rec.needs(0);
  const Tensor xs = x.detach();
  // Version checks: x and the outer-tape tensors read must be unchanged when backward recomputes.
  // (Parameters are not listed: saved_bytes counts what backward keeps alive, and they live anyway.)
  rec.save({xs});
  for (size_t i = 1; i < inputs.size(); ++i)
    if (!inputs[i].is_leaf()) rec.save({inputs[i]});
  // Outer-tape tensors (with history) get their gradient from the recompute; leaves get it
  // directly (the recompute's backward accumulates into their .grad, as the plain path would).
  std::vector<Tensor> leaves, history;
  std::vector<size_t> history_slot;
  for (size_t i = 1; i < inputs.size(); ++i) {
    if (inputs[i].is_leaf()) {
      leaves.push_back(inputs[i]);
    } else {
      history.push_back(inputs[i]);
      history_slot.push_back(i);
    }
  }
  const size_t n_inputs = inputs.size();
  rec.finish(out, [fn, xs, needs_x, leaves, history, history_slot, n_inputs, generators,
                   before](const Tensor& g) -> std::vector<Tensor> {
    std::vector<Tensor> grads(n_inputs);
    DetachedHistory detached(history);
    Tensor xr = xs.detach();
    if (needs_x) xr.requires_grad_(true);
    const uint64_t boundary = autograd::next_sequence_number();
    Tensor y;
    {
      GeneratorReplay replay(generators, before);
      EnableGradScope grad_on;
      y = fn(xr);
    }
    if (!y.requires_grad()) return grads;  // no path from the inputs to the output
    if (y.sizes() != g.sizes())
      throw StateError(fmt::format("checkpoint: the recomputed output has shape {}, the first forward's {}. Hint: the "
                                   "checkpointed function must be deterministic",
                                   shape_str(y.sizes()), shape_str(g.sizes())));
    std::unordered_set<const TensorImpl*> allowed{xr.impl()};
    for (const Tensor& t : leaves) allowed.insert(t.impl());
    for (const Tensor& t : history) allowed.insert(t.impl());
    if (y.grad_fn()) check_recomputed_graph(y, boundary, allowed);
    backward(y, g);
    if (needs_x) grads[0] = xr.grad();
    std::vector<Tensor> hg = detached.take_grads();
    for (size_t j = 0; j < history.size(); ++j) grads[history_slot[j]] = hg[j];
    return grads;
  });
  return out;
}

}  // namespace peft
