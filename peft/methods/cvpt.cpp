// CVPT (methods.md 9): per-block prompts that the tokens cross-attend to with the block's frozen
// attention weights (the slot is Block::forward's cvpt_prompts argument).
#include <cmath>

#include "core/error.h"
#include "peft/methods/methods.h"

namespace peft::methods {

void attach_cvpt(nn::VisionTransformer& vit, int64_t M, double prompt_dropout, Generator& gen) {
  if (vit.vpt || vit.cvpt) throw StateError("cvpt: the model already has prompts. Hint: attach one method to a fresh model");
  const int64_t D = vit.cfg.dim, L = vit.cfg.depth;
  // xavier_uniform_ on [L, M, D] under PyTorch's fan rule: fan_in = M*D, fan_out = L*D.
  Tensor p = empty({L, M, D}, vit.dtype());
  xavier_uniform_(p, gen);
  auto prompts = std::make_shared<nn::Prompts>();
  prompts->prompts = prompts->register_parameter("prompts", p);  // cvpt.prompts, trainable
  vit.cvpt = vit.register_module("cvpt", prompts);
  vit.prompt_dropout = prompt_dropout;
}

}  // namespace peft::methods
