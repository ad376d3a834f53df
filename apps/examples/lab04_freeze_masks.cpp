// Lab 4 (docs/labs/04-freeze-masks.md): freezing layers removes GEMMs and saved activations from a
// training step. Measures a 4-layer Linear stack under several freeze patterns and compares with
// the prediction.
#include <fmt/format.h>

#include <string>

#include "apps/examples/labs/lab04_freeze_masks.h"

int main() {
  using namespace peft;
  const int64_t L = 4, B = 64, W = 128;
  Generator gen(0);
  lab04::LinearStack stack(L, W, gen);
  Tensor x = randn({B, W}, gen);  // data: never trainable
  const std::vector<std::pair<std::string, std::vector<bool>>> patterns = {
      {"full fine-tuning", {true, true, true, true}},
      {"freeze first half", {false, false, true, true}},
      {"linear probe (last only)", {false, false, false, true}},
      {"first layer only", {true, false, false, false}},
      {"all frozen", {false, false, false, false}},
  };
  fmt::print("{:<26} {:>8} {:>9} {:>5} {:>12}   {}\n", "pattern", "fwd GEMM", "bwd GEMM", "ops", "saved bytes", "prediction");
  int wrong = 0;
  for (auto& [name, t] : patterns) {
    stack.set_trainable(t);
    lab04::StepCost m = lab04::measure_step(stack, x);
    lab04::StepCost p = lab04::predict_step(t, B, W, sizeof(float));
    wrong += !(m == p);
    fmt::print("{:<26} {:>8} {:>9} {:>5} {:>12}   {}\n", name, m.forward_gemms, m.backward_gemms, m.ops, m.saved_bytes,
               m == p ? "matches" : "DIFFERS");
  }
  return wrong == 0 ? 0 : 1;
}
