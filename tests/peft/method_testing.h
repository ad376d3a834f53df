// Helpers the method tests share: every trainable tensor away from its identity init, the
// ViT-B/16 trainable count, the start at the plain model, the freeze mask and the openai-layout
// refusal.
#pragma once
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/random.h"
#include "nn/config.h"
#include "nn/module.h"
#include "nn/optim/optimizer.h"
#include "peft/method.h"

namespace peft::testing {

// Non-trivial values for every trainable tensor (LoRA B and adapter up-projections non-zero, SSF
// scales away from 1), so that each one matters for the output. With all = true the frozen
// tensors too (LayerNorm weights, layer scale and SSF scales around 1, the rest around 0).
inline void randomize_trainable(nn::Module& m, uint64_t seed, bool all = false) {
  NoGradGuard ng;
  Generator g(seed);
  for (auto& [n, p] : m.named_parameters()) {
    if (!all && !p.requires_grad()) continue;
    const bool around_one = n.find("ssf_scale") != std::string::npos ||
                            (all && (n.find("gamma") != std::string::npos || n.find("norm") != std::string::npos));
    Tensor(p).copy_(randn(p.sizes(), g, p.dtype(), around_one ? 1.0 : 0.0, 0.3));
  }
}

inline std::set<std::string> trainable_set(const nn::Module& m) {
  auto v = trainable_names(m);
  return {v.begin(), v.end()};
}

// Trainable elements outside the classifier head: what a method adds or unfreezes.
inline int64_t backbone_trainable(const nn::Module& m) {
  int64_t n = 0;
  for (auto& [name, t] : m.named_parameters())
    if (t.requires_grad() && name.rfind("head.", 0) != 0) n += t.numel();
  return n;
}

// backbone_trainable after attaching `method` (10 classes) to ViT-B/16 (D 768, L 12), the model
// methods.md counts on. small_mlp: MLP ratio 0.25, for methods whose count depends on L and D
// only, so that the model builds quickly.
inline int64_t vit_base_trainable(const std::string& method, const MethodOptions& o, bool small_mlp = false) {
  nn::ViTConfig c = nn::load_vit_config("vit-base");
  EXPECT_EQ(c.dim, 768);
  EXPECT_EQ(c.depth, 12);
  if (small_mlp) c.mlp_ratio = 0.25;
  nn::VisionTransformer vit(c, 0);
  Generator g(1);
  apply_method(vit, method, o, 10, g);
  return backbone_trainable(vit);
}

// Options as the command line gives them with no method flag typed: the method's own defaults.
inline MethodOptions command_line_defaults() {
  MethodOptions o;
  o.use_method_defaults = true;
  return o;
}

// `c` in OpenAI's layout (openai_clip_visual: QuickGELU, LayerNorm eps 1e-5).
inline nn::ViTConfig openai_layout(nn::ViTConfig c) {
  c.style = "openai_clip_visual";
  c.act = "quick_gelu";
  c.ln_eps = 1e-5;
  return c;
}

// A timm-only method on the openai layout: one MethodError line naming the method and the
// layout, and nothing attached.
inline void expect_openai_layout_refused(const std::string& method, const nn::ViTConfig& timm_config) {
  nn::VisionTransformer vit(openai_layout(timm_config), 1);
  Generator g(2);
  try {
    apply_method(vit, method, MethodOptions{}, 3, g);
    ADD_FAILURE() << method << ": no error";
  } catch (const MethodError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(method), std::string::npos) << m;
    EXPECT_NE(m.find("openai_clip_visual"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  EXPECT_EQ(vit.num_parameters(true), vit.num_parameters());  // untouched
}

// How far `vit` (a method just attached, in eval mode) is from the plain model of its config at
// seed 1 (a linear probe, head from Generator(2)) on two random images, the plain head copied
// into it: 0 (up to rounding) when the method starts at the base model.
inline double max_diff_to_plain_logits(nn::VisionTransformer& vit) {
  const nn::ViTConfig& c = vit.cfg;
  Generator gi(5);
  Tensor img = randn({2, c.in_chans, c.image_size, c.image_size}, gi);
  nn::VisionTransformer plain(c, 1);
  Generator g(2);
  apply_method(plain, "linear", MethodOptions{}, c.num_classes, g);
  plain.eval();
  const Tensor before = plain.forward(img).detach();
  vit.head->weight.copy_(plain.head->weight);
  vit.head->bias.copy_(plain.head->bias);
  return max_abs_diff(vit.forward(img), before);
}

// The freeze mask: after randomize_trainable and one backward of a cross-entropy on two random
// images (labels 0, 2), a tensor has a gradient exactly when it is trainable. Returns the
// trainable element count.
inline int64_t expect_grads_only_on_trainable(nn::VisionTransformer& vit, const std::string& what = "") {
  randomize_trainable(vit, 9);
  const nn::ViTConfig& c = vit.cfg;
  Generator gi(5);
  backward(cross_entropy(vit.forward(randn({2, c.in_chans, c.image_size, c.image_size}, gi)),
                         from_vector_i64({0, 2}, {2})));
  int64_t trainable = 0;
  for (auto& [n, p] : vit.named_parameters()) {
    EXPECT_EQ(p.grad().defined(), p.requires_grad()) << what << " " << n;
    if (p.requires_grad()) trainable += p.numel();
  }
  return trainable;
}

// AdamW (after one step on those gradients) keeps two float32 moments per trainable element and
// none for a frozen tensor.
inline void expect_optimizer_state_for_trainable_only(nn::VisionTransformer& vit, int64_t trainable,
                                                      const std::string& what = "") {
  nn::AdamW opt(nn::param_groups(vit.named_parameters(), 0.05), 1e-3);
  opt.step();
  EXPECT_EQ(opt.state_bytes(), 2 * 4 * trainable) << what;
}

}  // namespace peft::testing
