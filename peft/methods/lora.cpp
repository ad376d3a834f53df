// LoRA (methods.md 11): a rank-r update (alpha/r) B A added to each target linear's output.
#include <fmt/format.h>

#include "core/error.h"
#include "peft/methods/methods.h"

namespace peft::methods {

void attach_lora(nn::VisionTransformer& vit, const std::vector<std::string>& linears, int64_t rank, double alpha,
                 Generator& gen) {
  for (const std::string& want : linears) {
    nn::Linear* lin = nullptr;
    for (auto& [name, m] : vit.named_modules())
      if (name == want) lin = dynamic_cast<nn::Linear*>(m);
    if (!lin) throw ValueError(fmt::format("lora: '{}' is not a linear layer of the model", want));
    if (lin->lora_A.defined()) throw StateError(fmt::format("lora: '{}' already has a LoRA update", want));
    lin->add_lora(rank, alpha, gen);  // {linear}.lora_A [r, in], {linear}.lora_B [out, r] = 0
  }
}

}  // namespace peft::methods
