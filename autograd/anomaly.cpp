// Anomaly detection: NaN/Inf checks on forward outputs and backward gradients.
#include "autograd/anomaly.h"

#include <fmt/format.h>

#include <atomic>
#include <cmath>

#include "autograd/node.h"
#include "core/error.h"

namespace peft {

namespace {
std::atomic<bool> g_anomaly{false};

// "[2, 3], [3]": the shapes of the op's inputs that are on the graph (frozen inputs have no
// recorded shape and print as "-").
std::string input_shapes(const autograd::Node& n) {
  std::string s;
  for (const auto& e : n.next) {
    if (!s.empty()) s += ", ";
    s += e.defined() ? shape_str(e.sizes) : "-";
  }
  return s;
}

// "2 NaN and 1 Inf" for the message.
std::string describe(const Tensor& t) {
  int64_t nan = 0, inf = 0;
  Tensor c = t.is_contiguous() ? t : t.clone();
  auto scan = [&](const auto* p) {
    for (int64_t i = 0; i < c.numel(); ++i) {
      if (std::isnan(p[i])) ++nan;
      else if (std::isinf(p[i])) ++inf;
    }
  };
  if (c.dtype() == DType::f32) scan(c.data<float>());
  else if (c.dtype() == DType::f64) scan(c.data<double>());
  return fmt::format("{} NaN and {} Inf", nan, inf);
}
}  // namespace

void set_detect_anomaly(bool on) { g_anomaly.store(on, std::memory_order_relaxed); }
bool detect_anomaly_enabled() { return g_anomaly.load(std::memory_order_relaxed); }

namespace autograd {

int64_t count_non_finite(const Tensor& t) {
  if (!t.defined() || (t.dtype() != DType::f32 && t.dtype() != DType::f64)) return 0;
  Tensor c = t.is_contiguous() ? t : t.clone();
  int64_t bad = 0;
  auto scan = [&](const auto* p) {
    for (int64_t i = 0; i < c.numel(); ++i) bad += !std::isfinite(p[i]);
  };
  if (c.dtype() == DType::f32) scan(c.data<float>());
  else scan(c.data<double>());
  return bad;
}

void check_forward(const Node& node, const Tensor& out) {
  if (count_non_finite(out) == 0) return;
  throw ValueError(fmt::format(
      "anomaly: forward of '{}' produced {} in its output of shape {} (inputs: {}). Hint: look at this op's "
      "inputs (a too large learning rate, log/div of 0, overflow in float32)",
      node.name, describe(out), shape_str(out.sizes()), input_shapes(node)));
}

void check_backward(const Node& node, size_t input, const Tensor& grad, const Tensor& grad_out) {
  if (count_non_finite(grad) == 0) return;
  const bool upstream_bad = count_non_finite(grad_out) > 0;
  throw ValueError(fmt::format(
      "anomaly: backward of '{}' returned {} in the gradient of input {} of shape {} (output gradient {}{}; "
      "inputs: {}). Hint: {}",
      node.name, describe(grad), input, shape_str(grad.sizes()), shape_str(grad_out.sizes()),
      upstream_bad ? ", itself non-finite" : ", finite", input_shapes(node),
      upstream_bad ? "the op that consumed this output produced it first"
                   : "this op's backward overflowed or divided by 0 (a too large learning rate, sqrt/log at 0)"));
}

}  // namespace autograd
}  // namespace peft
