// ViT forward pass (timm and OpenAI layouts) and its extension points (wrappable layers,
// replaceable blocks, attention masks, the token hook).
#include "nn/vit.h"

#include <fmt/format.h>

#include <cmath>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
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

Tensor PatchEmbed::forward(const Tensor& images) const { return conv2d_patch(images, weight, bias); }  // [B, N, D]

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

void Attention::on_child_replaced(const std::string& name, const std::shared_ptr<Module>& m) {
  retarget(name, "qkv", qkv, m);
  retarget(name, openai_names ? "out_proj" : "proj", proj, m);
}

void Attention::replace_qkv(std::shared_ptr<Linear> wrapper) {
  if (openai_names)
    qkv = std::move(wrapper);  // its tensors stay registered as in_proj_weight / in_proj_bias
  else
    replace_module("qkv", std::move(wrapper));
}

Module& Attention::qkv_slot() {
  if (!openai_names) return *qkv;
  if (!in_proj) in_proj = register_module("in_proj", std::make_shared<Module>());
  return *in_proj;
}

Attention::QKV Attention::project_qkv(const Tensor& x) const {
  const int64_t B = x.size(0), T = x.size(1), hd = dim / heads;
  // [B, T, 3D] viewed as [B, T, 3, H, hd]; q, k, v are strided head views: no copies.
  Tensor qkv5 = reshape(qkv->forward(x), {B, T, 3, heads, hd});
  return {transpose(select(qkv5, 2, 0), 1, 2), transpose(select(qkv5, 2, 1), 1, 2), transpose(select(qkv5, 2, 2), 1, 2)};
}

Tensor Attention::split_heads(const Tensor& t) const {
  return transpose(reshape(t, {t.size(0), t.size(1), heads, dim / heads}), 1, 2);
}

Tensor Attention::project_out(const Tensor& o) const { return proj->forward(o); }

Tensor Attention::attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask) const {
  const int64_t B = q.size(0), Tq = q.size(2);
  if (keep_attention) last_attention = attention_probs(q.detach(), k.detach(), mask.defined() ? mask.detach() : mask);
  Tensor o = mask.defined() ? scaled_dot_product_attention(q, k, v, mask) : scaled_dot_product_attention(q, k, v);
  return project_out(reshape(transpose(o, 1, 2), {B, Tq, dim}));  // heads concatenated in order
}

Tensor Attention::forward(const Tensor& x, const Tensor& mask) const {
  QKV p = project_qkv(x);  // [B, H, T, hd] each
  return attend(p.q, p.k, p.v, mask);
}

Tensor Attention::cross(const Tensor& xq, const Tensor& xkv) const {
  const int64_t B = xq.size(0), Tq = xq.size(1), Bk = xkv.size(0), Tk = xkv.size(1), hd = dim / heads;
  // Rows [0,D) of the fused weight are Wq, [D,2D) Wk, [2D,3D) Wv (methods.md "Notation"): views, no copies.
  Tensor wq = narrow(qkv->weight, 0, 0, dim), wk = narrow(qkv->weight, 0, dim, dim), wv = narrow(qkv->weight, 0, 2 * dim, dim);
  Tensor bq, bk, bv;  // undefined without a qkv bias
  if (qkv->bias.defined()) bq = narrow(qkv->bias, 0, 0, dim), bk = narrow(qkv->bias, 0, dim, dim), bv = narrow(qkv->bias, 0, 2 * dim, dim);
  Tensor q = transpose(reshape(linear(xq, wq, bq), {B, Tq, heads, hd}), 1, 2);
  // Keys and values of a batch-1 xkv are computed once and broadcast (stride 0).
  Tensor k = transpose(reshape(linear(xkv, wk, bk), {Bk, Tk, heads, hd}), 1, 2);
  Tensor v = transpose(reshape(linear(xkv, wv, bv), {Bk, Tk, heads, hd}), 1, 2);
  if (Bk != B) {
    k = expand(k, {B, heads, Tk, hd});
    v = expand(v, {B, heads, Tk, hd});
  }
  Tensor o = scaled_dot_product_attention(q, k, v);
  return linear(reshape(transpose(o, 1, 2), {B, Tq, dim}), proj->weight, proj->bias);
}

