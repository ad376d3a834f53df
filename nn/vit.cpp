// ViT forward pass (timm and OpenAI layouts) and the hooks PEFT methods use.
#include "nn/vit.h"

#include <fmt/format.h>

#include <cmath>

#include "autograd/ops.h"
#include "core/error.h"

namespace peft::nn {

namespace {
bool openai(const ViTConfig& c) { return c.style == "openai_clip_visual"; }

// timm init for Linear layers: trunc_normal(std=.02) weights, zero biases.
void timm_init(Linear& l, Generator& gen) {
  trunc_normal_(l.weight, gen, 0.02);
  if (l.bias.defined()) l.bias.fill_(0.0);
}
}  // namespace

// ---------------------------------------------------------------- PatchEmbed

PatchEmbed::PatchEmbed(const ViTConfig& c, bool has_bias, Generator& gen) {
  Tensor w = empty({c.dim, c.in_chans, c.patch_size, c.patch_size});
  kaiming_uniform_(w, gen, std::sqrt(5.0));  // PyTorch's Conv2d default
  weight = register_parameter("weight", w);
  if (has_bias) {
    double bound = 1.0 / std::sqrt(static_cast<double>(c.in_chans * c.patch_size * c.patch_size));
    bias = register_parameter("bias", rand({c.dim}, gen, DType::f32, -bound, bound));
  }
}

Tensor PatchEmbed::forward(const Tensor& images) const {
  Tensor t = conv2d_patch(images, weight, bias);  // [B, N, D]
  if (ssf_scale.defined()) t = ssf_apply(t, ssf_scale, ssf_shift);
  return t;
}

void PatchEmbed::add_ssf(Generator& gen) {
  const int64_t d = weight.size(0);
  ssf_scale = register_parameter("ssf_scale", randn({d}, gen, weight.dtype(), 1.0, 0.02));
  ssf_shift = register_parameter("ssf_shift", randn({d}, gen, weight.dtype(), 0.0, 0.02));
}

void PatchEmbed::merge_adapters(const Tensor& shift_rows) {
  if (!ssf_scale.defined()) return;
  if (!bias.defined() && !shift_rows.defined())
    throw StateError("PatchEmbed: merging SSF into a conv without a bias needs the position-embedding rows");
  NoGradGuard ng;
  weight.copy_(mul(weight, reshape(ssf_scale, {-1, 1, 1, 1})));
  if (bias.defined())
    bias.copy_(add(mul(bias, ssf_scale), ssf_shift));
  else  // t*sc + sh + pos[1+n] = (t*sc) + (pos[1+n] + sh): exact, the pos-embed add follows at once
    Tensor(shift_rows).copy_(add(shift_rows, reshape(ssf_shift, {1, -1})));
  ssf_scale.fill_(1.0);
  ssf_shift.fill_(0.0);
}

// ---------------------------------------------------------------- Attention

Attention::Attention(const ViTConfig& c, Generator& gen) : dim(c.dim), heads(c.heads) {
  qkv = std::make_shared<Linear>(c.dim, 3 * c.dim, c.qkv_bias, gen);
  proj = std::make_shared<Linear>(c.dim, c.dim, true, gen);
  timm_init(*qkv, gen);
  timm_init(*proj, gen);
  openai_names = openai(c);
  if (openai_names) {  // nn.MultiheadAttention names: the fused projection's tensors sit on attn
    register_parameter("in_proj_weight", qkv->weight);
    register_parameter("in_proj_bias", qkv->bias);
    register_module("out_proj", proj);
  } else {
    register_module("qkv", qkv);
    register_module("proj", proj);
  }
}

namespace {
// openai: the "in_proj" child holding the fused linear's PEFT slots, registered on first use.
Module& in_proj_holder(Attention& a) {
  if (!a.in_proj) a.in_proj = a.register_module("in_proj", std::make_shared<Module>());
  return *a.in_proj;
}
}  // namespace

void Attention::add_qkv_lora(int64_t rank, double alpha, Generator& gen) {
  qkv->add_lora(rank, alpha, gen);  // registered on qkv, which is a child only in the timm layout
  if (!openai_names) return;
  in_proj_holder(*this).register_parameter("lora_A", qkv->lora_A);
  in_proj->register_parameter("lora_B", qkv->lora_B);
}

void Attention::add_qkv_ssf(Generator& gen) {
  qkv->add_ssf(gen);
  if (!openai_names) return;
  in_proj_holder(*this).register_parameter("ssf_scale", qkv->ssf_scale);
  in_proj->register_parameter("ssf_shift", qkv->ssf_shift);
}

Tensor Attention::forward(const Tensor& x) const {
  const int64_t B = x.size(0), T = x.size(1), hd = dim / heads;
  // [B, T, 3D] viewed as [B, T, 3, H, hd]; q, k, v are strided head views: no copies.
  Tensor qkv5 = reshape(qkv->forward(x), {B, T, 3, heads, hd});
  Tensor q = transpose(select(qkv5, 2, 0), 1, 2);  // [B, H, T, hd]
  Tensor k = transpose(select(qkv5, 2, 1), 1, 2);
  Tensor v = transpose(select(qkv5, 2, 2), 1, 2);
  if (keep_attention) last_attention = attention_probs(q.detach(), k.detach());
  Tensor o = scaled_dot_product_attention(q, k, v);             // [B, H, T, hd]
  return proj->forward(reshape(transpose(o, 1, 2), {B, T, dim}));  // heads concatenated in order
}

Tensor Attention::cross(const Tensor& xq, const Tensor& xkv) const {
  const int64_t B = xq.size(0), Tq = xq.size(1), Bk = xkv.size(0), Tk = xkv.size(1), hd = dim / heads;
  // Rows [0,D) of the fused weight are Wq, [D,2D) Wk, [2D,3D) Wv (methods.md 0): views, no copies.
  Tensor wq = narrow(qkv->weight, 0, 0, dim), wk = narrow(qkv->weight, 0, dim, dim), wv = narrow(qkv->weight, 0, 2 * dim, dim);
  Tensor bq, bk, bv;  // undefined without a qkv bias
  if (qkv->bias.defined()) bq = narrow(qkv->bias, 0, 0, dim), bk = narrow(qkv->bias, 0, dim, dim), bv = narrow(qkv->bias, 0, 2 * dim, dim);
  Tensor q = transpose(reshape(linear(xq, wq, bq), {B, Tq, heads, hd}), 1, 2);
  // Keys and values of the prompts are computed once for the batch and broadcast (stride 0).
  Tensor k = transpose(reshape(linear(xkv, wk, bk), {Bk, Tk, heads, hd}), 1, 2);
  Tensor v = transpose(reshape(linear(xkv, wv, bv), {Bk, Tk, heads, hd}), 1, 2);
  if (Bk != B) {
    k = expand(k, {B, heads, Tk, hd});
    v = expand(v, {B, heads, Tk, hd});
  }
  Tensor o = scaled_dot_product_attention(q, k, v);
  return linear(reshape(transpose(o, 1, 2), {B, Tq, dim}), proj->weight, proj->bias);
}

// ---------------------------------------------------------------- Mlp, AdaptMlp

Mlp::Mlp(const ViTConfig& c, Generator& gen, Generator* drop_gen) : act(c.act) {
  fc1 = std::make_shared<Linear>(c.dim, c.mlp_hidden(), true, gen);
  fc2 = std::make_shared<Linear>(c.mlp_hidden(), c.dim, true, gen);
  timm_init(*fc1, gen);
  timm_init(*fc2, gen);
  register_module(openai(c) ? "c_fc" : "fc1", fc1);
  register_module(openai(c) ? "c_proj" : "fc2", fc2);
  drop = std::make_shared<Dropout>(c.dropout, drop_gen);
}

Tensor Mlp::forward(const Tensor& x) const {
  Tensor h = fc1->forward(x);
  // With no dropout between them, GELU and fc2 run as one op that saves only h.
  if (act == "gelu" && (drop->p == 0 || !drop->is_training())) return drop->forward(fc2->forward_after_gelu(std::move(h)));
  h = act == "quick_gelu" ? quick_gelu(h) : gelu(h);
  return drop->forward(fc2->forward(drop->forward(h)));
}

AdaptMlp::AdaptMlp(int64_t dim, int64_t b, double p, Generator& gen, Generator* drop_gen) {
  down_proj = register_module("down_proj", std::make_shared<Linear>(dim, b, true, gen));
  up_proj = register_module("up_proj", std::make_shared<Linear>(b, dim, true, gen));
  // AdaptFormer "lora" init: down kaiming-uniform(a=sqrt 5) (the Linear default), the rest 0.
  down_proj->bias.fill_(0.0);
  up_proj->weight.fill_(0.0);
  up_proj->bias.fill_(0.0);
  drop = std::make_shared<Dropout>(p, drop_gen);
}

Tensor AdaptMlp::forward(const Tensor& x) const {
  return mul(up_proj->forward(drop->forward(relu(down_proj->forward(x)))), scale);
}

// ---------------------------------------------------------------- LayerScale, Block

LayerScale::LayerScale(int64_t dim, double init_value) {
  gamma = register_parameter("gamma", full({dim}, init_value));
}

Tensor LayerScale::forward(const Tensor& x) const { return mul(x, gamma); }

Block::Block(const ViTConfig& c, double dp, Generator& gen, Generator* drop_gen) {
  norm1 = std::make_shared<LayerNorm>(c.dim, c.ln_eps);
  attn = std::make_shared<Attention>(c, gen);
  norm2 = std::make_shared<LayerNorm>(c.dim, c.ln_eps);
  mlp = std::make_shared<Mlp>(c, gen, drop_gen);
  register_module(openai(c) ? "ln_1" : "norm1", norm1);
  register_module("attn", attn);
  register_module(openai(c) ? "ln_2" : "norm2", norm2);
  register_module("mlp", mlp);
  if (c.layer_scale) {  // timm registers ls1 after attn and ls2 after mlp
    ls1 = std::make_shared<LayerScale>(c.dim, 1e-5);
    ls2 = std::make_shared<LayerScale>(c.dim, 1e-5);
    register_module("ls1", ls1);
    register_module("ls2", ls2);
  }
  drop_path = std::make_shared<DropPath>(dp, drop_gen);
}

Tensor Block::forward(const Tensor& x0, const Tensor& cvpt_prompts) const {
  Tensor a = attn->forward(norm1->forward(x0));
  if (ls1) a = ls1->forward(a);
  Tensor x = add(x0, drop_path->forward(a));
  // CVPT (methods.md 9): tokens attend to this block's prompts with the frozen attention weights;
  // the raw residual stream is the query (no LayerNorm), the sequence length is unchanged.
  if (cvpt_prompts.defined()) x = add(x, attn->cross(x, cvpt_prompts));
  Tensor m = mlp->forward(norm2->forward(x));
  if (ls2) m = ls2->forward(m);
  Tensor y = drop_path->forward(m);
  // AdaptFormer (methods.md 12): parallel to the MLP, fed the post-attention stream x.
  if (adaptmlp) y = add(y, adaptmlp->forward(x));
  return add(x, y);
}

// ---------------------------------------------------------------- VisionTransformer

VisionTransformer::VisionTransformer(const ViTConfig& c, uint64_t seed) : cfg(c), drop_gen(seed ^ 0x5eedULL) {
  c.validate();
  Generator gen(seed);
  const int64_t D = c.dim, N = c.num_patches();
  // timm builds the patch conv without bias when a norm_pre follows (bias=not pre_norm)
  patch_embed = std::make_shared<PatchEmbed>(c, !openai(c) && !c.norm_pre, gen);
  if (openai(c)) {
    register_module("conv1", patch_embed);
  } else {  // timm: patch_embed.proj.{weight,bias}
    auto pe = std::make_shared<Module>();
    pe->register_module("proj", patch_embed);
    register_module("patch_embed", pe);
  }
  if (openai(c)) {
    // OpenAI CLIP init: class and positional embeddings ~ N(0, W^-0.5 ^ 2)... scaled as in clip/model.py.
    double scale = 1.0 / std::sqrt(static_cast<double>(D));
    cls_token = register_parameter("class_embedding", randn({D}, gen, DType::f32, 0.0, scale));
    pos_embed = register_parameter("positional_embedding", randn({1 + N, D}, gen, DType::f32, 0.0, scale));
    ln_pre = register_module("ln_pre", std::make_shared<LayerNorm>(D, c.ln_eps));
  } else {  // timm registers cls_token, reg_token, pos_embed in this order
    if (c.class_token) cls_token = register_parameter("cls_token", randn({1, 1, D}, gen, DType::f32, 0.0, 1e-6));
    if (c.reg_tokens > 0) reg_token = register_parameter("reg_token", randn({1, c.reg_tokens, D}, gen, DType::f32, 0.0, 1e-6));
    Tensor pe = empty({1, c.pos_embed_rows(), D});
    trunc_normal_(pe, gen, 0.02);
    pos_embed = register_parameter("pos_embed", pe);
    if (c.norm_pre) ln_pre = register_module("norm_pre", std::make_shared<LayerNorm>(D, c.ln_eps));
  }
  (void)N;
  blocks = std::make_shared<ModuleList>();
  for (int64_t i = 0; i < c.depth; ++i) {
    double dp = c.depth > 1 ? c.drop_path * static_cast<double>(i) / static_cast<double>(c.depth - 1) : c.drop_path;
    block_list.push_back(blocks->push_back(std::make_shared<Block>(c, dp, gen, &drop_gen)));
  }
  if (openai(c)) {
    auto transformer = std::make_shared<Module>();
    transformer->register_module("resblocks", blocks);
    register_module("transformer", transformer);
  } else {
    register_module("blocks", blocks);
  }
  if (c.fc_norm)  // timm: norm is Identity and fc_norm follows the pooling
    fc_norm = register_module("fc_norm", std::make_shared<LayerNorm>(D, c.ln_eps));
  else
    norm = register_module(openai(c) ? "ln_post" : "norm", std::make_shared<LayerNorm>(D, c.ln_eps));
  if (openai(c)) {
    double scale = 1.0 / std::sqrt(static_cast<double>(D));
    proj = register_parameter("proj", randn({D, c.feature_dim()}, gen, DType::f32, 0.0, scale));
  }
  if (c.num_classes > 0) reset_head(c.num_classes, gen);
}

void VisionTransformer::reset_head(int64_t k, Generator& gen) {
  cfg.num_classes = k;
  if (k == 0) {
    head.reset();
    return;
  }
  auto h = std::make_shared<Linear>(cfg.feature_dim(), k, true, gen);
  timm_init(*h, gen);
  bool had = false;
  for (auto& [n, _] : named_children()) had = had || n == "head";
  if (had)
    replace_module("head", h);
  else
    register_module("head", h);
  head = h;
}

Tensor VisionTransformer::prompt_rows(int64_t layer, int64_t B, const Tensor& p) {
  // p: [L, M, D] -> this layer's [1, M, D], broadcast to the batch; prompt dropout draws a mask
  // per sample (methods.md 7), so then the prompts are materialised per sample.
  Tensor row = narrow(p, 0, layer, 1);
  Tensor rows = expand(row, {B, row.size(1), row.size(2)});
  if (prompt_dropout > 0 && is_training()) rows = dropout(contiguous(rows), prompt_dropout, true, drop_gen);
  return rows;
}

Tensor VisionTransformer::forward_features(const Tensor& images) {
  const ViTConfig& c = cfg;
  if (images.dim() != 4 || images.size(1) != c.in_chans || images.size(2) != c.image_size || images.size(3) != c.image_size)
    throw ShapeError(fmt::format("vit: images {} do not match the config (expected [B, {}, {}, {}])",
                                 shape_str(images.sizes()), c.in_chans, c.image_size, c.image_size));
  const int64_t B = images.size(0), D = c.dim, P = c.num_prefix_tokens();
  Tensor t = patch_embed->forward(images);                                     // [B, N, D]
  // Prefix tokens: [cls] [reg_1..reg_R] (timm _pos_embed).
  std::vector<Tensor> prefix;
  if (cls_token.defined()) prefix.push_back(expand(reshape(cls_token, {1, 1, D}), {B, 1, D}));
  if (reg_token.defined()) prefix.push_back(expand(reg_token, {B, c.reg_tokens, D}));
  Tensor x;
  if (c.no_embed_class) {  // deit-3 / big_vision: the position embedding covers the patches only
    x = add(t, reshape(pos_embed, {1, -1, D}));
    if (!prefix.empty()) {
      prefix.push_back(x);
      x = cat(prefix, 1);
    }
  } else {
    prefix.push_back(t);
    x = add(prefix.size() > 1 ? cat(prefix, 1) : t, reshape(pos_embed, {1, -1, D}));  // [B, P+N, D]
  }
  if (ln_pre) x = ln_pre->forward(x);
  int64_t M = 0;
  if (vpt) {  // VPT (methods.md 7): prompts after the prefix tokens (CLS), before the patches, no pos-embed
    M = vpt->prompts.size(1);
    std::vector<Tensor> parts;
    if (P > 0) parts.push_back(narrow(x, 1, 0, P));
    parts.push_back(prompt_rows(0, B, vpt->prompts));
    parts.push_back(narrow(x, 1, P, x.size(1) - P));
    x = cat(parts, 1);
  }
  for (size_t i = 0; i < block_list.size(); ++i) {
    if (vpt && vpt_deep && i > 0) {  // VPT-deep (methods.md 8): replace the prompt rows before block i
      std::vector<Tensor> parts;
      if (P > 0) parts.push_back(narrow(x, 1, 0, P));
      parts.push_back(prompt_rows(static_cast<int64_t>(i), B, vpt->prompts));
      parts.push_back(narrow(x, 1, P + M, x.size(1) - P - M));
      x = cat(parts, 1);
    }
    Tensor cp = cvpt ? narrow(cvpt->prompts, 0, static_cast<int64_t>(i), 1) : Tensor();  // [1, M, D]
    if (cp.defined() && prompt_dropout > 0 && is_training()) cp = prompt_rows(static_cast<int64_t>(i), B, cvpt->prompts);
    x = block_list[i]->forward(x, cp);
  }
  if (openai(c)) {  // f = LN(x_cls; ln_post) @ proj
    return matmul(norm->forward(select(x, 1, 0)), proj);
  }
  if (norm) x = norm->forward(x);
  // pool mean: the patch rows only (prefix and prompt tokens excluded), as timm's global_pool='avg'
  Tensor f = c.pool == "mean" ? mean(narrow(x, 1, P + M, x.size(1) - P - M), {1}) : select(x, 1, 0);
  return fc_norm ? fc_norm->forward(f) : f;
}

Tensor VisionTransformer::forward_head(const Tensor& f) const { return head ? head->forward(f) : f; }

Tensor VisionTransformer::forward(const Tensor& images) { return forward_head(forward_features(images)); }

}  // namespace peft::nn
