// VPT-shallow and VPT-deep (methods.md 7, 8): prompt tensors for the slots in nn/vit.cpp.
#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "peft/methods/methods.h"

namespace peft::methods {

void attach_vpt(nn::VisionTransformer& vit, int64_t M, bool deep, double prompt_dropout, Generator& gen) {
  if (vit.vpt || vit.cvpt) throw StateError("vpt: the model already has prompts. Hint: attach one method to a fresh model");
  const int64_t D = vit.cfg.dim, L = vit.cfg.depth, P = vit.cfg.patch_size;
  // Xavier-uniform with fan-in 3*P*P (the official code writes 3 whatever in_chans is) and fan-out D.
  const double v = std::sqrt(6.0 / static_cast<double>(3 * P * P + D));
  Tensor p = empty({deep ? L : 1, M, D}, vit.dtype());
  uniform_(p, gen, -v, v);
  auto prompts = std::make_shared<nn::Prompts>();
  prompts->prompts = prompts->register_parameter("prompts", p);  // vpt.prompts, trainable
  vit.vpt = vit.register_module("vpt", prompts);
  vit.vpt_deep = deep;
  vit.prompt_dropout = prompt_dropout;
}

}  // namespace peft::methods
