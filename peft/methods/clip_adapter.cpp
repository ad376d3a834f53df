// CLIP-Adapter (methods.md "CLIP-Adapter"; gaopengcuhk/CLIP-Adapter clip_adapter.py): a residual bottleneck on
// the image feature, f' = a relu(fc2(relu(fc1 f))) + (1-a) f, no biases.
#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/clip_methods.h"
#include "peft/methods/clip_methods.h"
#include "nn/linear.h"

namespace peft::methods {

namespace {

class ClipAdapterHead : public ClipHead {
 public:
  ClipAdapterHead(nn::CLIP& clip, const Tensor& tokens, double alpha, Generator& gen)
      : ClipHead(clip, "clip-adapter"), alpha(alpha) {
    classifier = l2_normalize(frozen_text_features(clip, tokens));
    num_classes = classifier.size(0);
    const int64_t E = clip.cfg.embed_dim, R = E / 4;
    if (R < 1) throw ValueError(fmt::format("clip-adapter: embed_dim {} is too small (E/4 must be >= 1)", E));
    auto holder = std::make_shared<Module>();
    fc1 = holder->register_module("fc1", std::make_shared<nn::Linear>(E, R, false, gen));  // U(+-1/sqrt(E))
    fc2 = holder->register_module("fc2", std::make_shared<nn::Linear>(R, E, false, gen));  // U(+-1/sqrt(E/4))
    register_module("clip_adapter", holder);
    holder->to(model_dtype(clip));
  }
  Tensor forward(const Tensor& f) override {
    check_features(f);
    Tensor g = relu(fc2->forward(relu(fc1->forward(f))));  // the final ReLU is part of the adapter (Decided)
    Tensor f2 = add(mul(g, alpha), mul(f, 1.0 - alpha));
    return mul(matmul(l2_normalize(f2), transpose(classifier, 0, 1)), clip.logit_scale_exp());
  }
  double alpha;
  Tensor classifier;
  std::shared_ptr<nn::Linear> fc1, fc2;
};

}  // namespace

ClipMethodDescriptor clip_adapter_method() {
  ClipMethodDescriptor d;
  d.name = "clip-adapter";
  d.description = "CLIP-Adapter: f' = a*relu(fc2(relu(fc1 f))) + (1-a)*f, fc1 [E/4,E], fc2 [E,E/4], no biases";
  d.option_help = "--alpha a (default 0.2)";
  d.default_alpha = 0.2;
  d.make = [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator& gen) -> std::shared_ptr<ClipHead> {
    return std::make_shared<ClipAdapterHead>(clip, in.prompts.single, o.alpha, gen);
  };
  return d;
}

}  // namespace peft::methods
