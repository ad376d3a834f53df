// TaskRes (methods.md "TaskRes"; geekyutao/TaskRes trainers/taskres.py): the classifier is the raw text
// features u (averaged over templates) plus alpha * taskres.residual, normalised after the sum.
#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/clip_methods.h"
#include "peft/methods/clip_methods.h"

namespace peft::methods {

namespace {

class TaskResHead : public ClipHead {
 public:
  TaskResHead(nn::CLIP& clip, const PromptTokens& p, double alpha) : ClipHead(clip, "taskres"), alpha(alpha) {
    base = ensemble_mean(encode_text_rows(clip, p.ensemble), p.per_class);  // raw, averaged over templates
    num_classes = base.size(0);
    auto holder = std::make_shared<Module>();
    residual = holder->register_parameter("residual", zeros(base.sizes(), base.dtype()));  // R = 0
    register_module("taskres", holder);
  }
  Tensor forward(const Tensor& f) override {
    check_features(f);
    Tensor c = add(base, mul(residual, alpha));  // [K, E]; normalised only after the sum (Decided)
    return mul(matmul(l2_normalize(f), transpose(l2_normalize(c), 0, 1)), clip.logit_scale_exp());
  }
  double alpha;
  Tensor base, residual;
};

}  // namespace

ClipMethodDescriptor clip_taskres_method() {
  ClipMethodDescriptor d;
  d.name = "taskres";
  d.description = "TaskRes: classifier u + alpha * taskres.residual [K,E] (raw u, mean over templates, normalised after the sum)";
  d.option_help = "--alpha a (default 0.5)";
  d.default_alpha = 0.5;
  d.make = [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator&) -> std::shared_ptr<ClipHead> {
    return std::make_shared<TaskResHead>(clip, in.prompts, o.alpha);
  };
  // The base is the raw text feature: its scale sets how far a residual step moves the
  // classifier, so the step follows the mean norm of u (official: lr 2e-3 on RN50's u).
  d.demo_lr = 2e-3;
  d.demo_lr_per_text_norm = true;
  return d;
}

}  // namespace peft::methods
