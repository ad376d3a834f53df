// SSF (methods.md 10): a per-channel scale and shift after each of the 6L+2 ops of the decided list
// (timm names; the openai layout's are those of methods.md 18).
#include <fmt/format.h>

#include "core/error.h"
#include "peft/methods/methods.h"

namespace peft::methods {

void attach_ssf(nn::VisionTransformer& vit, Generator& gen) {
  if (vit.cfg.style != "timm" && vit.cfg.style != "openai_clip_visual")
    throw ValueError(fmt::format("ssf: not defined for style {} (methods.md 18). Hint: use a timm or openai_clip_visual "
                                 "model",
                                 vit.cfg.style));
  // The same op positions on both layouts; openai names in the second column (methods.md 18:
  // "Chosen here for the openai layout", no official code). ln_pre and proj get none there.
  // Registration order = the op order of the forward pass, so adapter files list them that way
  // (openai: attn.out_proj's pair precedes attn.in_proj's, whose holder is registered last).
  vit.patch_embed->add_ssf(gen);   // patch_embed.proj | conv1: on the patch tokens, before CLS and pos-embed
  for (auto& b : vit.block_list) {
    b->norm1->add_ssf(gen);        // blocks.i.norm1     | ln_1           C = D
    b->attn->add_qkv_ssf(gen);     // blocks.i.attn.qkv  | attn.in_proj   C = 3D, before the q|k|v split
    b->attn->proj->add_ssf(gen);   // blocks.i.attn.proj | attn.out_proj  C = D
    b->norm2->add_ssf(gen);        // blocks.i.norm2     | ln_2           C = D
    b->mlp->fc1->add_ssf(gen);     // blocks.i.mlp.fc1   | mlp.c_fc       C = F, before the activation
    b->mlp->fc2->add_ssf(gen);     // blocks.i.mlp.fc2   | mlp.c_proj     C = D
  }
  vit.final_norm().add_ssf(gen);   // norm | ln_post: every token (openai: the CLS row), before pooling
                                   // (fc_norm models: after it)
}

}  // namespace peft::methods
