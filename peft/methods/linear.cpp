// Linear probe (methods.md "Linear probe"): the backbone stays frozen; apply_method unfreezes the fresh head.
#include "peft/methods/methods.h"

namespace peft::methods {

MethodDescriptor linear_method() {
  MethodDescriptor d;
  d.name = "linear";
  d.description = "linear probe: frozen backbone, trains the head";
  d.demo_lr = 1e-2;  // heads and prompts like larger steps
  d.attach = [](nn::VisionTransformer&, const MethodOptions&, Generator&) {};
  d.script_flops_mode = "linear";
  return d;
}

}  // namespace peft::methods
