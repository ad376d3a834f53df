// BitFit (methods.md 6): trains the backbone's biases; the head is unfrozen by apply_method.
#include "peft/methods/methods.h"

namespace peft::methods {

void attach_bitfit(nn::VisionTransformer& vit) {
  for (auto& [name, t] : vit.named_parameters()) {
    // nn.MultiheadAttention (openai layout) names its fused qkv bias attn.in_proj_bias: the
    // ".bias" suffix rule would miss it, so it is included explicitly (methods.md 18).
    if (name.ends_with(".bias") || name.ends_with(".attn.in_proj_bias")) Tensor(t).requires_grad_(true);
  }
}

}  // namespace peft::methods
