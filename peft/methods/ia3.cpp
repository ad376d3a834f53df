// (IA)^3 (methods.md "(IA)^3"; huggingface/peft src/peft/tuners/ia3/layer.py, model.py): learned
// per-channel scales of the keys and values (the k and v rows of timm's fused qkv output, bias
// included; q unscaled) and of the FFN intermediate (fc2's input, so fc2's bias is not scaled).
// timm layout only. Mergeable: rows of qkv and columns of fc2 take the scales.
#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "autograd/ops/ia3.h"
#include "core/error.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

// blocks.i.attn.qkv with ia3_k, ia3_v [D]: lin(x; W, b) [..., 3D] times [1 | l_k | l_v].
class Ia3Qkv : public nn::Linear, public Adapted {
 public:
  explicit Ia3Qkv(const nn::Linear& base) : nn::Linear(base) {}
  std::string method() const override { return "ia3"; }
  bool mergeable() const override { return true; }
  // [3D]: ones for the q rows [0,D) (no gradient), l_k for [D,2D), l_v for [2D,3D).
  Tensor row_scales() const {
    const int64_t D = ia3_k.size(0);
    return cat({ones({D}, ia3_k.dtype()), ia3_k, ia3_v}, 0);
  }
  // x [..., D] -> [..., 3D]. The bias is scaled with its rows (HF: result * ia3_scaling). One op
  // (autograd/ops/ia3.cpp): the scales are applied right after the GEMM, and backward sums dl
  // in the same sweep that scales g; the frozen W gets no weight-gradient GEMM.
  Tensor forward(const Tensor& x) const override { return ia3_qkv_linear(x, weight, bias, ia3_k, ia3_v); }
  Tensor forward_after_gelu(Tensor h) const override { return forward(gelu(h)); }
  void merge(nn::VisionTransformer&) override {  // W'[c,:] = sc_c W[c,:], b'_c = sc_c b_c
    NoGradGuard ng;
    Tensor sc = row_scales();
    weight.copy_(mul(weight, unsqueeze(sc, 1)));
    if (bias.defined()) bias.copy_(mul(bias, sc));
    ia3_k.fill_(1.0);
    ia3_v.fill_(1.0);
  }
  Tensor ia3_k, ia3_v;  // [D] each
};

// blocks.i.mlp.fc2 with ia3_l [F]: lin(l * g; W, b), g the activation output [..., F].
class Ia3Fc2 : public nn::Linear, public Adapted {
 public:
  explicit Ia3Fc2(const nn::Linear& base) : nn::Linear(base) {}
  std::string method() const override { return "ia3"; }
  bool mergeable() const override { return true; }
  Tensor forward(const Tensor& g) const override { return nn::Linear::forward(mul(g, ia3_l)); }
  // nn::Mlp hands over the pre-activation h with GELU fused: the scale sits between the two, in
  // one op that keeps gelu_linear's fusion (saves h, not gelu(h); autograd/ops/ia3.cpp).
  Tensor forward_after_gelu(Tensor h) const override { return gelu_scale_linear(std::move(h), ia3_l, weight, bias); }
  void merge(nn::VisionTransformer&) override {  // W'[:,j] = l_j W[:,j]; bias unchanged
    NoGradGuard ng;
    weight.copy_(mul(weight, ia3_l));  // [out, F] * [F]: over the input columns
    ia3_l.fill_(1.0);
  }
  Tensor ia3_l;  // [F]
};

void attach_ia3(nn::VisionTransformer& vit, const MethodOptions&, Generator&) {
  std::map<const nn::Linear*, LinearSite> sites;
  for (const LinearSite& s : linear_sites(vit)) sites[s.linear] = s;
  const DType dt = vit.dtype();
  for (auto& b : vit.block_list) {
    const int64_t D = b->attn->dim, F = b->mlp->fc2->in_features;
    {
      const LinearSite& site = sites.at(b->attn->qkv.get());
      auto w = std::make_shared<Ia3Qkv>(*site.linear);
      nn::Module& slot = install_linear(vit, site, w);
      // Ones (init_ia3_weights=True): training starts at the base model.
      w->ia3_k = add_tensor(*w, slot, site.name, "ia3_k", ones({D}, dt));
      w->ia3_v = add_tensor(*w, slot, site.name, "ia3_v", ones({D}, dt));
    }
    {
      const LinearSite& site = sites.at(b->mlp->fc2.get());
      auto w = std::make_shared<Ia3Fc2>(*site.linear);
      nn::Module& slot = install_linear(vit, site, w);
      w->ia3_l = add_tensor(*w, slot, site.name, "ia3_l", ones({F}, dt));
    }
  }
}

}  // namespace

MethodDescriptor ia3_method() {
  MethodDescriptor d;
  d.name = "ia3";
  d.description =
      "(IA)^3: learned scales of the k and v rows of attn.qkv (bias included, q unscaled) and of mlp.fc2's input, "
      "and the head; timm layout; mergeable (peft merge)";
  d.timm_only = true;
  d.mergeable = true;
  d.demo_lr = 5e-3;
  d.attach = attach_ia3;
  return d;
}

}  // namespace peft::methods
