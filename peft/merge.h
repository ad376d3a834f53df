// Folding SSF and LoRA into the base weights (methods.md 10, 11, 18): the result is a plain ViT
// (timm or OpenAI layout).
#pragma once
#include <string>

#include "nn/module.h"
#include "nn/vit.h"

namespace peft {

// Methods whose tensors fold exactly into the base weights.
bool is_mergeable_method(const std::string& method);

// Folds every SSF scale/shift and LoRA update of the model into the weights and biases of the
// ops they modulate, computing in float64 (the model keeps its dtype). Afterwards the slots are
// identities (scale 1, shift 0, B = 0), so the model computes the same function. Throws
// ValueError when the model carries tensors that do not merge (prompts, adapters).
void merge_adapters(nn::VisionTransformer& vit);

// The model's tensors under base names (+ head) without the SSF / LoRA slots: what a plain
// VisionTransformer of the same config loads. Call after merge_adapters.
nn::NamedTensors plain_state_dict(const nn::VisionTransformer& vit);

}  // namespace peft
