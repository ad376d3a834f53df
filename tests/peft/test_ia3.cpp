// `ia3` (methods.md "(IA)^3", HF peft (IA)^3): parity with the PyTorch reference
// (tools/reference/peft_reference_dora_ia3_fact.py), names and the ViT-B/16 count, init (ones:
// starts at the base model), which rows and inputs are scaled, float64 gradcheck and the freeze
// mask, merge, and the openai-layout refusal.
#include <fmt/format.h>

#include <cmath>
#include <set>

#include "autograd/backward.h"
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/optim/optimizer.h"
#include "core/io/safetensors.h"
#include "peft/merge.h"
#include "peft/method.h"
#include "peft/methods/vision_check.h"
#include "tests/peft/method_testing.h"
#include "tests/peft/parity_testing.h"
#include "tests/testing.h"

namespace peft {
namespace {

using testing::randn64;
using testing::randomize_trainable;
using testing::trainable_set;
using testing::expect_matches_reference;
using testing::fixture_request;

const std::string kDir = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/peft/";



nn::ViTConfig tiny(int64_t depth = 2) {
  nn::ViTConfig c;
  c.image_size = 8; c.patch_size = 4; c.dim = 8; c.depth = depth; c.heads = 2; c.num_classes = 3;
  return c;
}

// ---------------------------------------------------------------- parity

TEST(Ia3Method, MatchesTheReference) { expect_matches_reference("ia3"); }

// ---------------------------------------------------------------- names, counts, init

TEST(Ia3Method, TrainableTensorsAreTheInteropNames) {
  const auto c = tiny(3);
  const int64_t D = c.dim, F = c.mlp_hidden();
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "ia3", MethodOptions{}, 4, g);
  std::set<std::string> want = {"head.weight", "head.bias"};
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = fmt::format("blocks.{}.", i);
    want.insert({b + "attn.qkv.ia3_k", b + "attn.qkv.ia3_v", b + "mlp.fc2.ia3_l"});
    EXPECT_EQ(vit.parameter(b + "attn.qkv.ia3_k").sizes(), (Shape{D}));
    EXPECT_EQ(vit.parameter(b + "attn.qkv.ia3_v").sizes(), (Shape{D}));
    EXPECT_EQ(vit.parameter(b + "mlp.fc2.ia3_l").sizes(), (Shape{F}));
  }
  EXPECT_EQ(trainable_set(vit), want);
  EXPECT_FALSE(vit.parameter("blocks.0.attn.qkv.weight").requires_grad());
  EXPECT_FALSE(vit.parameter("blocks.0.mlp.fc2.bias").requires_grad());
}

// methods.md "(IA)^3": 2*D + F per block: 55,296 for ViT-B/16.
TEST(Ia3Method, ViTBaseCount) {
  nn::VisionTransformer vit(nn::load_vit_config("vit-base"), 0);
  Generator g(1);
  MethodOptions o;
  o.use_method_defaults = true;
  apply_method(vit, "ia3", o, 10, g);
  int64_t n = 0;
  for (auto& [name, t] : vit.named_parameters())
    if (t.requires_grad() && name.rfind("head.", 0) != 0) n += t.numel();
  EXPECT_EQ(n, 55296);
}

// Ones: the logits are the plain model's.
TEST(Ia3Method, InitIsOnesAndStartsAtTheBaseModel) {
  const auto c = tiny();
  Generator gi(5);
  Tensor img = randn({2, 3, 8, 8}, gi);
  nn::VisionTransformer plain(c, 1);
  Generator g(2);
  apply_method(plain, "linear", MethodOptions{}, 3, g);
  plain.eval();
  const Tensor before = plain.forward(img).detach();
  nn::VisionTransformer vit(c, 1);
  Generator g2(2);
  apply_method(vit, "ia3", MethodOptions{}, 3, g2);
  vit.eval();
  vit.head->weight.copy_(plain.head->weight);
  vit.head->bias.copy_(plain.head->bias);
  EXPECT_EQ(max_abs_diff(vit.forward(img), before), 0.0);
  for (auto& [n, p] : vit.named_parameters()) {
    if (n.find("ia3_") == std::string::npos) continue;
    for (float e : p.to_vector<float>()) EXPECT_EQ(e, 1.0f) << n;
  }
}

// Only the k and v rows of the fused qkv output are scaled, bias included; fc2's input is scaled,
// its bias is not (methods.md "(IA)^3" "Decided").
TEST(Ia3Method, ScalesKAndVRowsAndFc2Input) {
  const auto c = tiny();
  const int64_t D = c.dim;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "ia3", MethodOptions{}, 3, g);
  randomize_trainable(vit, 4);
  NoGradGuard ng;
  Generator gx(6);
  Tensor x = randn({2, 5, D}, gx);
  nn::Linear& qkv = *vit.block_list[0]->attn->qkv;
  Tensor plain = linear(x, qkv.weight, qkv.bias);  // [2, 5, 3D]
  Tensor got = qkv.forward(x);
  EXPECT_EQ(max_abs_diff(narrow(got, 2, 0, D), narrow(plain, 2, 0, D)), 0.0);  // q unchanged
  Tensor lk = vit.parameter("blocks.0.attn.qkv.ia3_k"), lv = vit.parameter("blocks.0.attn.qkv.ia3_v");
  EXPECT_LE(max_abs_diff(narrow(got, 2, D, D), mul(narrow(plain, 2, D, D), lk)), 1e-6);
  EXPECT_LE(max_abs_diff(narrow(got, 2, 2 * D, D), mul(narrow(plain, 2, 2 * D, D), lv)), 1e-6);
  // With l_ff = 0, fc2 gives its bias, unscaled: the scale sits on the input. Both entry points
  // (forward, and forward_after_gelu that nn::Mlp uses with GELU fused).
  nn::Linear& fc2 = *vit.block_list[1]->mlp->fc2;
  Tensor(vit.parameter("blocks.1.mlp.fc2.ia3_l")).fill_(0.0);
  Tensor h = randn({2, 5, c.mlp_hidden()}, gx);
  Tensor bias = expand(reshape(fc2.bias, {1, 1, D}), {2, 5, D});
  EXPECT_EQ(max_abs_diff(fc2.forward(h), bias), 0.0);
  EXPECT_EQ(max_abs_diff(fc2.forward_after_gelu(h), bias), 0.0);
  Tensor(vit.parameter("blocks.1.mlp.fc2.ia3_l")).fill_(2.0);
  EXPECT_LE(max_abs_diff(fc2.forward_after_gelu(h), linear(mul(gelu(h), 2.0), fc2.weight, fc2.bias)), 1e-5);
}

