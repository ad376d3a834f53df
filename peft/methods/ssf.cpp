// SSF (methods.md "SSF"; dongzelian/SSF models/vision_transformer.py): a per-channel scale and shift
// after each of the 6L+2 ops of the decided list (timm names; the openai layout's are those of
// methods.md "What must match"). Mergeable: every fold is per output channel of the op it follows.
#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

// y * scale + shift over the last dim: one fused op (autograd/ops/scale_shift.cpp).
Tensor ssf_apply(const Tensor& y, const Tensor& scale, const Tensor& shift) { return scale_shift(y, scale, shift); }

// The scale ~ N(1, 0.02^2) and shift ~ N(0, 0.02^2) of C channels, registered on `owner`.
struct ScaleShift {
  Tensor scale, shift;
  void init(Adapted& a, nn::Module& owner, const std::string& owner_name, int64_t C, DType dt, Generator& gen) {
    scale = add_tensor(a, owner, owner_name, "ssf_scale", randn({C}, gen, dt, 1.0, 0.02));
    shift = add_tensor(a, owner, owner_name, "ssf_shift", randn({C}, gen, dt, 0.0, 0.02));
  }
  void reset() {  // the identity, after a merge
    scale.fill_(1.0);
    shift.fill_(0.0);
  }
};

class SsfLinear : public nn::Linear, public Adapted {
 public:
  explicit SsfLinear(const nn::Linear& base) : nn::Linear(base) {}
  std::string method() const override { return "ssf"; }
  bool mergeable() const override { return true; }
  Tensor forward(const Tensor& x) const override { return ssf_apply(nn::Linear::forward(x), ss.scale, ss.shift); }
  Tensor forward_after_gelu(Tensor h) const override {
    return ssf_apply(nn::Linear::forward_after_gelu(std::move(h)), ss.scale, ss.shift);
  }
  void check_merge() const override {
    // The shift has nowhere to go in a plain model of the same config (a qkv_bias=False model).
    if (!bias.defined())
      throw ValueError(fmt::format("merge: {} has no bias to take its SSF shift (a model without qkv bias); use the "
                                   "adapter unmerged",
                                   added_names.empty() ? "a linear" : added_names[0].substr(0, added_names[0].rfind('.'))));
  }
  void merge(nn::VisionTransformer&) override {  // W'[c,:] = sc_c W[c,:], b' = sc*b + sh
    NoGradGuard ng;
    weight.copy_(mul(weight, unsqueeze(ss.scale, 1)));
    bias.copy_(add(mul(bias, ss.scale), ss.shift));
    ss.reset();
  }
  ScaleShift ss;
};

class SsfLayerNorm : public nn::LayerNorm, public Adapted {
 public:
  explicit SsfLayerNorm(const nn::LayerNorm& base) : nn::LayerNorm(base) {}
  std::string method() const override { return "ssf"; }
  bool mergeable() const override { return true; }
  Tensor forward(const Tensor& x) const override {
    // SSF after a LayerNorm folds into its affine: (xhat w + b) s + t = xhat (w s) + (b s + t),
    // computed on [D] vectors. The same math up to rounding, but the LayerNorm then saves only
    // its input and row statistics, not a [R, D] output for SSF's scale gradient (ViT-B/16,
    // batch 8: 116 MB less per step), and two [R, D] passes disappear.
    Tensor w = weight.defined() ? mul(weight, ss.scale) : ss.scale;
    Tensor b = bias.defined() ? add(mul(bias, ss.scale), ss.shift) : ss.shift;
    return layer_norm(x, w, b, eps);
  }
  void merge(nn::VisionTransformer&) override {  // gamma' = sc*gamma, beta' = sc*beta + sh
    NoGradGuard ng;
    weight.copy_(mul(weight, ss.scale));
    bias.copy_(add(mul(bias, ss.scale), ss.shift));
    ss.reset();
  }
  ScaleShift ss;
};

