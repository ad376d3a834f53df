// Full fine-tuning (methods.md "Full fine-tune"): every tensor trains.
#include "peft/methods/methods.h"

namespace peft::methods {

MethodDescriptor full_method() {
  MethodDescriptor d;
  d.name = "full";
  d.description = "full fine-tuning: every tensor trains";
  d.demo_lr = 1e-3;
  d.demo_weight_decay = 0.05;
  d.attach = [](nn::VisionTransformer& vit, const MethodOptions&, Generator&) {
    for (auto& [_, p] : vit.named_parameters()) Tensor(p).requires_grad_(true);
  };
  d.script_flops_mode = "full";
  return d;
}

}  // namespace peft::methods
