// Folding a mergeable method (SSF, LoRA, ...) into the base weights: the result is a plain ViT
// (timm or OpenAI layout).
#pragma once
#include <string>

#include "nn/module.h"
#include "nn/vit.h"

namespace peft {

// Methods whose tensors fold exactly into the base weights.
bool is_mergeable_method(const std::string& method);

// Folds every installed module of the model's method into the weights and biases of the ops it
// modulates, computing in float64 (the model keeps its dtype). Afterwards those modules are
// identities (e.g. SSF scale 1, shift 0; LoRA B = 0), so the model computes the same function.
// Throws ValueError when the model carries modules that do not merge (prompts, adapters).
void merge_adapters(nn::VisionTransformer& vit);

// The model's tensors under base names (+ head) without the method's own tensors: what a plain
// VisionTransformer of the same config loads. Call after merge_adapters.
nn::NamedTensors plain_state_dict(const nn::VisionTransformer& vit);

}  // namespace peft