class SsfPatchEmbed : public nn::PatchEmbed, public Adapted {
 public:
  explicit SsfPatchEmbed(const nn::PatchEmbed& base) : nn::PatchEmbed(base) {}
  std::string method() const override { return "ssf"; }
  bool mergeable() const override { return true; }
  Tensor forward(const Tensor& images) const override { return ssf_apply(nn::PatchEmbed::forward(images), ss.scale, ss.shift); }
  // Filters per channel. A conv without a bias (openai conv1) passes its shift to the patch rows
  // of the position embedding, added right after it: the last N rows (openai: rows 1..N of
  // positional_embedding [1+N, D]; methods.md "What must match").
  void merge(nn::VisionTransformer& vit) override {
    NoGradGuard ng;
    Tensor patch_rows;
    if (!bias.defined() && vit.pos_embed.defined()) {
      const int64_t rows = vit.pos_embed.size(-2), n = vit.cfg.num_patches();
      if (rows >= n) patch_rows = narrow(reshape(vit.pos_embed, {rows, -1}), 0, rows - n, n);
    }
    if (!bias.defined() && !patch_rows.defined())
      throw StateError("merge: the SSF shift of a patch embedding without a bias needs the position-embedding rows");
    weight.copy_(mul(weight, reshape(ss.scale, {-1, 1, 1, 1})));
    if (bias.defined())
      bias.copy_(add(mul(bias, ss.scale), ss.shift));
    else  // t*sc + sh + pos[1+n] = (t*sc) + (pos[1+n] + sh): exact, the pos-embed add follows at once
      Tensor(patch_rows).copy_(add(patch_rows, reshape(ss.shift, {1, -1})));
    ss.reset();
  }
  ScaleShift ss;
};

void wrap_layer_norm(nn::VisionTransformer& vit, nn::LayerNorm& ln, Generator& gen) {
  const std::string name = module_name(vit, &ln);
  auto w = std::make_shared<SsfLayerNorm>(ln);
  replace_at(vit, name, w);  // the parent's typed pointer follows (on_child_replaced); ln is gone now
  w->ss.init(*w, *w, name, w->dim, w->weight.dtype(), gen);
}

void wrap_linear(nn::VisionTransformer& vit, const LinearSite& site, Generator& gen) {
  auto w = std::make_shared<SsfLinear>(*site.linear);
  nn::Module& slot = install_linear(vit, site, w);
  w->ss.init(*w, slot, site.name, w->out_features, w->weight.dtype(), gen);
}

void attach_ssf(nn::VisionTransformer& vit, const MethodOptions&, Generator& gen) {
  // The same op positions on both layouts; openai names in the second column (methods.md "What must match":
  // "Chosen here for the openai layout", no official code). ln_pre and proj get none there.
  // Registration order = the op order of the forward pass, so adapter files list them that way
  // (openai: attn.out_proj's pair precedes attn.in_proj's, whose holder is registered last).
  std::map<const nn::Linear*, LinearSite> sites;
  for (const LinearSite& s : linear_sites(vit)) sites[s.linear] = s;
  {  // patch_embed.proj | conv1: on the patch tokens, before CLS and pos-embed
    auto w = std::make_shared<SsfPatchEmbed>(*vit.patch_embed);
    const std::string name = vit.patch_embed_name();
    vit.replace_patch_embed(w);
    w->ss.init(*w, *w, name, w->weight.size(0), w->weight.dtype(), gen);
  }
  for (auto& b : vit.block_list) {
    wrap_layer_norm(vit, *b->norm1, gen);            // blocks.i.norm1     | ln_1           C = D
    wrap_linear(vit, sites.at(b->attn->qkv.get()), gen);   // blocks.i.attn.qkv  | attn.in_proj   C = 3D, before the q|k|v split
    wrap_linear(vit, sites.at(b->attn->proj.get()), gen);  // blocks.i.attn.proj | attn.out_proj  C = D
    wrap_layer_norm(vit, *b->norm2, gen);            // blocks.i.norm2     | ln_2           C = D
    wrap_linear(vit, sites.at(b->mlp->fc1.get()), gen);    // blocks.i.mlp.fc1   | mlp.c_fc       C = F, before the activation
    wrap_linear(vit, sites.at(b->mlp->fc2.get()), gen);    // blocks.i.mlp.fc2   | mlp.c_proj     C = D
  }
  wrap_layer_norm(vit, vit.final_norm(), gen);  // norm | ln_post: every token (openai: the CLS row), before
                                                // pooling (fc_norm models: after it)
}

}  // namespace

MethodDescriptor ssf_method() {
  MethodDescriptor d;
  d.name = "ssf";
  d.description =
      "SSF: scale and shift after the 6L+2 ops (patch_embed.proj, norm1, attn.qkv, attn.proj, norm2, mlp.fc1, "
      "mlp.fc2, norm; openai layout: conv1, ln_1, attn.in_proj, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj, "
      "ln_post), and the head; mergeable (peft merge)";
  d.mergeable = true;
  d.attach = attach_ssf;
  d.script_flops_mode = "ssf";
  return d;
}

}  // namespace peft::methods