// ---------------------------------------------------------------- gradients

// float64 gradcheck of every trainable tensor (all tensors passed: frozen ones get none), both
// poolings, a non-contiguous image batch.
TEST(Ia3Method, Float64Gradcheck) {
  for (const std::string pool : {"cls", "mean"}) {
    nn::ViTConfig c = tiny();
    c.pool = pool;
    nn::VisionTransformer vit(c, 3);
    Generator g(4);
    apply_method(vit, "ia3", MethodOptions{}, 3, g);
    vit.to(DType::f64);
    vit.eval();
    randomize_trainable(vit, 9);
    std::vector<Tensor> inputs{transpose(randn64({2, 3, 8, 8}, 11, false), 2, 3)};
    for (auto& [_, p] : vit.named_parameters()) inputs.push_back(p);
    auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
    auto r = gradcheck(fn, inputs);
    EXPECT_TRUE(r.ok) << pool << ": " << r.message;
  }
}

TEST(Ia3Method, FrozenTensorsGetNoGradientAndNoOptimizerState) {
  nn::VisionTransformer vit(tiny(), 3);
  Generator g(4);
  apply_method(vit, "ia3", MethodOptions{}, 3, g);
  randomize_trainable(vit, 9);
  Generator gi(5);
  backward(cross_entropy(vit.forward(randn({2, 3, 8, 8}, gi)), from_vector_i64({0, 2}, {2})));
  int64_t trainable = 0;
  for (auto& [n, p] : vit.named_parameters()) {
    EXPECT_EQ(p.grad().defined(), p.requires_grad()) << n;
    if (p.requires_grad()) trainable += p.numel();
  }
  nn::AdamW opt(nn::param_groups(vit.named_parameters(), 0.05), 1e-3);
  opt.step();
  EXPECT_EQ(opt.state_bytes(), 2 * 4 * trainable);
}

// ---------------------------------------------------------------- merge

TEST(Ia3Method, MergeEqualsUnmergedAndGivesAPlainViT) {
  nn::ViTConfig c = tiny();
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "ia3", MethodOptions{}, 4, g);
  randomize_trainable(vit, 6);
  vit.eval();
  Generator gi(5);
  Tensor img = randn({3, 3, 8, 8}, gi);
  const Tensor before = vit.forward(img).detach();
  const Tensor fc2_bias = vit.parameter("blocks.0.mlp.fc2.bias").clone();
  merge_adapters(vit);
  EXPECT_LE(max_abs_diff(vit.forward(img), before), 1e-5);
  for (auto& [n, p] : vit.named_parameters()) {
    if (n.find("ia3_") == std::string::npos) continue;
    for (float e : p.to_vector<float>()) EXPECT_EQ(e, 1.0f) << n;
  }  // the identity again
  EXPECT_EQ(max_abs_diff(vit.parameter("blocks.0.mlp.fc2.bias"), fc2_bias), 0.0);  // fc2's bias unscaled
  nn::NamedTensors sd = plain_state_dict(vit);
  for (auto& [n, _] : sd) EXPECT_EQ(n.find("ia3_"), std::string::npos) << n;
  c.num_classes = 4;
  nn::VisionTransformer plain(c, 9);
  plain.load_state_dict(std::map<std::string, Tensor>(sd.begin(), sd.end()), /*strict=*/true);
  plain.eval();
  EXPECT_LE(max_abs_diff(plain.forward(img), before), 1e-5);
  // q rows unchanged, k rows changed.
  nn::VisionTransformer base(tiny(), 1);
  Tensor w = plain.parameter("blocks.0.attn.qkv.weight"), w0 = base.parameter("blocks.0.attn.qkv.weight");
  EXPECT_EQ(max_abs_diff(narrow(w, 0, 0, c.dim), narrow(w0, 0, 0, c.dim)), 0.0);
  EXPECT_GT(max_abs_diff(narrow(w, 0, c.dim, c.dim), narrow(w0, 0, c.dim, c.dim)), 1e-3);
}

// ---------------------------------------------------------------- refusals

TEST(Ia3Method, OpenaiLayoutIsRefusedInOneLine) {
  nn::ViTConfig c = tiny();
  c.style = "openai_clip_visual";
  c.act = "quick_gelu";
  c.ln_eps = 1e-5;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  try {
    apply_method(vit, "ia3", MethodOptions{}, 3, g);
    FAIL() << "no error";
  } catch (const MethodError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ia3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("openai_clip_visual"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_EQ(vit.num_parameters(true), vit.num_parameters());
}

}  // namespace
}  // namespace peft
