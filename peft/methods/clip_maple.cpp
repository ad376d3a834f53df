// MaPLe (methods.md "MaPLe"; muzairkhattak/multimodal-prompt-learning trainers/maple.py, clip/model.py
// VisionTransformer_MaPLe, ResidualAttentionBlock_MaPLe): M context vectors at token positions 1..M
// of every class prompt (as CoOp), coupled to M visual prompts proj(ctx) appended at the END of the
// image sequence before ln_pre; deep prompts replace those rows before blocks 1..J-1 of both towers
// (text: deep_text[i-1]; vision: deep_proj_{i-1}(deep_text[i-1])). logits = s norm(f) norm(u)^T.
//
// Both towers change through their token hooks (nn/token_hook.h), which hold the head's tensors
// without registering them: the CLIP's state dict stays a plain CLIP.
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

namespace {

// The tensors both hooks read (handles of the head's parameters).
struct MapleTensors {
  int64_t M = 0, J = 1;
  Tensor ctx;                    // [M, W_t]
  Tensor proj_w, proj_b;         // [W_v, W_t], [W_v]
  Tensor deep_text;              // [J-1, M, W_t] (undefined when J = 1)
  Tensor deep_proj_w, deep_proj_b;  // [J-1, W_v, W_t], [J-1, W_v]
};

// Text tower: before block i (1 <= i <= J-1) rows 1..M <- deep_text[i-1] (no pos-embed; the SOT row
// and everything after the prompts stay). Block 0 sees ctx, placed in the embeddings by the head.
class MapleTextHook : public nn::TokenHook {
 public:
  explicit MapleTextHook(std::shared_ptr<const MapleTensors> t) : t(std::move(t)) {}
  std::string type_name() const override { return "MapleTextHook"; }
  Tensor before_block(int64_t i, const Tensor& x) override {  // x [K, T, W_t]
    if (i < 1 || i > t->J - 1) return x;
    const int64_t K = x.size(0), T = x.size(1), W = x.size(2), M = t->M;
    Tensor deep = expand(unsqueeze(select(t->deep_text, 0, i - 1), 0), {K, M, W});  // [K, M, W_t]
    return cat({narrow(x, 1, 0, 1), deep, narrow(x, 1, 1 + M, T - 1 - M)}, 1);
  }
  std::shared_ptr<const MapleTensors> t;
};

// Vision tower: after the pos-embed, proj(ctx) as M rows at the END (then ln_pre over all rows);
// before block i (1 <= i <= J-1) the last M rows <- deep_proj_{i-1}(deep_text[i-1]).
class MapleVisionHook : public nn::TokenHook {
 public:
  explicit MapleVisionHook(std::shared_ptr<const MapleTensors> t) : t(std::move(t)) {}
  std::string type_name() const override { return "MapleVisionHook"; }
  Tensor after_embed(const Tensor& x) override {  // [B, 1+N, W_v] -> [B, 1+N+M, W_v]
    Tensor v = linear(t->ctx, t->proj_w, t->proj_b);  // [M, W_v]
    return cat({x, expand(unsqueeze(v, 0), {x.size(0), t->M, x.size(2)})}, 1);
  }
  Tensor before_block(int64_t i, const Tensor& x) override {  // [B, 1+N+M, W_v]
    if (i < 1 || i > t->J - 1) return x;
    const int64_t B = x.size(0), T = x.size(1), W = x.size(2), M = t->M;
    Tensor v = linear(select(t->deep_text, 0, i - 1), select(t->deep_proj_w, 0, i - 1),
                      select(t->deep_proj_b, 0, i - 1));  // [M, W_v]
    return cat({narrow(x, 1, 0, T - M), expand(unsqueeze(v, 0), {B, M, W})}, 1);
  }
  int64_t added_tokens() const override { return t->M; }  // after the patches, not after the prefix
  std::shared_ptr<const MapleTensors> t;
};

// ctx init (CTX_INIT "a photo of a", M <= 4): the token embeddings of its first M tokens after SOT.
// Returns an undefined tensor (and the reason) when this CLIP's tokenizer cannot spell it.
Tensor ctx_from_words(nn::CLIP& clip, int64_t M, std::string& why) {
  std::vector<int64_t> ids;
  try {
    nn::TextTokenizer tok(clip.cfg.text, "");
    ids = tok.row("a photo of a");  // [SOT, a, photo, of, a, EOT]
  } catch (const Error& e) {
    why = e.what();
    return Tensor();
  }
  if (static_cast<int64_t>(ids.size()) < M + 2) {
    why = fmt::format("'a photo of a' has {} tokens", ids.size() - 2);
    return Tensor();
  }
  NoGradGuard ng;
  Tensor rows = from_vector_i64(std::vector<int64_t>(ids.begin() + 1, ids.begin() + 1 + M), {M});
  return embedding(clip.token_embedding->weight, rows).clone();  // [M, W_t]
}

class MapleHead : public ClipHead {
 public:
  MapleHead(nn::CLIP& clip, const Tensor& tokens0, const ClipMethodOptions& o, Generator& gen) : ClipHead(clip, "maple") {
    const int64_t M = o.prompts, J = o.depth, Wt = clip.cfg.text.width, Wv = clip.cfg.vision.dim;
    tokens = context_prompt_tokens("maple", tokens0, M);  // [K, Tm]: lines up to the last EOT
    num_classes = tokens.size(0);
    {
      NoGradGuard ng;
      embeddings = embedding(clip.token_embedding->weight, tokens);  // [K, Tm, W_t], frozen
    }
    const DType dt = model_dtype(clip);
    auto t = std::make_shared<MapleTensors>();
    t->M = M;
    t->J = J;
    auto holder = std::make_shared<Module>();
    Tensor ctx0;
    if (M <= 4) ctx0 = ctx_from_words(clip, M, ctx_init);
    if (ctx0.defined())
      ctx_init = "a photo of a";
    else
      ctx0 = randn({M, Wt}, gen, DType::f32, 0.0, 0.02), ctx_init = M <= 4 ? "N(0, 0.02^2) (" + ctx_init + ")" : "N(0, 0.02^2)";
    t->ctx = holder->register_parameter("ctx", ctx0.to(dt));
    auto proj = std::make_shared<nn::Linear>(Wt, Wv, true, gen);  // PyTorch's Linear default
    proj->to(dt);
    holder->register_module("proj", proj);
    t->proj_w = proj->weight;
    t->proj_b = proj->bias;
    if (J > 1) {
      t->deep_text = holder->register_parameter("deep_text", randn({J - 1, M, Wt}, gen, DType::f32, 0.0, 0.02).to(dt));
      // _get_clones: J-1 deep copies of ONE default-initialised Linear, so they start equal.
      nn::Linear one(Wt, Wv, true, gen);
      auto dp = std::make_shared<Module>();
      t->deep_proj_w = dp->register_parameter("weight", expand(unsqueeze(one.weight, 0), {J - 1, Wv, Wt}).to(dt).clone());
      t->deep_proj_b = dp->register_parameter("bias", expand(unsqueeze(one.bias, 0), {J - 1, Wv}).to(dt).clone());
      holder->register_module("deep_proj", dp);
    }
    register_module("maple", holder);
    ctx = t->ctx;
    tensors = t;
    clip.set_text_hook("maple", std::make_shared<MapleTextHook>(t));
    clip.visual->set_token_hook("maple", std::make_shared<MapleVisionHook>(t));
  }
  bool needs_images() const override { return true; }
  // The text features u [K, E]: ctx at rows 1..M, deep prompts through the text hook.
  Tensor text_features() {
    const int64_t K = tokens.size(0), T = tokens.size(1), M = tensors->M, W = ctx.size(1);
    Tensor e = cat({narrow(embeddings, 1, 0, 1), expand(unsqueeze(ctx, 0), {K, M, W}),
                    narrow(embeddings, 1, 1 + M, T - 1 - M)},
                   1);  // [K, T, W_t]: SOT, ctx_0..ctx_{M-1}, the rest of the line
    return clip.encode_text_embeddings(e, tokens);
  }
  Tensor forward(const Tensor& images) override {  // images [B, C, S, S] -> [B, K]
    const nn::ViTConfig& vc = clip.cfg.vision;
    if (images.dim() != 4 || images.size(1) != vc.in_chans || images.size(2) != vc.image_size || images.size(3) != vc.image_size)
      throw ShapeError(fmt::format("maple: prompts the image tower and takes images [B, {}, {}, {}] (got {})", vc.in_chans,
                                   vc.image_size, vc.image_size, shape_str(images.sizes())));
    Tensor f = clip.encode_image(images);  // [B, E], visual prompts through the vision hook
    return mul(matmul(l2_normalize(f), transpose(l2_normalize(text_features()), 0, 1)), clip.logit_scale_exp());
  }
  Tensor tokens, embeddings, ctx;
  std::shared_ptr<MapleTensors> tensors;
  std::string ctx_init;  // how ctx started ("a photo of a", or the random init and why)
};

void validate(const ClipMethodOptions& o, const nn::CLIPConfig& c) {
  const int64_t max_depth = std::min(c.text.layers, c.vision.depth);
  if (o.depth < 1 || o.depth > max_depth)
    throw ValueError(fmt::format("maple: --depth {} is outside [1, {}] (1 <= J <= min(text layers {}, vision layers {}))",
                                 o.depth, max_depth, c.text.layers, c.vision.depth));
}

}  // namespace

ClipMethodDescriptor clip_maple_method() {
  ClipMethodDescriptor d;
  d.name = "maple";
  d.description =
      "MaPLe: maple.ctx [M,W] at text positions 1..M, visual prompts proj(ctx) through ln_pre, deep prompts in both "
      "towers before blocks 1..J-1";
  d.option_help = "--prompts M (default 2), --depth J (default 9; 1 <= J <= min(text, vision layers))";
  d.default_prompts = 2;
  d.uses_prompts = true;
  d.needs_images = [](const ClipMethodOptions&) { return true; };
  d.validate = validate;
  d.make = [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator& gen) -> std::shared_ptr<ClipHead> {
    return std::make_shared<MapleHead>(clip, in.prompts.single, o, gen);
  };
  // The default depth 9 is deeper than a micro model's towers (clip-micro: 2 layers each).
  d.demo_options = [](ClipMethodOptions& o, const nn::CLIPConfig& c) { o.depth = std::min(c.text.layers, c.vision.depth); };
  return d;
}

}  // namespace peft::methods
