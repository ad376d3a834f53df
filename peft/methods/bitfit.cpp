// BitFit (methods.md "BitFit"): trains the backbone's biases; apply_method unfreezes the head.
#include "peft/methods/methods.h"

namespace peft::methods {

MethodDescriptor bitfit_method() {
  MethodDescriptor d;
  d.name = "bitfit";
  d.description =
      "BitFit: trains every *.bias (LayerNorm and patch_embed.proj biases included; openai layout: also "
      "attn.in_proj_bias) and the head";
  d.attach = [](nn::VisionTransformer& vit, const MethodOptions&, Generator&) {
    for (auto& [name, t] : vit.named_parameters()) {
      // nn.MultiheadAttention (openai layout) names its fused qkv bias attn.in_proj_bias: the
      // ".bias" suffix rule would miss it, so it is included explicitly (methods.md "What must match").
      if (name.ends_with(".bias") || name.ends_with(".attn.in_proj_bias")) Tensor(t).requires_grad_(true);
    }
  };
  // The script's "ssf" rule: trainable biases everywhere, so data-grads through every block
  // linear and no weight-grad GEMMs (a bias gradient is a sum, not a GEMM).
  d.script_flops_mode = "ssf";
  return d;
}

}  // namespace peft::methods
