// AdaptFormer (methods.md 12): a bottleneck adapter parallel to each block's MLP, fed the
// post-attention stream, scaled by 0.1 (the slot is Block::adaptmlp).
#include "core/error.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {
constexpr double kAdapterDropout = 0.1;  // on the ReLU output, training only (official default)
}

void attach_adaptformer(nn::VisionTransformer& vit, int64_t bottleneck, Generator& gen) {
  for (auto& b : vit.block_list) {
    if (b->adaptmlp) throw StateError("adaptformer: the model already has adapters. Hint: attach one method to a fresh model");
    auto a = std::make_shared<nn::AdaptMlp>(vit.cfg.dim, bottleneck, kAdapterDropout, gen, &vit.drop_gen);
    if (vit.dtype() != DType::f32) a->to(vit.cls_token.dtype());
    a->train(vit.is_training());  // a model in eval mode must not get an adapter that drops out
    b->adaptmlp = b->register_module("adaptmlp", a);  // trainable: registered parameters default to requires_grad
  }
}

}  // namespace peft::methods
