// Every vision method on the timm variants real checkpoints bring (register tokens with
// pos-embed on patches only, layer scale, no class token with fc_norm after average pooling,
// norm_pre without a patch bias, no qkv bias): float64 gradcheck of all tensors (frozen ones
// must get none), VPT prompts after every prefix token, and exact merges of LoRA and SSF.
#include <fmt/format.h>

#include "autograd/gradcheck.h"
#include "peft/merge.h"
#include "peft/method.h"
#include "tests/peft/method_testing.h"
#include "tests/testing.h"

namespace peft {
namespace {

using testing::randn64;

struct Variant {
  std::string name;
  nn::ViTConfig cfg;
};

std::vector<Variant> variants() {
  nn::ViTConfig base;
  base.image_size = 8; base.patch_size = 4; base.dim = 8; base.depth = 2; base.heads = 2; base.num_classes = 3;
  std::vector<Variant> v;
  nn::ViTConfig reg = base;  // timm vit_*_reg4 / DINOv2 with registers
  reg.reg_tokens = 2; reg.no_embed_class = true; reg.layer_scale = true;
  v.push_back({"reg_tokens+no_embed_class+layer_scale", reg});
  nn::ViTConfig nocls = base;  // class_token=False, global_pool='avg', fc_norm
  nocls.class_token = false; nocls.pool = "mean"; nocls.fc_norm = true;
  v.push_back({"no_class_token+fc_norm", nocls});
  nn::ViTConfig pre = base;  // CLIP-derived timm models: norm_pre, no patch bias; no qkv bias
  pre.norm_pre = true; pre.qkv_bias = false;
  v.push_back({"norm_pre+no_qkv_bias", pre});
  return v;
}

MethodOptions opts() {
  MethodOptions o;
  o.prompts = 2;
  o.rank = 2;
  o.alpha = 3.0;
  o.bottleneck = 4;
  o.targets = "attn.qkv,mlp.fc2";
  return o;
}


}  // namespace

TEST(MethodVariants, Float64GradcheckOfEveryMethodOnEveryVariant) {
  for (const Variant& v : variants()) {
    for (const std::string method : {"linear", "full", "bitfit", "vpt-shallow", "vpt-deep", "cvpt", "ssf", "lora",
                                     "adaptformer"}) {
      nn::VisionTransformer vit(v.cfg, 3);
      testing::randomize_trainable(vit, 2, /*all=*/true);  // layer scale, norms and tokens away from their identity init
      Generator g(4);
      apply_method(vit, method, opts(), 3, g);
      vit.to(DType::f64);
      vit.eval();
      testing::randomize_trainable(vit, 9);
      std::vector<Tensor> inputs{randn64({2, 3, 8, 8}, 11, false)};
      for (auto& [_, p] : vit.named_parameters()) inputs.push_back(p);
      auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
      auto r = gradcheck(fn, inputs);
      EXPECT_TRUE(r.ok) << v.name << " " << method << ": " << r.message;
    }
  }
}

TEST(MethodVariants, VptPromptsFollowEveryPrefixToken) {
  // The blocks see [cls, reg_1, reg_2, prompts, patches]: the sequence length counts them all.
  nn::ViTConfig c = variants()[0].cfg;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "vpt-deep", opts(), 3, g);
  vit.block_list[0]->attn->keep_attention = true;
  vit.eval();
  Generator gi(3);
  NoGradGuard ng;
  vit.forward(randn({1, 3, 8, 8}, gi));
  // 1 class + 2 register + 2 prompts + 4 patches
  EXPECT_EQ(vit.block_list[0]->attn->last_attention.size(-1), 1 + 2 + 2 + 4);
}

TEST(MethodVariants, LoraAndSsfMergeExactlyOnEveryVariant) {
  for (const Variant& v : variants()) {
    for (const std::string method : {"lora", "ssf"}) {
      nn::VisionTransformer vit(v.cfg, 3);
      testing::randomize_trainable(vit, 2, /*all=*/true);
      Generator g(4);
      apply_method(vit, method, opts(), 3, g);
      testing::randomize_trainable(vit, 9);
      vit.eval();
      Generator gi(5);
      Tensor x = randn({2, 3, 8, 8}, gi);
      NoGradGuard ng;
      Tensor before = vit.forward(x);
      if (method == "ssf" && !v.cfg.qkv_bias) {  // the qkv shift has no bias to go to
        EXPECT_THROW(merge_adapters(vit), ValueError);
        continue;
      }
      merge_adapters(vit);
      // A plain model of the same config loads the merged tensors and computes the same logits.
      nn::VisionTransformer plain(v.cfg, 0);
      auto sd = plain_state_dict(vit);
      std::map<std::string, Tensor> m(sd.begin(), sd.end());
      plain.load_state_dict(m);
      plain.eval();
      EXPECT_LE(max_abs_diff(plain.forward(x), before), 1e-5) << v.name << " " << method;
    }
  }
}

}  // namespace peft
