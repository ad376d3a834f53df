// LN-TUNE (methods.md "LN-TUNE"; V-PETL Bench ImageClassification/train/train_model_lntune.py): trains
// the LayerNorm affines under their base names; apply_method unfreezes the head.
#include "peft/methods/methods.h"

namespace peft::methods {

MethodDescriptor lntune_method() {
  MethodDescriptor d;
  d.name = "lntune";
  d.description =
      "LN-TUNE: trains every tensor with 'norm' in its name (blocks.*.norm1/norm2, norm; norm_pre, fc_norm "
      "when present) and the head; timm layout; mergeable (peft merge: the trained values replace the base ones)";
  d.timm_only = true;
  // The adapter holds new values of base tensors, no module of its own: "merging" is loading them
  // in place of the base values (methods.md "LN-TUNE"), which attaching the adapter already does. There is
  // nothing to fold, and the result is a plain model.
  d.mergeable = true;
  d.attach = [](nn::VisionTransformer& vit, const MethodOptions&, Generator&) {
    // The official filter: 'norm' (or 'head') in the parameter name. Here that is every
    // LayerNorm of the timm layout (patch_embed.norm is an Identity in timm, with no tensors).
    for (auto& [name, t] : vit.named_parameters())
      if (name.find("norm") != std::string::npos) Tensor(t).requires_grad_(true);
  };
  return d;
}

}  // namespace peft::methods
