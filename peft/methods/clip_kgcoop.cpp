// KgCoOp (methods.md "KgCoOp"; htyao89/KgCoOp trainers/kgcoop.py): CoOp's learned context (under CoOp's
// name coop.ctx, so a KgCoOp adapter is a CoOp adapter) plus a knowledge term that keeps the
// learned class features near those of hand-crafted prompts:
//   loss = CE + w * (1 - mean_k cos(t_k, t0_k)),  t = norm(u(ctx)), t0 = norm(u(hand-crafted_k)).
#include <fmt/format.h>

#include <algorithm>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/clip.h"
#include "peft/clip_methods.h"
#include "peft/methods/clip_methods.h"

namespace peft {

Tensor kg_prompt_tokens(const std::string& method, const ClipMethodOptions& o, const nn::TextTokenizer& tok,
                        int64_t num_classes, const std::string& texts_source) {
  if (o.kg_texts.empty()) return Tensor();
  if (method != "kgcoop")
    throw ValueError(fmt::format("--kg-texts {}: only kgcoop uses hand-crafted prompts (method {})", o.kg_texts, method));
  const std::vector<std::string> lines = nn::read_text_lines(o.kg_texts);
  if (static_cast<int64_t>(lines.size()) != num_classes)
    throw ValueError(fmt::format("kgcoop: --kg-texts {} has {} prompts but {} has {} (one hand-crafted prompt per "
                                 "class, in the same order)",
                                 o.kg_texts, lines.size(), texts_source, num_classes));
  return tok.tokenize(lines);
}

namespace methods {

namespace {

class KgCoOpHead : public ClipHead {
 public:
  KgCoOpHead(nn::CLIP& clip, const Tensor& tokens0, const Tensor& kg_tokens, int64_t M, double w, Generator& gen)
      : ClipHead(clip, "kgcoop"), M(M), weight(w) {
    tokens = context_prompt_tokens("kgcoop", tokens0, M);  // [K, Tm]: lines up to the last EOT
    num_classes = tokens.size(0);
    if (!kg_tokens.defined() || kg_tokens.dim() != 2 || kg_tokens.size(0) != num_classes)
      throw ValueError(fmt::format("kgcoop: {} hand-crafted prompts (--kg-texts) for {} classes (expected one per class)",
                                   kg_tokens.defined() && kg_tokens.dim() == 2 ? kg_tokens.size(0) : 0, num_classes));
    {
      NoGradGuard ng;
      embeddings = embedding(clip.token_embedding->weight, tokens);  // [K, Tm, W], frozen
      // t0 [K, E]: the frozen hand-crafted features, computed once (no ctx, no gradient).
      t0 = l2_normalize(frozen_text_features(clip, kg_tokens));
    }
    auto holder = std::make_shared<Module>();
    ctx = holder->register_parameter("ctx", photo_context_init(clip, M, gen));  // [M, W]
    register_module("coop", holder);
  }

  // The text features u [K, E] of the current context (CoOp's, through the frozen text tower).
  Tensor text_features() {
    const int64_t K = tokens.size(0), T = tokens.size(1), W = ctx.size(1);
    Tensor e = cat({narrow(embeddings, 1, 0, 1), expand(unsqueeze(ctx, 0), {K, M, W}),
                    narrow(embeddings, 1, 1 + M, T - 1 - M)},
                   1);  // [K, T, W]: SOT, ctx_0..ctx_{M-1}, the rest of the original line
    return clip.encode_text_embeddings(e, tokens);
  }

  Tensor forward(const Tensor& f) override {
    check_features(f);
    Tensor t = l2_normalize(text_features());  // [K, E]
    // Training and check call extra_loss right after forward: keep t (with its graph) and the
    // context it came from, so that the knowledge term does not run the text tower a second time.
    last_t_ = grad_enabled() ? t : Tensor();
    last_ctx_ = grad_enabled() ? ctx.clone() : Tensor();  // [M, W]: a few KB
    return mul(matmul(l2_normalize(f), transpose(t, 0, 1)), clip.logit_scale_exp());  // [B, K]
  }

  // w * (1 - mean_k cos(t_k, t0_k)): torch CosineSimilarity(dim=1, eps=1e-7) of the two
  // normalised sets, as the official code (not the paper's ||t - t0||^2 = 2(1 - cos)).
  Tensor extra_loss() override {
    // Reuse forward's t only for the very context it saw: an optimizer step or an in-place edit
    // in between (or extra_loss before forward) recomputes. Used once: one forward, one term.
    const bool fresh = last_t_.defined() && grad_enabled() && same_values(last_ctx_, ctx);
    Tensor t = fresh ? last_t_ : l2_normalize(text_features());
    last_t_ = last_ctx_ = Tensor();
    Tensor cos = sum(mul(l2_normalize(t, -1, 1e-7), t0), {1});  // [K]; t0 is already unit norm
    return add(mul(mean(cos), -weight), weight);                  // 0-d
  }

  int64_t M;
  double weight;
  Tensor tokens, embeddings, t0, ctx;

 private:
  static bool same_values(const Tensor& a, const Tensor& b) {
    if (a.dtype() != b.dtype() || a.sizes() != b.sizes()) return false;
    if (a.dtype() == DType::f32) return a.to_vector<float>() == b.to_vector<float>();
    return a.to_vector<double>() == b.to_vector<double>();
  }
  Tensor last_t_, last_ctx_;
};

}  // namespace

ClipMethodDescriptor clip_kgcoop_method() {
  ClipMethodDescriptor d;
  d.name = "kgcoop";
  d.description =
      "KgCoOp: CoOp's coop.ctx [M,W] plus w*(1 - mean cos) between the learned and the hand-crafted prompts' "
      "features";
  d.option_help = "--prompts M (default 4; M = 4 starts from \"a photo of a\"), --kg-weight w (default 8), --kg-texts FILE";
  d.default_prompts = 4;
  d.uses_prompts = true;
  d.validate = [](const ClipMethodOptions& o, const nn::CLIPConfig&) {
    // A negative weight would reward moving away from the hand-crafted prompts.
    if (!(o.kg_weight >= 0))
      throw ValueError(fmt::format("kgcoop: --kg-weight must be >= 0 (got {})", o.kg_weight));
  };
  d.make = [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator& gen) -> std::shared_ptr<ClipHead> {
    return std::make_shared<KgCoOpHead>(clip, in.prompts.single, in.kg_tokens, o.prompts, o.kg_weight, gen);
  };
  d.demo_lr = 2e-3;  // CoOp's
  return d;
}

}  // namespace methods

}  // namespace peft
