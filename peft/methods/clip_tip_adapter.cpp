// Tip-Adapter and Tip-Adapter-F (methods.md "Tip-Adapter"; gaopengcuhk/Tip-Adapter main.py, utils.py): zero-shot
// logits plus a training-free cache of the few-shot features (Tip-Adapter-F trains the keys).
#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/clip_methods.h"
#include "peft/methods/clip_methods.h"

namespace peft::methods {

namespace {

class TipAdapterHead : public ClipHead {
 public:
  TipAdapterHead(nn::CLIP& clip, const PromptTokens& p, bool finetune, double alpha, double beta, const Tensor& keys,
                 const Tensor& labels)
      : ClipHead(clip, finetune ? "tip-adapter-f" : "tip-adapter"), alpha(alpha), beta(beta) {
    classifier = zero_shot_classifier(clip, p);  // the official code's template ensemble
    const int64_t K = classifier.size(0), E = clip.cfg.embed_dim;
    num_classes = K;
    if (!keys.defined() || !labels.defined())
      throw ValueError(fmt::format("{}: needs a cache (tip.cache_keys [NK, E] and tip.cache_labels [NK]). Hint: give "
                                   "the few-shot images or an adapter file holding the cache",
                                   method));
    if (keys.dim() != 2 || keys.size(1) != E || labels.dim() != 1 || labels.size(0) != keys.size(0) ||
        labels.dtype() != DType::i64)
      throw ShapeError(fmt::format("{}: cache keys {} / labels {} {} (expected [NK, {}] and int64 [NK])", method,
                                   shape_str(keys.sizes()), dtype_name(labels.dtype()), shape_str(labels.sizes()), E));
    const std::vector<int64_t> y = labels.to_vector<int64_t>();
    for (size_t n = 0; n < y.size(); ++n)
      if (y[n] < 0 || y[n] >= K)
        throw ValueError(fmt::format("{}: tip.cache_labels[{}] = {} is outside [0, {}) (K = the number of prompt lines)",
                                     method, n, y[n], K));
    auto holder = std::make_shared<Module>();
    cache_keys = holder->register_parameter("cache_keys", keys.to(model_dtype(clip)), /*requires_grad=*/finetune);
    cache_labels = holder->register_buffer("cache_labels", labels.clone());
    register_module("tip", holder);
  }
  Tensor forward(const Tensor& f) override {
    check_features(f);
    Tensor nf = l2_normalize(f);
    Tensor clip_logits = mul(matmul(nf, transpose(classifier, 0, 1)), 100.0);  // the official constant, not s
    // exp(-(beta - beta A)) onehot(labels), A = nf keys^T [B, NK]: one fused op (keys not re-normalised)
    Tensor cache_logits = tip_cache_logits(nf, cache_keys, cache_labels, num_classes, beta);
    return add(clip_logits, mul(cache_logits, alpha));
  }
  double alpha, beta;
  Tensor classifier, cache_keys, cache_labels;
};

}  // namespace

ClipMethodDescriptor clip_tip_adapter_method(bool finetune) {
  ClipMethodDescriptor d;
  d.name = finetune ? "tip-adapter-f" : "tip-adapter";
  d.description = finetune ? "Tip-Adapter-F: Tip-Adapter with trainable tip.cache_keys [NK,E]"
                           : "Tip-Adapter: 100 norm(f) norm(u)^T + alpha exp(-beta (1 - norm(f) keys^T)) onehot(labels); "
                             "training-free cache of the few-shot features";
  d.option_help = "--alpha a (default 1.17), --beta b (default 1)";
  d.default_alpha = 1.17;
  d.needs_cache = true;
  d.make = finetune ? [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator&) -> std::shared_ptr<ClipHead> {
    return std::make_shared<TipAdapterHead>(clip, in.prompts, true, o.alpha, o.beta, in.cache_keys, in.cache_labels);
  } : [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator&) -> std::shared_ptr<ClipHead> {
    return std::make_shared<TipAdapterHead>(clip, in.prompts, false, o.alpha, o.beta, in.cache_keys, in.cache_labels);
  };
  return d;
}

}  // namespace peft::methods
