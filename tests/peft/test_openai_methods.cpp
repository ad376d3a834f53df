// LoRA and SSF on the openai_clip_visual layout (methods.md "What must match", "Chosen here for the openai
// layout"): adapter names and shapes, the target short names, float64 gradchecks, frozen tensors
// without gradients, and merges that reproduce the unmerged logits with a plain OpenAI state dict.
#include <fmt/format.h>

#include <set>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "peft/merge.h"
#include "peft/method.h"
#include "tests/peft/method_testing.h"
#include "tests/testing.h"

namespace peft {
namespace {

using testing::randomize_trainable;
using testing::trainable_set;

using testing::randn64;

nn::ViTConfig openai_tiny(int64_t depth = 2) {
  nn::ViTConfig c;
  c.style = "openai_clip_visual";
  c.act = "quick_gelu";
  c.ln_eps = 1e-5;
  c.image_size = 8;
  c.patch_size = 4;
  c.dim = 8;
  c.depth = depth;
  c.heads = 2;
  c.num_classes = 3;
  c.embed_dim = 6;
  return c;
}

MethodOptions opts(const std::string& targets = "attn.in_proj") {
  MethodOptions o;
  o.rank = 2;
  o.alpha = 3.0;
  o.targets = targets;
  return o;
}

const std::string kAllTargets = "attn.in_proj,attn.out_proj,mlp.c_fc,mlp.c_proj";



TEST(OpenaiMethods, LoraNamesAndShapes) {
  const auto c = openai_tiny();
  const int64_t W = c.dim, F = c.mlp_hidden();
  {  // the default --targets (attn.qkv) is the fused in_proj on this layout
    nn::VisionTransformer vit(c, 1);
    Generator g(2);
    MethodOptions o = opts();
    o.targets = MethodOptions{}.targets;
    apply_method(vit, "lora", o, 4, g);
    std::set<std::string> want = {"head.weight", "head.bias"};
    for (int i = 0; i < c.depth; ++i) {
      const std::string b = fmt::format("transformer.resblocks.{}.attn.in_proj.", i);
      want.insert({b + "lora_A", b + "lora_B"});
      EXPECT_EQ(vit.parameter(b + "lora_A").sizes(), (Shape{2, W}));
      EXPECT_EQ(vit.parameter(b + "lora_B").sizes(), (Shape{3 * W, 2}));
    }
    EXPECT_EQ(trainable_set(vit), want);
    // The base names stay those of an OpenAI state dict.
    EXPECT_TRUE(vit.has_parameter("transformer.resblocks.0.attn.in_proj_weight"));
    EXPECT_FALSE(vit.has_parameter("transformer.resblocks.0.attn.in_proj.weight"));
  }
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "lora", opts(kAllTargets), 4, g);
  std::set<std::string> want = {"head.weight", "head.bias"};
  for (int i = 0; i < c.depth; ++i)
    for (auto [t, in, out] : std::vector<std::tuple<std::string, int64_t, int64_t>>{
             {"attn.in_proj", W, 3 * W}, {"attn.out_proj", W, W}, {"mlp.c_fc", W, F}, {"mlp.c_proj", F, W}}) {
      const std::string b = fmt::format("transformer.resblocks.{}.{}.", i, t);
      want.insert({b + "lora_A", b + "lora_B"});
      EXPECT_EQ(vit.parameter(b + "lora_A").sizes(), (Shape{2, in})) << b;
      EXPECT_EQ(vit.parameter(b + "lora_B").sizes(), (Shape{out, 2})) << b;
    }
  EXPECT_EQ(trainable_set(vit), want);
}

TEST(OpenaiMethods, SsfNamesAndShapes) {
  const auto c = openai_tiny();
  const int64_t W = c.dim, F = c.mlp_hidden(), L = c.depth;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "ssf", opts(), 4, g);
  std::vector<std::pair<std::string, int64_t>> ops = {{"conv1", W}, {"ln_post", W}};
  for (int i = 0; i < L; ++i)
    for (auto [op, ch] : std::vector<std::pair<std::string, int64_t>>{
             {"ln_1", W}, {"attn.in_proj", 3 * W}, {"attn.out_proj", W}, {"ln_2", W}, {"mlp.c_fc", F}, {"mlp.c_proj", W}})
      ops.emplace_back(fmt::format("transformer.resblocks.{}.{}", i, op), ch);
  EXPECT_EQ(static_cast<int64_t>(ops.size()), 6 * L + 2);
  std::set<std::string> want = {"head.weight", "head.bias"};
  for (auto& [op, ch] : ops) {
    want.insert({op + ".ssf_scale", op + ".ssf_shift"});
    EXPECT_EQ(vit.parameter(op + ".ssf_scale").sizes(), (Shape{ch})) << op;
    EXPECT_EQ(vit.parameter(op + ".ssf_shift").sizes(), (Shape{ch})) << op;
  }
  EXPECT_EQ(trainable_set(vit), want);  // nothing on ln_pre or proj
  EXPECT_FALSE(vit.has_parameter("ln_pre.ssf_scale"));
}

