// SSF / LoRA merge: every fold is per output channel of the op it follows (methods.md 10, 11).
#include "peft/merge.h"

#include <fmt/format.h>

#include "core/error.h"

namespace peft {

bool is_mergeable_method(const std::string& method) { return method == "ssf" || method == "lora"; }

namespace {
bool is_slot(const std::string& name) {
  for (const char* s : {".lora_A", ".lora_B", ".ssf_scale", ".ssf_shift"}) {
    const std::string suffix(s);
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
  }
  return false;
}
}  // namespace

void merge_adapters(nn::VisionTransformer& vit) {
  if (vit.vpt || vit.cvpt) throw ValueError("merge: prompts (vpt, cvpt) cannot be folded into the weights");
  for (auto& b : vit.block_list)
    if (b->adaptmlp) throw ValueError("merge: AdaptFormer adapters cannot be folded into the weights (ReLU)");
  const DType dt = vit.cls_token.dtype();
  vit.to(DType::f64);  // fold in float64, round once at the end
  for (auto& [name, m] : vit.named_modules()) {
    if (auto* lin = dynamic_cast<nn::Linear*>(m)) lin->merge_adapters();          // W' = W + s B A; sc*W, sc*b + sh
    if (auto* ln = dynamic_cast<nn::LayerNorm*>(m)) ln->merge_adapters();         // sc*gamma, sc*beta + sh
    if (auto* pe = dynamic_cast<nn::PatchEmbed*>(m)) pe->merge_adapters();        // conv filters per channel
  }
  vit.to(dt);
}

nn::NamedTensors plain_state_dict(const nn::VisionTransformer& vit) {
  nn::NamedTensors out;
  for (auto& [n, t] : vit.state_dict())
    if (!is_slot(n)) out.emplace_back(n, t);
  return out;
}

}  // namespace peft
