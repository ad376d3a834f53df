// Layer decay: the lr scale of every tensor of a tiny ViT (timm and OpenAI layouts) against
// timm's formula decay^(num_blocks + 1 - layer_id); AdamW and SGD with a scale equal the same
// optimizer at the scaled learning rate; weight decay unchanged; the option's error.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/ops.h"
#include "nn/optim/layer_decay.h"
#include "nn/vit.h"
#include "tests/testing.h"

namespace peft::nn {
namespace {

// The layer id a tensor must get, written out per name (not through layer_id).
int64_t expected_layer(const std::string& n, int64_t depth) {
  for (int64_t i = 0; i < depth; ++i)
    for (const std::string p : {"blocks.", "transformer.resblocks."})
      if (n.rfind(p + std::to_string(i) + ".", 0) == 0) return i + 1;
  for (const std::string p : {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                              "class_embedding", "positional_embedding", "conv1.weight"})
    if (n == p) return 0;
  return depth + 1;  // norm, fc_norm, ln_pre, ln_post, proj, head
}

void expect_scales(const std::string& style) {
  ViTConfig c;
  c.style = style;
  c.depth = 3;
  c.num_classes = 5;
  VisionTransformer vit(c, 1);
  for (auto& [n, t] : vit.named_parameters()) t.requires_grad_(true);
  std::vector<ParamSpec> specs = param_groups(vit.named_parameters(), 0.05);
  const std::vector<ParamSpec> before = specs;
  apply_layer_decay(specs, c.depth, 0.65);
  ASSERT_EQ(specs.size(), vit.named_parameters().size());
  int64_t stem = 0, top = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const int64_t id = expected_layer(specs[i].name, c.depth);
    stem += id == 0;
    top += id == c.depth + 1;
    EXPECT_DOUBLE_EQ(specs[i].lr_scale, std::pow(0.65, static_cast<double>(c.depth + 1 - id))) << specs[i].name;
    EXPECT_EQ(specs[i].weight_decay, before[i].weight_decay) << specs[i].name;
  }
  EXPECT_GE(stem, 3) << style;  // cls token, position embedding, patch projection
  EXPECT_GE(top, 3) << style;   // final norm and head
}

TEST(LayerDecay, ScalesFollowTimmFormulaTimmLayout) { expect_scales("timm"); }
TEST(LayerDecay, ScalesFollowTimmFormulaOpenAILayout) { expect_scales("openai_clip_visual"); }

TEST(LayerDecay, MethodTensorsBelongToTheirBlock) {
  EXPECT_EQ(layer_id("blocks.7.attn.qkv.lora_A", 12), 8);
  EXPECT_EQ(layer_id("blocks.11.adapter.down.weight", 12), 12);
  EXPECT_EQ(layer_id("prompt_embeddings", 12), 13);
  EXPECT_EQ(layer_id("blocks12.weight", 12), 13);  // not "blocks.<n>."
  EXPECT_EQ(layer_id("head.weight", 12), 13);
  EXPECT_EQ(layer_id("norm.weight", 12), 13);
}

// One update of `p` (gradient g) under optimizer `make(lr, scale)`.
template <class Make>
Tensor one_step(Make make, double lr, double scale) {
  Tensor p = testing::randn64({3, 4}, 2);
  std::vector<ParamSpec> specs = {{"w", p, 0.1, scale}};
  auto opt = make(specs, lr);
  for (int k = 0; k < 3; ++k) {
    opt->zero_grad();
    p.set_grad(testing::randn64({3, 4}, 10 + k, false));
    opt->step();
  }
  return p.detach();
}

TEST(LayerDecay, ScaledOptimizerEqualsScaledLearningRate) {
  auto adamw = [](std::vector<ParamSpec> s, double lr) { return std::make_unique<AdamW>(s, lr); };
  auto sgd = [](std::vector<ParamSpec> s, double lr) { return std::make_unique<SGD>(s, lr, 0.9); };
  const double lr = 1e-2, s = std::pow(0.75, 3);
  EXPECT_EQ(max_abs_diff(one_step(adamw, lr, s), one_step(adamw, lr * s, 1.0)), 0.0);
  EXPECT_LT(max_abs_diff(one_step(sgd, lr, s), one_step(sgd, lr * s, 1.0)), 1e-16);
  EXPECT_GT(max_abs_diff(one_step(adamw, lr, s), one_step(adamw, lr, 1.0)), 1e-4);  // the scale matters
}

TEST(LayerDecay, RefusesADecayOutsideZeroOne) {
  std::vector<ParamSpec> specs;
  EXPECT_THROW_MSG(apply_layer_decay(specs, 12, 1.5), ValueError, "--layer-decay", "(0, 1]");
  EXPECT_THROW_MSG(apply_layer_decay(specs, 12, 0.0), ValueError, "--layer-decay");
}

}  // namespace
}  // namespace peft::nn
