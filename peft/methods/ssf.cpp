// SSF (methods.md 10): a per-channel scale and shift after each of the 6L+2 ops of the decided list.
#include <fmt/format.h>

#include "core/error.h"
#include "peft/methods/methods.h"

namespace peft::methods {

void attach_ssf(nn::VisionTransformer& vit, Generator& gen) {
  if (vit.cfg.style != "timm")
    throw ValueError(fmt::format("ssf: not defined for style {} (methods.md 18). Hint: use a timm-style model",
                                 vit.cfg.style));
  // Registration order = the op order of the forward pass, so adapter files list them that way.
  vit.patch_embed->add_ssf(gen);  // patch_embed.proj: on the patch tokens, before CLS and pos-embed
  for (auto& b : vit.block_list) {
    b->norm1->add_ssf(gen);        // blocks.i.norm1       C = D
    b->attn->qkv->add_ssf(gen);    // blocks.i.attn.qkv    C = 3D, before the q|k|v split
    b->attn->proj->add_ssf(gen);   // blocks.i.attn.proj   C = D
    b->norm2->add_ssf(gen);        // blocks.i.norm2       C = D
    b->mlp->fc1->add_ssf(gen);     // blocks.i.mlp.fc1     C = F, before the activation
    b->mlp->fc2->add_ssf(gen);     // blocks.i.mlp.fc2     C = D
  }
  vit.norm->add_ssf(gen);          // norm: every token, before pooling
}

}  // namespace peft::methods
