// LoRA (methods.md 11): a rank-r update (alpha/r) B A added to each target linear's output. On the
// openai layout (methods.md 18) the fused q|k|v projection is named {attn}.in_proj.
#include <fmt/format.h>

#include "core/error.h"
#include "peft/methods/methods.h"

namespace peft::methods {

void attach_lora(nn::VisionTransformer& vit, const std::vector<std::string>& linears, int64_t rank, double alpha,
                 Generator& gen) {
  for (const std::string& want : linears) {
    nn::Linear* lin = nullptr;
    nn::Attention* fused = nullptr;  // openai: want = {attn}.in_proj, the attention's fused linear
    for (auto& [name, m] : vit.named_modules()) {
      if (name == want) lin = dynamic_cast<nn::Linear*>(m);
      if (auto* at = dynamic_cast<nn::Attention*>(m); at && at->openai_names && name + ".in_proj" == want) fused = at;
    }
    if (fused) lin = fused->qkv.get();
    if (!lin) throw ValueError(fmt::format("lora: '{}' is not a linear layer of the model", want));
    if (lin->lora_A.defined()) throw StateError(fmt::format("lora: '{}' already has a LoRA update", want));
    // {linear}.lora_A [r, in], {linear}.lora_B [out, r] = 0
    if (fused)
      fused->add_qkv_lora(rank, alpha, gen);  // {attn}.in_proj.lora_A [r, W], .lora_B [3W, r]
    else
      lin->add_lora(rank, alpha, gen);
  }
}

}  // namespace peft::methods
