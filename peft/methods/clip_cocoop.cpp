// CoCoOp (methods.md "CoCoOp"; KaiyangZhou/CoOp trainers/cocoop.py): CoOp's M context vectors at
// positions 1..M, each shifted per image by a meta-net of the normalised image feature, so every
// image gets its own K class prompts through the frozen text tower.
//
// The official code loops over the images (one text pass of K prompts each); here a batch of B
// images is one text pass over B*K prompts, which gives the same numbers (the tower acts per
// sequence) at one large GEMM per layer instead of B small ones.
#include <fmt/format.h>

#include <algorithm>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/clip.h"
#include "nn/linear.h"
#include "peft/clip_methods.h"
#include "peft/methods/clip_methods.h"

namespace peft::methods {

Tensor photo_context_init(nn::CLIP& clip, int64_t M, Generator& gen) {
  const int64_t W = clip.cfg.text.width;
  if (M == 4) {
    // The official CTX_INIT "a photo of a": token_embedding(tokenize(phrase))[0, 1:1+M], i.e. the
    // raw token embeddings (no position embedding) of the 4 words after SOT.
    std::vector<int64_t> row;
    try {
      row = nn::TextTokenizer(clip.cfg.text, "").row("a photo of a");
    } catch (const Error&) {
      // No tokenizer for this config (no BPE merges file found, or a vocabulary larger than the
      // model's): the "otherwise" init below, which methods.md allows for any M.
      row.clear();
    }
    if (row.size() == static_cast<size_t>(M) + 2) {
      NoGradGuard ng;
      Tensor ids = from_vector_i64(std::vector<int64_t>(row.begin() + 1, row.begin() + 1 + M), {M});
      return embedding(clip.token_embedding->weight, ids).clone();  // [M, W], a copy: not tied to the tower
    }
  }
  return randn({M, W}, gen, DType::f32, 0.0, 0.02).to(model_dtype(clip));  // N(0, 0.02^2), as CoOp
}

namespace {

class CoCoOpHead : public ClipHead {
 public:
  CoCoOpHead(nn::CLIP& clip, const Tensor& tokens0, int64_t M, Generator& gen) : ClipHead(clip, "cocoop"), M(M) {
    const int64_t E = clip.cfg.embed_dim, W = clip.cfg.text.width;
    if (E < 16)
      throw ValueError(fmt::format("cocoop: embed_dim {} < 16: the meta-net's hidden size E/16 would be 0 (it needs a "
                                   "CLIP with embed_dim >= 16)",
                                   E));
    tokens = context_prompt_tokens("cocoop", tokens0, M);  // [K, Tm]: lines up to the last EOT
    num_classes = tokens.size(0);
    {
      NoGradGuard ng;
      Tensor e = embedding(clip.token_embedding->weight, tokens);  // [K, Tm, W], frozen
      prefix = contiguous(narrow(e, 1, 0, 1));                    // [K, 1, W]: SOT
      suffix = contiguous(narrow(e, 1, 1 + M, tokens.size(1) - 1 - M));  // [K, Tm-1-M, W]: the rest of the line
    }
    auto holder = std::make_shared<Module>();
    ctx = holder->register_parameter("ctx", photo_context_init(clip, M, gen));  // [M, W]
    auto meta = std::make_shared<Module>();
    // nn.Linear(E, E/16) -> ReLU -> nn.Linear(E/16, W), PyTorch's default init U(+-1/sqrt(fan_in)).
    linear1 = meta->register_module("linear1", std::make_shared<nn::Linear>(E, E / 16, true, gen));
    linear2 = meta->register_module("linear2", std::make_shared<nn::Linear>(E / 16, W, true, gen));
    meta->to(model_dtype(clip));
    holder->register_module("meta_net", meta);
    register_module("cocoop", holder);
  }

  // The meta-net's shift pi [B, W] of the normalised features fn [B, E] (the official
  // CustomCLIP.forward normalises before calling the prompt learner).
  Tensor meta_shift(const Tensor& fn) const { return linear2->forward(relu(linear1->forward(fn))); }