TEST(OpenaiMethods, LoraTargetShortNamesAliasesAndGlobs) {
  nn::VisionTransformer vit(openai_tiny(3), 1);
  const std::vector<std::string> in_proj = {"transformer.resblocks.0.attn.in_proj", "transformer.resblocks.1.attn.in_proj",
                                            "transformer.resblocks.2.attn.in_proj"};
  EXPECT_EQ(lora_target_names(vit, "attn.in_proj"), in_proj);
  EXPECT_EQ(lora_target_names(vit, "attn.qkv"), in_proj);  // the timm short names are aliases here
  EXPECT_EQ(lora_target_names(vit, "mlp.c_proj, attn.out_proj"),
            (std::vector<std::string>{"transformer.resblocks.0.attn.out_proj", "transformer.resblocks.0.mlp.c_proj",
                                      "transformer.resblocks.1.attn.out_proj", "transformer.resblocks.1.mlp.c_proj",
                                      "transformer.resblocks.2.attn.out_proj", "transformer.resblocks.2.mlp.c_proj"}));
  EXPECT_EQ(lora_target_names(vit, "mlp.fc1"), lora_target_names(vit, "mlp.c_fc"));
  EXPECT_EQ(lora_target_names(vit, "transformer.resblocks.[12].attn.in_proj"),
            (std::vector<std::string>{in_proj[1], in_proj[2]}));
  EXPECT_THROW_MSG(lora_target_names(vit, "attn.proj9"), MethodError, "attn.proj9", "attn.in_proj", "mlp.c_fc");
  EXPECT_THROW_MSG(lora_target_names(vit, "blocks.0.attn.qkv"), MethodError, "matches no linear");
  // The head and ln_post are no targets.
  EXPECT_THROW_MSG(lora_target_names(vit, "head"), MethodError, "'head'");
}

TEST(OpenaiMethods, Float64GradcheckOfLoraAndSsf) {
  for (const std::string method : {"lora", "ssf"}) {
    nn::VisionTransformer vit(openai_tiny(), 3);
    Generator g(4);
    apply_method(vit, method, opts(kAllTargets), 3, g);
    vit.to(DType::f64);
    vit.eval();
    randomize_trainable(vit, 9);
    std::vector<Tensor> inputs{randn64({2, 3, 8, 8}, 11, false)};
    for (auto& [_, p] : vit.named_parameters()) inputs.push_back(p);  // frozen ones too: no gradient
    auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
    auto r = gradcheck(fn, inputs);
    EXPECT_TRUE(r.ok) << method << ": " << r.message;
  }
}

TEST(OpenaiMethods, FrozenTensorsGetNoGradient) {
  for (const std::string method : {"lora", "ssf"}) {
    nn::VisionTransformer vit(openai_tiny(), 3);
    Generator g(4);
    apply_method(vit, method, opts(kAllTargets), 3, g);
    randomize_trainable(vit, 9);
    Generator gi(5);
    Tensor loss = cross_entropy(vit.forward(randn({2, 3, 8, 8}, gi)), from_vector_i64({0, 2}, {2}));
    backward(loss);
    int trainable = 0;
    for (auto& [n, p] : vit.named_parameters()) {
      EXPECT_EQ(p.grad().defined(), p.requires_grad()) << method << " " << n;
      trainable += p.requires_grad();
    }
    EXPECT_GT(trainable, 2) << method;
  }
}

