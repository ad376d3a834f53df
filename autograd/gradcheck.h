// Public float64 gradient check by central differences (like torch.autograd.gradcheck).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft {

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double atol = 1e-5;  // pass when |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-3;
  uint64_t seed = 0;         // for the random projections of large outputs
  int64_t full_jacobian_max_outputs = 32;  // above this, compare 3 random projections v^T J
  bool check_nonzero = true;  // every input that requires grad must get a non-zero gradient
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // empty on success; names input, element, analytic vs numeric on failure
  double max_abs_error = 0;
  double max_rel_error = 0;
  explicit operator bool() const { return ok; }
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks d fn(inputs) / d input for every input that requires grad against central differences.
// Inputs must be float64 (DTypeError otherwise) without stride-0 dims (expand). Also checks that
// frozen inputs get no gradient, that gradients are finite and have the inputs' shapes, and
// that a second backward gives the same result.
GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace peft