  // Raw text features u [B*K, E] (row b*K + k: class k's prompt for image b) of the contexts
  // ctx + pi_b, in one text-tower pass. pi: [B, W].
  Tensor text_features(const Tensor& pi) {
    const int64_t B = pi.size(0), K = tokens.size(0), T = tokens.size(1), W = ctx.size(1);
    Tensor ctx_b = add(unsqueeze(ctx, 0), unsqueeze(pi, 1));  // [B, M, W]: every row shifted by pi_b
    Tensor e = cat({expand(unsqueeze(prefix, 0), {B, K, 1, W}), expand(unsqueeze(ctx_b, 1), {B, K, M, W}),
                    expand(unsqueeze(suffix, 0), {B, K, T - 1 - M, W})},
                   2);  // [B, K, T, W]: SOT, ctx + pi_b, the rest of line k
    return clip.encode_text_embeddings(reshape(e, {B * K, T, W}), repeated_tokens(B));
  }

  Tensor forward(const Tensor& f) override {
    check_features(f);
    const int64_t B = f.size(0), K = tokens.size(0);
    Tensor fn = l2_normalize(f);  // [B, E]
    // Without autograd (evaluation) the activations of B*K prompts are not kept for a backward
    // pass, but a 512-image evaluation batch would still hold 512*K sequences at once: cut it into
    // groups of images of at most kMaxRows prompts. With autograd the batch is one pass.
    const int64_t group = grad_enabled() ? B : std::max<int64_t>(1, kMaxRows / std::max<int64_t>(1, K));
    std::vector<Tensor> parts;
    for (int64_t lo = 0; lo < B; lo += group) {
      const int64_t n = std::min(group, B - lo);
      Tensor fb = n == B ? fn : narrow(fn, 0, lo, n);  // [n, E]
      Tensor un = l2_normalize(reshape(text_features(meta_shift(fb)), {n, K, -1}));  // [n, K, E]
      // logits[b, k] = fn_b . norm(u_b)_k: one [K,E] x [E,1] product per image.
      parts.push_back(reshape(matmul(un, unsqueeze(fb, 2)), {n, K}));
    }
    Tensor logits = parts.size() == 1 ? parts[0] : cat(parts, 0);
    return mul(logits, clip.logit_scale_exp());
  }

  static constexpr int64_t kMaxRows = 1024;  // prompts per text pass without autograd
  int64_t M;
  Tensor tokens, prefix, suffix, ctx;
  std::shared_ptr<nn::Linear> linear1, linear2;

 private:
  // tokens [K, T] repeated B times -> [B*K, T] (pooling positions of the B*K prompts), cached per B.
  const Tensor& repeated_tokens(int64_t B) {
    if (!rep_tokens_.defined() || rep_tokens_.size(0) != B * tokens.size(0)) {
      const std::vector<int64_t> one = tokens.to_vector<int64_t>();
      std::vector<int64_t> all;
      all.reserve(one.size() * static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) all.insert(all.end(), one.begin(), one.end());
      rep_tokens_ = from_vector_i64(all, {B * tokens.size(0), tokens.size(1)});
    }
    return rep_tokens_;
  }
  Tensor rep_tokens_;
};

}  // namespace

ClipMethodDescriptor clip_cocoop_method() {
  ClipMethodDescriptor d;
  d.name = "cocoop";
  d.description =
      "CoCoOp: cocoop.ctx [M,W] at positions 1..M shifted per image by meta_net(norm f) [B,W] "
      "(linear1 [E/16,E], ReLU, linear2 [W,E/16]); B*K prompts per batch";
  d.option_help = "--prompts M (default 4; M = 4 starts from \"a photo of a\")";
  d.default_prompts = 4;
  d.uses_prompts = true;
  d.make = [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator& gen) -> std::shared_ptr<ClipHead> {
    return std::make_shared<CoCoOpHead>(clip, in.prompts.single, o.prompts, gen);
  };
  d.demo_lr = 2e-3;  // CoOp's
  return d;
}

}  // namespace peft::methods
