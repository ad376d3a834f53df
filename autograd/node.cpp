// Recording ops onto the tape.
#include "autograd/node.h"

#include <atomic>

#include "autograd/anomaly.h"
#include "autograd/grad_mode.h"

namespace peft::autograd {

uint64_t next_sequence_number() {
  static std::atomic<uint64_t> seq{0};
  return ++seq;
}

namespace {
thread_local InputCapture* g_capture = nullptr;
}

InputCapture* set_input_capture(InputCapture* capture) {
  InputCapture* prev = g_capture;
  g_capture = capture;
  return prev;
}

void note_unrecorded_inputs(const std::vector<Tensor>& inputs) {
  if (!g_capture) return;
  for (const Tensor& t : inputs) {
    if (!t.defined() || !t.requires_grad()) continue;
    bool seen = false;
    for (const Tensor& c : g_capture->tensors) seen = seen || c.impl() == t.impl();
    if (!seen) g_capture->tensors.push_back(t);
  }
}

Recorder::Recorder(const char* op, const std::vector<Tensor>& inputs) {
  needs_.reserve(inputs.size());
  const bool on = grad_enabled();
  if (!on && g_capture) note_unrecorded_inputs(inputs);
  for (const Tensor& t : inputs) {
    bool n = on && t.defined() && t.requires_grad();
    needs_.push_back(n);
    any_ = any_ || n;
  }
  if (!any_) return;
  node_ = std::make_shared<Node>();
  node_->name = op;
  node_->next.reserve(inputs.size());
  size_t i = 0;
  for (const Tensor& t : inputs) {
    Edge e;
    if (needs_[i]) {
      e.sizes = t.sizes();
      if (t.grad_fn())
        e.node = t.grad_fn();
      else
        e.leaf = t.impl_ptr();
    } else if (t.defined()) {
      node_->frozen_inputs.push_back({i, t.impl_ptr(), t.sizes()});
    }
    node_->next.push_back(std::move(e));
    ++i;
  }
}

void Recorder::save(std::initializer_list<Tensor> tensors) {
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    node_->saved_versions.emplace_back(t.impl()->storage, t.version());
    node_->saved_shapes.push_back(t.sizes());
    node_->saved_bytes += t.nbytes();
  }
}

void Recorder::finish(Tensor& out, BackwardFn fn) {
  node_->seq = next_sequence_number();
  node_->backward = std::move(fn);
  node_->out_sizes = out.sizes();
  node_->out_dtype = out.dtype();
  out.impl()->grad_fn = node_;
  out.impl()->requires_grad = true;
  if (detect_anomaly_enabled()) check_forward(*node_, out);
}

}  // namespace peft::autograd