TEST(OpenaiMethods, LoraStartsAtTheBaseModel) {
  nn::VisionTransformer base(openai_tiny(), 3), vit(openai_tiny(), 3);
  Generator g(4);
  apply_method(vit, "lora", opts(kAllTargets), 3, g);
  {
    NoGradGuard ng;
    Tensor(base.parameter("head.weight")).copy_(vit.parameter("head.weight"));
    Tensor(base.parameter("head.bias")).copy_(vit.parameter("head.bias"));
  }
  base.eval();
  vit.eval();
  Tensor x = randn64({2, 3, 8, 8}, 7, false).to(DType::f32);
  EXPECT_LE(max_abs_diff(base.forward(x), vit.forward(x)), 1e-6);
}

// The merged state dict has exactly the base names of a plain OpenAI-layout ViT, and that plain
// model gives the unmerged logits.
void expect_merge_reproduces_logits(const std::string& method) {
  SCOPED_TRACE(method);
  const auto c = openai_tiny();
  nn::VisionTransformer vit(c, 3);
  Generator g(4);
  apply_method(vit, method, opts(kAllTargets), 3, g);
  randomize_trainable(vit, 21);
  vit.eval();
  Tensor x = randn64({3, 3, 8, 8}, 13, false).to(DType::f32);
  Tensor before;
  {
    NoGradGuard ng;
    before = vit.forward(x);
  }
  merge_adapters(vit);
  nn::NamedTensors sd = plain_state_dict(vit);
  nn::VisionTransformer plain(c, 99);
  std::vector<std::string> got_names, want_names;
  for (auto& [n, _] : sd) got_names.push_back(n);
  for (auto& [n, _] : plain.state_dict()) want_names.push_back(n);
  EXPECT_EQ(got_names, want_names);
  std::map<std::string, Tensor> m(sd.begin(), sd.end());
  plain.load_state_dict(m);
  plain.eval();
  NoGradGuard ng;
  EXPECT_LE(max_abs_diff(plain.forward(x), before), 1e-5);
  EXPECT_LE(max_abs_diff(vit.forward(x), before), 1e-5);  // the slots are identities afterwards
}

TEST(OpenaiMethods, MergedLogitsEqualUnmergedLogits) {
  expect_merge_reproduces_logits("lora");
  expect_merge_reproduces_logits("ssf");
}

// conv1 has no bias: its SSF shift lands in positional_embedding rows 1..N (row 0, CLS, untouched),
// its scale in the filters; the LoRA update of in_proj in in_proj_weight.
TEST(OpenaiMethods, MergeFoldsConv1ShiftIntoThePatchRowsOfThePositionEmbedding) {
  nn::VisionTransformer vit(openai_tiny(), 3);
  Generator g(4);
  apply_method(vit, "ssf", opts(), 3, g);
  randomize_trainable(vit, 5);
  const Tensor pos0 = vit.parameter("positional_embedding").clone();
  const Tensor w0 = vit.parameter("conv1.weight").clone();
  const Tensor sc = vit.parameter("conv1.ssf_scale").clone(), sh = vit.parameter("conv1.ssf_shift").clone();
  merge_adapters(vit);
  Tensor pos = vit.parameter("positional_embedding");
  EXPECT_LE(max_abs_diff(narrow(pos, 0, 0, 1), narrow(pos0, 0, 0, 1)), 0.0);
  EXPECT_LE(max_abs_diff(narrow(pos, 0, 1, 4), add(narrow(pos0, 0, 1, 4), reshape(sh, {1, -1}))), 1e-6);
  EXPECT_LE(max_abs_diff(vit.parameter("conv1.weight"), mul(w0, reshape(sc, {-1, 1, 1, 1}))), 1e-6);

  nn::VisionTransformer lv(openai_tiny(), 3);
  apply_method(lv, "lora", opts(), 3, g);
  randomize_trainable(lv, 6);
  const std::string b = "transformer.resblocks.1.attn.";
  const Tensor wq0 = lv.parameter(b + "in_proj_weight").clone();
  Tensor delta = mul(matmul(lv.parameter(b + "in_proj.lora_B"), lv.parameter(b + "in_proj.lora_A")), 3.0 / 2.0);
  merge_adapters(lv);
  EXPECT_LE(max_abs_diff(lv.parameter(b + "in_proj_weight"), add(wq0, delta.detach())), 1e-5);
}

}  // namespace
}  // namespace peft
