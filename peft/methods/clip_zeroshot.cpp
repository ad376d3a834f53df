// Zero-shot CLIP (methods.md "Zero-shot CLIP"): logits = s * norm(f) c^T, c = norm(mean_t norm(u)) over each
// class's prompts (norm(u) for one prompt per class).
#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/clip_methods.h"
#include "peft/methods/clip_methods.h"

namespace peft::methods {

namespace {

class ZeroShotHead : public ClipHead {
 public:
  ZeroShotHead(nn::CLIP& clip, const PromptTokens& p) : ClipHead(clip, "zeroshot") {
    classifier = zero_shot_classifier(clip, p);
    num_classes = classifier.size(0);
  }
  Tensor forward(const Tensor& f) override {
    check_features(f);
    return mul(matmul(l2_normalize(f), transpose(classifier, 0, 1)), clip.logit_scale_exp());
  }
  Tensor classifier;  // [K, E], normalised
};

}  // namespace

ClipMethodDescriptor clip_zeroshot_method() {
  ClipMethodDescriptor d;
  d.name = "zeroshot";
  d.description =
      "zero-shot CLIP: s * norm(f) c^T, c = norm(u) of the --texts lines, or the template ensemble norm(mean_t "
      "norm(u)) with --classnames/--templates";
  d.make = [](nn::CLIP& clip, const ClipMethodOptions&, const ClipHeadInputs& in, Generator&) -> std::shared_ptr<ClipHead> {
    return std::make_shared<ZeroShotHead>(clip, in.prompts);
  };
  return d;
}

}  // namespace peft::methods
