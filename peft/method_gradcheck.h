// The float64 central-difference check of a method on a whole model (`peft gradcheck`): every
// trainable tensor the method defines (and the input images) against the analytic gradients of
// one training step's loss.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "nn/config.h"
#include "peft/method.h"

namespace peft {

struct MethodGradcheckRequest {
  nn::ViTConfig config;
  std::string method = "linear";
  MethodOptions options;
  std::string tensors = "*";  // glob over the trainable tensors' names
  int64_t batch = 2;
  bool input = true;    // check the images' gradient too
  bool perturb = true;  // nudge the trainable tensors (N(0, .02^2)) so zero inits hide nothing
  GradcheckOptions check;
  uint64_t seed = 0;
};

struct MethodGradcheckRow {
  std::string name;  // tensor name, or "input (images)"
  Shape shape;
  int64_t numel = 0;
  double atol = 0;   // the tolerance used: --atol scaled by the tensor's largest gradient below 1
  GradcheckResult result;
};

struct MethodGradcheckReport {
  std::vector<MethodGradcheckRow> rows;
  int64_t elements = 0;
  int failed = 0;
  double worst_abs = 0, worst_rel = 0;
  bool ok() const { return failed == 0; }
};

// Builds the model (seeded), attaches the method, converts to float64 in eval mode (no dropout:
// the function must be deterministic) and checks each selected tensor. on_start gets the element
// count before the (slow) checks; on_row each row as it finishes. ValueError when the glob
// selects nothing.
MethodGradcheckReport gradcheck_method(const MethodGradcheckRequest& r,
                                       const std::function<void(int64_t elements)>& on_start = {},
                                       const std::function<void(const MethodGradcheckRow&)>& on_row = {});

}  // namespace peft
