// Anomaly detection (like torch.autograd.detect_anomaly): when on, every recorded op's forward
// output and every gradient the backward pass computes are checked for NaN/Inf, and the first
// non-finite value throws a ValueError naming the op, the shapes and the direction.
//
// It costs one pass over every activation and gradient, so it is off by default and meant for
// debugging a run whose loss turns into NaN (`peft train --detect-anomaly`). Ops that record no
// node (no_grad, or no input needs a gradient) are not checked.
#pragma once
#include <cstddef>

#include "core/tensor.h"

namespace peft {

// A process-wide switch (the backward pass and data-parallel kernels may run on other threads,
// so a thread-local flag could be missed).
void set_detect_anomaly(bool on);
bool detect_anomaly_enabled();

// RAII: anomaly detection is on (or off) while it lives, then back to what it was.
class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(bool on = true) : prev_(detect_anomaly_enabled()) { set_detect_anomaly(on); }
  ~DetectAnomalyGuard() { set_detect_anomaly(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};

namespace autograd {

struct Node;

// Number of NaN/Inf elements of a float tensor (any layout); 0 for integer tensors.
int64_t count_non_finite(const Tensor& t);

// Called by Recorder::finish in anomaly mode: throws ValueError
//   "anomaly: forward of '<op>' produced 3 NaN/Inf values in its output of shape [2, 3] (inputs: [2, 3], [3]) ..."
void check_forward(const Node& node, const Tensor& out);

// Called by the backward engine in anomaly mode for each gradient an op returns: throws ValueError
//   "anomaly: backward of '<op>' returned 1 NaN/Inf values in the gradient of input 0 (shape ...) ..."
void check_backward(const Node& node, size_t input, const Tensor& grad, const Tensor& grad_out);

}  // namespace autograd
}  // namespace peft