// ---------------------------------------------------------------- Mlp

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

void Mlp::on_child_replaced(const std::string& name, const std::shared_ptr<Module>& m) {
  retarget(name, "fc1", fc1, m);
  retarget(name, "c_fc", fc1, m);
  retarget(name, "fc2", fc2, m);
  retarget(name, "c_proj", fc2, m);
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

void Block::on_child_replaced(const std::string& name, const std::shared_ptr<Module>& m) {
  for (const char* n : {"norm1", "ln_1"}) retarget(name, n, norm1, m);
  for (const char* n : {"norm2", "ln_2"}) retarget(name, n, norm2, m);
  retarget(name, "attn", attn, m);
  retarget(name, "mlp", mlp, m);
  retarget(name, "ls1", ls1, m);
  retarget(name, "ls2", ls2, m);
}

Tensor Block::attn_branch(const Tensor& x, const Tensor& mask) const {
  Tensor a = attn->forward(norm1->forward(x), mask);
  if (ls1) a = ls1->forward(a);
  return drop_path->forward(a);
}

Tensor Block::mlp_branch(const Tensor& x) const {
  Tensor m = mlp->forward(norm2->forward(x));
  if (ls2) m = ls2->forward(m);
  return drop_path->forward(m);
}

Tensor Block::forward(const Tensor& x0, const Tensor& mask) const {
  Tensor x = add(x0, attn_branch(x0, mask));
  return add(x, mlp_branch(x));
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
    patch_embed_holder_ = std::make_shared<Module>();
    patch_embed_holder_->register_module("proj", patch_embed);
    register_module("patch_embed", patch_embed_holder_);
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

void VisionTransformer::on_child_replaced(const std::string& name, const std::shared_ptr<Module>& m) {
  retarget(name, "conv1", patch_embed, m);
  for (const char* n : {"ln_pre", "norm_pre"}) retarget(name, n, ln_pre, m);
  for (const char* n : {"norm", "ln_post"}) retarget(name, n, norm, m);
  retarget(name, "fc_norm", fc_norm, m);
  retarget(name, "head", head, m);
}

void VisionTransformer::set_token_hook(const std::string& name, std::shared_ptr<TokenHook> hook) {
  if (token_hook)
    throw StateError(fmt::format("vit: the model already has a token hook; cannot add '{}'. Hint: attach one method "
                                 "to a fresh model",
                                 name));
  token_hook = register_module(name, std::move(hook));
}

std::string VisionTransformer::block_name(size_t i) const {
  return fmt::format("{}{}", openai(cfg) ? "transformer.resblocks." : "blocks.", i);
}

void VisionTransformer::replace_block(size_t i, std::shared_ptr<Block> b) {
  blocks->set(i, b);
  block_list.at(i) = std::move(b);
}

std::string VisionTransformer::final_norm_name() const {
  if (!norm) return "fc_norm";
  return openai(cfg) ? "ln_post" : "norm";
}

std::string VisionTransformer::patch_embed_name() const { return openai(cfg) ? "conv1" : "patch_embed.proj"; }

void VisionTransformer::replace_patch_embed(std::shared_ptr<PatchEmbed> p) {
  if (openai(cfg)) {
    replace_module("conv1", std::move(p));
  } else {
    patch_embed_holder_->replace_module("proj", p);
    patch_embed = std::move(p);
  }
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
  if (token_hook) x = token_hook->after_embed(x);
  if (ln_pre) x = ln_pre->forward(x);
  for (size_t i = 0; i < block_list.size(); ++i) {
    if (token_hook) x = token_hook->before_block(static_cast<int64_t>(i), x);
    if (checkpoint_activations && grad_enabled()) {
      std::shared_ptr<Block> b = block_list[i];  // the closure outlives this call (it runs in backward)
      x = checkpoint([b](const Tensor& xi) { return b->forward(xi); }, x, {&drop_gen});
    } else {
      x = block_list[i]->forward(x);
    }
  }
  const int64_t M = token_hook ? token_hook->tokens_after_prefix() : 0;
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
