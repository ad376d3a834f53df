// Vision PEFT methods on a tiny ViT: trainable sets and names (interop.md), init (methods.md
// 6-12), float64 gradcheck of each method's tensors, freeze masks (no gradient, no optimizer
// state, no weight-gradient GEMM for frozen tensors), the VPT/CVPT identities, bad options.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/counters.h"
#include "nn/layers.h"
#include "nn/linear.h"
#include "nn/optim/optimizer.h"
#include "peft/method.h"
#include "tests/peft/method_testing.h"
#include "tests/testing.h"

namespace peft {
namespace {

using testing::randomize_trainable;
using testing::trainable_set;

using testing::randn64;

nn::ViTConfig tiny(int64_t depth = 2, const std::string& pool = "cls") {
  nn::ViTConfig c;
  c.image_size = 8; c.patch_size = 4; c.dim = 8; c.depth = depth; c.heads = 2; c.num_classes = 3; c.pool = pool;
  return c;
}

MethodOptions small_opts() {
  MethodOptions o;
  o.prompts = 3;
  o.rank = 2;
  o.alpha = 3.0;
  o.bottleneck = 4;
  return o;
}


const std::vector<std::string> kMethods = {"linear", "full", "bitfit", "vpt-shallow", "vpt-deep",
                                           "cvpt",   "ssf",  "lora",   "adaptformer"};

// ---------------------------------------------------------------- trainable sets and names

TEST(Methods, RegistryListsEveryVisionMethodWithItsOptions) {
  for (const auto& m : kMethods) EXPECT_TRUE(is_vision_method(m)) << m;
  EXPECT_FALSE(is_vision_method("coop"));
  for (auto& info : vision_methods()) {
    if (info.name == "lora") {
      EXPECT_NE(info.options.find("--targets"), std::string::npos);
    }
    if (info.name == "adaptformer") {
      EXPECT_NE(info.options.find("--bottleneck"), std::string::npos);
    }
    if (info.name == "bitfit") {
      EXPECT_NE(info.description.find("in_proj_bias"), std::string::npos);
    }
  }
}

TEST(Methods, TrainableSetsMatchInterop) {
  const auto c = tiny();
  const int64_t D = c.dim, L = c.depth, F = c.mlp_hidden(), K = 5;
  for (const auto& method : kMethods) {
    nn::VisionTransformer vit(c, 1);
    Generator g(2);
    apply_method(vit, method, small_opts(), K, g);
    std::set<std::string> want = {"head.weight", "head.bias"};
    std::set<std::string> got = trainable_set(vit);
    if (method == "full") {
      for (auto& [n, _] : vit.named_parameters()) want.insert(n);
    } else if (method == "bitfit") {
      want.insert({"patch_embed.proj.bias", "norm.bias"});
      for (int i = 0; i < L; ++i)
        for (const char* s : {"norm1.bias", "attn.qkv.bias", "attn.proj.bias", "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias"})
          want.insert(fmt::format("blocks.{}.{}", i, s));
    } else if (method == "vpt-shallow" || method == "vpt-deep") {
      want.insert("vpt.prompts");
      EXPECT_EQ(vit.parameter("vpt.prompts").sizes(), (Shape{method == "vpt-deep" ? L : 1, 3, D}));
    } else if (method == "cvpt") {
      want.insert("cvpt.prompts");
      EXPECT_EQ(vit.parameter("cvpt.prompts").sizes(), (Shape{L, 3, D}));
    } else if (method == "ssf") {
      std::vector<std::pair<std::string, int64_t>> ops = {{"patch_embed.proj", D}, {"norm", D}};
      for (int i = 0; i < L; ++i) {
        const std::string b = fmt::format("blocks.{}.", i);
        for (auto [op, ch] : std::vector<std::pair<std::string, int64_t>>{
                 {"norm1", D}, {"attn.qkv", 3 * D}, {"attn.proj", D}, {"norm2", D}, {"mlp.fc1", F}, {"mlp.fc2", D}})
          ops.emplace_back(b + op, ch);
      }
      EXPECT_EQ(static_cast<int64_t>(ops.size()), 6 * L + 2);
      for (auto& [op, ch] : ops) {
        want.insert({op + ".ssf_scale", op + ".ssf_shift"});
        EXPECT_EQ(vit.parameter(op + ".ssf_scale").sizes(), (Shape{ch})) << op;
      }
    } else if (method == "lora") {  // default target attn.qkv
      for (int i = 0; i < L; ++i) {
        const std::string b = fmt::format("blocks.{}.attn.qkv.", i);
        want.insert({b + "lora_A", b + "lora_B"});
        EXPECT_EQ(vit.parameter(b + "lora_A").sizes(), (Shape{2, D}));
        EXPECT_EQ(vit.parameter(b + "lora_B").sizes(), (Shape{3 * D, 2}));
      }
    } else if (method == "adaptformer") {
      for (int i = 0; i < L; ++i)
        for (const char* s : {"down_proj.weight", "down_proj.bias", "up_proj.weight", "up_proj.bias"})
          want.insert(fmt::format("blocks.{}.adaptmlp.{}", i, s));
      EXPECT_EQ(vit.parameter("blocks.0.adaptmlp.down_proj.weight").sizes(), (Shape{4, D}));
      EXPECT_EQ(vit.parameter("blocks.0.adaptmlp.up_proj.weight").sizes(), (Shape{D, 4}));
    }
    EXPECT_EQ(got, want) << method;
    EXPECT_EQ(vit.parameter("head.weight").sizes(), (Shape{K, D})) << method;
  }
}

TEST(Methods, LoraTargetsShortNamesAndGlobs) {
  nn::VisionTransformer vit(tiny(3), 1);
  EXPECT_EQ(lora_target_names(vit, "attn.qkv"),
            (std::vector<std::string>{"blocks.0.attn.qkv", "blocks.1.attn.qkv", "blocks.2.attn.qkv"}));
  EXPECT_EQ(lora_target_names(vit, "mlp.fc1, attn.proj"),
            (std::vector<std::string>{"blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.1.attn.proj", "blocks.1.mlp.fc1",
                                      "blocks.2.attn.proj", "blocks.2.mlp.fc1"}));
  EXPECT_EQ(lora_target_names(vit, "blocks.[12].mlp.fc2"),
            (std::vector<std::string>{"blocks.1.mlp.fc2", "blocks.2.mlp.fc2"}));
  EXPECT_EQ(lora_target_names(vit, "blocks.0.attn.qkv"), (std::vector<std::string>{"blocks.0.attn.qkv"}));
  // The head is not a LoRA target (it trains in full).
  EXPECT_THROW_MSG(lora_target_names(vit, "head"), MethodError, "--targets", "'head'");
  EXPECT_THROW_MSG(lora_target_names(vit, "attn.qkv,mlp.fc3"), MethodError, "--targets", "'mlp.fc3'");
}

// ---------------------------------------------------------------- init

TEST(Methods, InitFollowsTheStatedDistributions) {
  const auto c = tiny();
  const double D = static_cast<double>(c.dim), P = static_cast<double>(c.patch_size);
  MethodOptions o = small_opts();
  o.prompts = 50;
  {  // VPT: U(-v, v), v = sqrt(6 / (3 P^2 + D))
    nn::VisionTransformer vit(c, 1);
    Generator g(2);
    apply_method(vit, "vpt-deep", o, 3, g);
    auto v = vit.parameter("vpt.prompts").to_vector<float>();
    const double bound = std::sqrt(6.0 / (3 * P * P + D));
    double mx = 0;
    for (float e : v) mx = std::max(mx, std::abs(static_cast<double>(e)));
    EXPECT_LE(mx, bound);
    EXPECT_GT(mx, 0.9 * bound);
  }
  {  // CVPT: xavier-uniform bound sqrt(6 / ((M + L) D))
    nn::VisionTransformer vit(c, 1);
    Generator g(2);
    apply_method(vit, "cvpt", o, 3, g);
    auto v = vit.parameter("cvpt.prompts").to_vector<float>();
    const double bound = std::sqrt(6.0 / ((50.0 + c.depth) * D));
    double mx = 0;
    for (float e : v) mx = std::max(mx, std::abs(static_cast<double>(e)));
    EXPECT_LE(mx, bound);
    EXPECT_GT(mx, 0.9 * bound);
  }
  {  // SSF: scale ~ N(1, .02^2), shift ~ N(0, .02^2)
    nn::VisionTransformer vit(c, 1);
    Generator g(2);
    apply_method(vit, "ssf", o, 3, g);
    double s1 = 0, s2 = 0, t1 = 0, t2 = 0;
    int64_t n = 0;
    for (auto& [name, p] : vit.named_parameters()) {
      if (name.find("ssf_scale") == std::string::npos) continue;
      auto sc = p.to_vector<float>();
      auto sh = vit.parameter(name.substr(0, name.size() - 5) + "shift").to_vector<float>();
      for (size_t i = 0; i < sc.size(); ++i, ++n) {
        s1 += sc[i]; s2 += (sc[i] - 1.0) * (sc[i] - 1.0); t1 += sh[i]; t2 += sh[i] * sh[i];
      }
    }
    EXPECT_NEAR(s1 / n, 1.0, 0.005);
    EXPECT_NEAR(std::sqrt(s2 / n), 0.02, 0.004);
    EXPECT_NEAR(t1 / n, 0.0, 0.005);
    EXPECT_NEAR(std::sqrt(t2 / n), 0.02, 0.004);
  }
}

// SSF on a LayerNorm is folded into the LayerNorm's affine (xhat (w s) + (b s + t)): the same
// values and gradients as scaling and shifting the LayerNorm's output, but the only [R, D]
// tensor kept for backward is the input (plus w s and the row statistics).
TEST(Methods, SsfOnLayerNormFoldsIntoTheAffineAndSavesNoOutput) {
  const int64_t R = 5;
  nn::ViTConfig c = tiny();
  const int64_t D = c.dim;
  nn::VisionTransformer vit(c, 0);
  Generator g(3);
  apply_method(vit, "ssf", MethodOptions{}, 3, g);
  nn::LayerNorm& ln = vit.final_norm();  // the SSF wrapper of "norm"
  Tensor scale = vit.parameter("norm.ssf_scale"), shift = vit.parameter("norm.ssf_shift");
  {
    NoGradGuard ng;
    ln.weight.copy_(randn({D}, g, DType::f32, 1.0, 0.3));
    ln.bias.copy_(randn({D}, g, DType::f32, 0.0, 0.3));
  }
  ASSERT_FALSE(ln.weight.requires_grad());  // frozen by apply_method
  Tensor x = randn({R, D}, g).requires_grad_();
  Tensor gout = randn({R, D}, g);
  Tensor y = ln.forward(x);
  EXPECT_EQ(y.grad_fn()->saved_bytes, static_cast<size_t>(R * D * 4 + D * 4 + 2 * R * 8));
  backward(sum(mul(y, gout)));
  Tensor gx = x.grad(), gs = scale.grad(), gt = shift.grad();
  x.zero_grad();
  scale.zero_grad();
  shift.zero_grad();
  Tensor ref = add(mul(layer_norm(x, ln.weight, ln.bias, ln.eps), scale), shift);
  backward(sum(mul(ref, gout)));
  EXPECT_LT(max_abs_diff(y, ref), 1e-5);
  EXPECT_LT(max_abs_diff(gx, x.grad()), 1e-4);
  EXPECT_LT(max_abs_diff(gs, scale.grad()), 1e-4);
  EXPECT_LT(max_abs_diff(gt, shift.grad()), 1e-4);
  EXPECT_FALSE(ln.weight.grad().defined());  // the LayerNorm's own affine stays frozen
}

// LoRA and AdaptFormer start exactly at the base model (B = 0; up = 0).
TEST(Methods, LoraAndAdaptformerStartAtTheBaseModel) {
  const auto c = tiny();
  Generator gi(5);
  Tensor img = randn({2, 3, 8, 8}, gi);
  for (const char* method : {"lora", "adaptformer"}) {
    nn::VisionTransformer vit(c, 1);
    Generator g(2);
    apply_method(vit, "linear", small_opts(), 3, g);
    vit.eval();
    Tensor before = vit.forward(img).detach();
    nn::VisionTransformer vit2(c, 1);
    Generator g2(2);
    MethodOptions o = small_opts();
    o.targets = "attn.qkv,attn.proj,mlp.fc1,mlp.fc2";
    apply_method(vit2, method, o, 3, g2);
    vit2.eval();
    vit2.head->weight.copy_(vit.head->weight);
    vit2.head->bias.copy_(vit.head->bias);
    EXPECT_EQ(max_abs_diff(vit2.forward(img), before), 0.0) << method;
    if (std::string(method) == "lora") {
      auto a = vit2.parameter("blocks.0.mlp.fc1.lora_A").to_vector<float>();  // U(+-1/sqrt(in))
      double mx = 0;
      for (float e : a) mx = std::max(mx, std::abs(static_cast<double>(e)));
      EXPECT_LE(mx, 1.0 / std::sqrt(static_cast<double>(c.dim)));
      EXPECT_GT(mx, 0.0);
    } else {
      for (const char* z : {"blocks.1.adaptmlp.down_proj.bias", "blocks.1.adaptmlp.up_proj.weight", "blocks.1.adaptmlp.up_proj.bias"})
        for (float e : vit2.parameter(z).to_vector<float>()) EXPECT_EQ(e, 0.0f) << z;
    }
  }
}

// ---------------------------------------------------------------- gradients

// float64 gradcheck of every trainable tensor of each method (all tensors passed, so frozen
// ones are checked to get no gradient), in eval mode.
TEST(Methods, Float64GradcheckOfEachMethod) {
  for (const auto& method : std::vector<std::string>{"bitfit", "vpt-shallow", "vpt-deep", "cvpt", "ssf", "lora", "adaptformer"}) {
    for (const std::string pool : {"cls", "mean"}) {
      if (pool == "mean" && method != "vpt-deep" && method != "ssf") continue;
      nn::VisionTransformer vit(tiny(2, pool), 3);
      Generator g(4);
      MethodOptions o = small_opts();
      o.prompts = 2;
      o.targets = "attn.qkv,mlp.fc2";
      apply_method(vit, method, o, 3, g);
      vit.to(DType::f64);
      vit.eval();
      randomize_trainable(vit, 9);
      std::vector<Tensor> inputs{randn64({2, 3, 8, 8}, 11, false)};
      for (auto& [_, p] : vit.named_parameters()) inputs.push_back(p);
      auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
      auto r = gradcheck(fn, inputs);
      EXPECT_TRUE(r.ok) << method << " pool " << pool << ": " << r.message;
    }
  }
}

// Frozen tensors get no gradient and the optimizer keeps state for the trainable ones only.
TEST(Methods, FrozenTensorsGetNoGradientAndNoOptimizerState) {
  for (const auto& method : kMethods) {
    nn::VisionTransformer vit(tiny(), 3);
    Generator g(4);
    apply_method(vit, method, small_opts(), 3, g);
    const int64_t trainable = testing::expect_grads_only_on_trainable(vit, method);
    EXPECT_EQ(trainable, vit.num_parameters(true));
    testing::expect_optimizer_state_for_trainable_only(vit, trainable, method);
    nn::AdamW opt(nn::param_groups(vit.named_parameters(), 0.05), 1e-3);
    EXPECT_EQ(static_cast<int64_t>(opt.params().size()), static_cast<int64_t>(trainable_names(vit).size()));
  }
}

// No weight-gradient GEMM for frozen linears: LoRA on qkv with the head trainable. Backward
// GEMMs, counted from the op contracts (linear: dX only if x needs it, dW only if W trains;
// attention: dV, dP, dQ, dK per batch row and head):
//   head: dX + dW = 2
//   per block: fc2 dX, fc1 dX, proj dX = 3; attention 4*B*H;
//              LoRA B: dZ + dB = 2; LoRA A: dA = 1 (+ dX for blocks i >= 1);
//              frozen qkv: dX for blocks i >= 1 only (block 0's input needs no gradient)
//   patch embed: 0 (frozen, and the images need no gradient).
TEST(Methods, FrozenLinearsCostNoWeightGradientGemm) {
  const auto c = tiny(3);
  const int64_t B = 2, H = c.heads, L = c.depth;
  nn::VisionTransformer vit(c, 3);
  Generator g(4);
  apply_method(vit, "lora", small_opts(), 3, g);
  randomize_trainable(vit, 9);
  Generator gi(5);
  Tensor loss = cross_entropy(vit.forward(randn({B, 3, 8, 8}, gi)), from_vector_i64({0, 2}, {2}));
  reset_gemm_counters();
  backward(loss);
  const int64_t want = 2 + L * (3 + 4 * B * H + 2 + 1) + (L - 1) * 2;
  EXPECT_EQ(counters().gemm_calls.load(), want);

  // Control: the same model with every tensor trainable needs more GEMMs (the dW ones).
  for (auto& [_, p] : vit.named_parameters()) Tensor(p).requires_grad_(true);
  Tensor loss2 = cross_entropy(vit.forward(randn({B, 3, 8, 8}, gi)), from_vector_i64({0, 2}, {2}));
  reset_gemm_counters();
  backward(loss2);
  EXPECT_GT(counters().gemm_calls.load(), want + 4 * L);
}

// ---------------------------------------------------------------- VPT and CVPT identities

// methods.md "VPT-deep": with L = 1, VPT-deep is VPT-shallow.
TEST(Methods, VptDeepWithOneBlockEqualsShallow) {
  for (const std::string pool : {"cls", "mean"}) {
    const auto c = tiny(1, pool);
    nn::VisionTransformer deep(c, 1), shallow(c, 1);
    Generator g1(2), g2(2);
    apply_method(deep, "vpt-deep", small_opts(), 3, g1);
    apply_method(shallow, "vpt-shallow", small_opts(), 3, g2);
    randomize_trainable(deep, 7);
    auto sd = deep.state_dict();
    shallow.load_state_dict(std::map<std::string, Tensor>(sd.begin(), sd.end()));
    EXPECT_EQ(deep.parameter("vpt.prompts").sizes(), shallow.parameter("vpt.prompts").sizes());
    deep.eval();
    shallow.eval();
    Generator gi(5);
    Tensor img = randn({2, 3, 8, 8}, gi);
    EXPECT_EQ(max_abs_diff(deep.forward(img), shallow.forward(img)), 0.0) << pool;
  }
}

// Prompts fed zero attention mass: the output is the plain ViT's. Channels a, b of the residual
// stream are kept at exactly 0 for the CLS and patch tokens (zero patch-embed, CLS, pos-embed,
// proj and fc2 rows), so after norm1 (gamma = 1, beta = 0 on a, b) their normalised values are
// equal. Head dim 0 of every head gets q = 1 for all tokens and k = -s (n_a - n_b): 0 for the
// real tokens, about -s*sqrt(D) for prompts that point along channel a. With s huge the prompt
// columns of every softmax underflow to 0, so CLS and patch rows never see the prompts; the
// prompts' own rows are discarded (deep) or excluded from pooling. With s = 0 they do matter.
TEST(Methods, VptPromptsWithZeroAttentionMassLeaveThePlainViT) {
  for (const std::string method : {"vpt-shallow", "vpt-deep"}) {
    for (const std::string pool : {"cls", "mean"}) {
      for (double s : {1e4, 0.0}) {
        const auto c = tiny(3, pool);
        const int64_t D = c.dim, hd = c.dim / c.heads, a = 0, b = 1;
        nn::VisionTransformer vit(c, 1);
        Generator g(2);
        apply_method(vit, method, small_opts(), 3, g);
        vit.to(DType::f64);
        vit.eval();
        {
          NoGradGuard ng;
          Generator r(8);
          for (auto& [n, p] : vit.named_parameters()) {
            const bool is_norm_weight = n.find("norm") != std::string::npos && n.find(".weight") != std::string::npos;
            Tensor(p).copy_(randn(p.sizes(), r, DType::f64, is_norm_weight ? 1.0 : 0.0, 0.3));
          }
          auto zero_channel = [&](const Tensor& t, int64_t dim, int64_t ch) { narrow(t.detach(), dim, ch, 1).fill_(0.0); };
          for (int64_t ch : {a, b}) {
            zero_channel(vit.patch_embed->weight, 0, ch);
            zero_channel(vit.patch_embed->bias, 0, ch);
            zero_channel(vit.cls_token, 2, ch);
            zero_channel(vit.pos_embed, 2, ch);
            for (auto& blk : vit.block_list) {
              zero_channel(blk->attn->proj->weight, 0, ch);
              zero_channel(blk->attn->proj->bias, 0, ch);
              zero_channel(blk->mlp->fc2->weight, 0, ch);
              zero_channel(blk->mlp->fc2->bias, 0, ch);
              narrow(blk->norm1->weight.detach(), 0, ch, 1).fill_(1.0);
              narrow(blk->norm1->bias.detach(), 0, ch, 1).fill_(0.0);
            }
          }
          for (auto& blk : vit.block_list) {
            Tensor w = blk->attn->qkv->weight.detach(), bias = blk->attn->qkv->bias.detach();
            for (int64_t h = 0; h < c.heads; ++h) {
              const int64_t q = h * hd, k = D + h * hd;  // head dim 0 of head h in q and in k
              narrow(w, 0, q, 1).fill_(0.0);
              narrow(bias, 0, q, 1).fill_(1.0);
              narrow(w, 0, k, 1).fill_(0.0);
              narrow(narrow(w, 0, k, 1), 1, a, 1).fill_(-s);
              narrow(narrow(w, 0, k, 1), 1, b, 1).fill_(s);
              narrow(bias, 0, k, 1).fill_(0.0);
            }
          }
          // Prompts: large along channel a (LN makes their n_a - n_b about sqrt(D)).
          Tensor pr = vit.parameter("vpt.prompts").detach();
          pr.copy_(randn(pr.sizes(), r, DType::f64, 0.0, 0.1));
          narrow(pr, 2, a, 1).fill_(5.0);
        }
        Generator gi(5);
        Tensor img = randn({2, 3, 8, 8}, gi, DType::f64);
        Tensor with = vit.forward(img).detach();
        // The plain ViT with the same weights and head.
        nn::VisionTransformer plain(c, 1);
        plain.to(DType::f64);
        plain.eval();
        std::map<std::string, Tensor> sd;
        for (auto& [n, t] : vit.state_dict())
          if (n != "vpt.prompts") sd[n] = t;
        plain.load_state_dict(sd);
        const double diff = max_abs_diff(with, plain.forward(img));
        if (s > 0)
          EXPECT_LT(diff, 1e-12) << method << " " << pool;
        else
          EXPECT_GT(diff, 1e-4) << method << " " << pool << ": the control must see the prompts";
      }
    }
  }
}

// CVPT keeps the sequence at 1+N tokens in every block (prompts never join the self-attention
// or the MLP), and its cross-attention uses the block's frozen qkv/proj (no gradient to them).
TEST(Methods, CvptKeepsTheSequenceLengthAndSharesFrozenWeights) {
  const auto c = tiny(3);
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "cvpt", small_opts(), 3, g);
  randomize_trainable(vit, 4);
  for (auto& b : vit.block_list) b->attn->keep_attention = true;
  Generator gi(5);
  Tensor loss = cross_entropy(vit.forward(randn({2, 3, 8, 8}, gi)), from_vector_i64({0, 1}, {2}));
  backward(loss);
  const int64_t T = 1 + c.num_patches();
  for (auto& b : vit.block_list) {
    EXPECT_EQ(b->attn->last_attention.sizes(), (Shape{2, c.heads, T, T}));
    EXPECT_FALSE(b->attn->qkv->weight.grad().defined());
    EXPECT_FALSE(b->attn->proj->weight.grad().defined());
  }
  // Every block's prompt row gets a gradient (each block cross-attends to its own row).
  Tensor gp = vit.parameter("cvpt.prompts").grad();
  for (int64_t i = 0; i < c.depth; ++i) {
    double n = 0;
    for (double e : narrow(gp, 0, i, 1).to_vector<float>()) n += e * e;
    EXPECT_GT(n, 0.0) << "block " << i;
  }
}

// ---------------------------------------------------------------- bad options

TEST(Methods, BadOptionsNameTheOption) {
  nn::VisionTransformer vit(tiny(), 1);
  Generator g(2);
  MethodOptions o;
  o.prompts = 0;
  EXPECT_THROW_MSG(apply_method(vit, "vpt-deep", o, 3, g), MethodError, "--prompts", "got 0");
  EXPECT_THROW_MSG(apply_method(vit, "cvpt", o, 3, g), MethodError, "--prompts");
  o = MethodOptions{};
  o.prompt_dropout = 1.5;
  EXPECT_THROW_MSG(apply_method(vit, "vpt-shallow", o, 3, g), MethodError, "--prompt-dropout");
  o = MethodOptions{};
  o.rank = 0;
  EXPECT_THROW_MSG(apply_method(vit, "lora", o, 3, g), MethodError, "--rank", "got 0");
  o = MethodOptions{};
  o.bottleneck = -1;
  EXPECT_THROW_MSG(apply_method(vit, "adaptformer", o, 3, g), MethodError, "--bottleneck", "got -1");
  o = MethodOptions{};
  o.targets = "attn.q";
  EXPECT_THROW_MSG(apply_method(vit, "lora", o, 3, g), MethodError, "--targets", "'attn.q'");
  EXPECT_THROW_MSG(apply_method(vit, "prefix-tuning", MethodOptions{}, 3, g), MethodError, "--method", "prefix-tuning",
                   "vpt-deep");
  // Options a method does not read are not checked for it.
  o = MethodOptions{};
  o.rank = 0;
  o.prompts = 0;
  EXPECT_NO_THROW(validate_method_options("ssf", o));
  // A failed apply leaves the model untouched (targets are resolved first).
  EXPECT_EQ(vit.num_parameters(true), vit.num_parameters());
}

TEST(Methods, OpenaiLayoutBitfitIncludesInProjBias) {
  nn::VisionTransformer vit(testing::openai_layout(tiny()), 1);
  Generator g(2);
  apply_method(vit, "bitfit", small_opts(), 3, g);
  auto t = trainable_set(vit);
  EXPECT_TRUE(t.count("transformer.resblocks.0.attn.in_proj_bias"));
  EXPECT_TRUE(t.count("transformer.resblocks.1.attn.out_proj.bias"));
  EXPECT_TRUE(t.count("ln_pre.bias"));
  EXPECT_FALSE(t.count("transformer.resblocks.0.attn.in_proj_weight"));
}

}  // namespace
}  // namespace peft
