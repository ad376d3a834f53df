// CoOp (methods.md "CoOp"; KaiyangZhou/CoOp trainers/coop.py): M learned context vectors replace the
// token embeddings at positions 1..M of every class prompt, through the frozen text tower.
#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/clip_methods.h"
#include "peft/methods/clip_methods.h"
#include "nn/clip.h"

namespace peft::methods {

namespace {

class CoOpHead : public ClipHead {
 public:
  CoOpHead(nn::CLIP& clip, const Tensor& tokens0, int64_t M, Generator& gen) : ClipHead(clip, "coop"), M(M) {
    tokens = context_prompt_tokens("coop", tokens0, M);  // [K, Tm]: lines up to the last EOT
    num_classes = tokens.size(0);
    {
      NoGradGuard ng;
      embeddings = embedding(clip.token_embedding->weight, tokens);  // [K, Tm, W], frozen
    }
    const int64_t W = clip.cfg.text.width;
    auto holder = std::make_shared<Module>();
    ctx = holder->register_parameter("ctx", randn({M, W}, gen, DType::f32, 0.0, 0.02).to(model_dtype(clip)));
    register_module("coop", holder);
  }
  // The text features u [K, E] of the current context (through the frozen text tower).
  Tensor text_features() {
    const int64_t K = tokens.size(0), T = tokens.size(1), W = ctx.size(1);
    Tensor e = cat({narrow(embeddings, 1, 0, 1), expand(unsqueeze(ctx, 0), {K, M, W}),
                    narrow(embeddings, 1, 1 + M, T - 1 - M)},
                   1);  // [K, T, W]: SOT, ctx_0..ctx_{M-1}, the rest of the original line
    return clip.encode_text_embeddings(e, tokens);
  }
  Tensor forward(const Tensor& f) override {
    check_features(f);
    return mul(matmul(l2_normalize(f), transpose(l2_normalize(text_features()), 0, 1)), clip.logit_scale_exp());
  }
  int64_t M;
  Tensor tokens, embeddings, ctx;
};

}  // namespace

ClipMethodDescriptor clip_coop_method() {
  ClipMethodDescriptor d;
  d.name = "coop";
  d.description = "CoOp: coop.ctx [M,W] replaces the token embeddings at positions 1..M, through the frozen text tower";
  d.option_help = "--prompts M (default 16)";
  d.uses_prompts = true;
  d.make = [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator& gen) -> std::shared_ptr<ClipHead> {
    return std::make_shared<CoOpHead>(clip, in.prompts.single, o.prompts, gen);
  };
  d.demo_lr = 2e-3;  // CoOp's
  // "a photo of a" -> 4 learned context vectors (the demo's prompts are that template)
  d.demo_options = [](ClipMethodOptions& o, const nn::CLIPConfig&) { o.prompts = 4; };
  return d;
}

}  // namespace peft::methods
