// Lab 2 (docs/labs/02-tape.md): a new op on the tape (softplus), checked by gradcheck, and the
// order in which backward visits the recorded ops.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "apps/examples/labs/lab02_tape.h"
#include "autograd/gradcheck.h"
#include "autograd/to_dot.h"
#include "core/random.h"

int main() {
  using namespace peft;
  Generator gen(0);
  Tensor x = randn({4}, gen, DType::f64).requires_grad_();
  Tensor w = randn({4}, gen, DType::f64).requires_grad_();
  Tensor loss = sum(mul(lab02::softplus(x), w));  // three ops on the tape: softplus, mul, sum
  fmt::print("loss = {:.6f}\nbackward runs: {}\n", loss.item(), fmt::join(lab02::backward_order(loss), " -> "));
  fmt::print("{}", autograd::to_dot(loss, {{x.impl(), "x"}, {w.impl(), "w"}}));
  backward(loss);
  fmt::print("dloss/dx = {}\n", x.grad().str());

  // The proof: analytic gradients against central differences in float64.
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return lab02::softplus(in[0]); }, {x});
  fmt::print("gradcheck(softplus): {} (max abs error {:.2e})\n", r.ok ? "PASS" : "FAIL", r.max_abs_error);
  return r.ok ? 0 : 1;
}
