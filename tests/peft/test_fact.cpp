// `fact` (methods.md "FacT-TT", FacT-TT of JieShibo/PETL-ViT fact_tt.py): parity with the PyTorch
// reference (tools/reference/peft_reference_dora_ia3_fact.py), the official names and their
// registration order, the ViT-B/16 counts, the scale's default, init (V = 0: starts at the base
// model), the tensorised MLP paths (hidden unit c*D + d), dropout in training only, float64
// gradcheck and the freeze mask, merge, and the refusals (openai layout, F not a multiple of D).
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
#include "peft/methods/adapted.h"
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

MethodOptions opts(int64_t rank, double alpha) {
  MethodOptions o;
  o.rank = rank;
  o.alpha = alpha;
  return o;
}

double max_abs(const Tensor& t) {
  double mx = 0;
  for (double e : t.to_vector<double>()) mx = std::max(mx, std::abs(e));
  return mx;
}

// ---------------------------------------------------------------- parity

// r = 2, s = 0.7; every core, U and V non-zero.
TEST(FactMethod, MatchesTheReference) { expect_matches_reference("fact"); }

// ---------------------------------------------------------------- names, order, counts

TEST(FactMethod, TrainableTensorsAreTheOfficialNamesInRegistrationOrder) {
  const auto c = tiny(3);
  const int64_t D = c.dim, r = 3, m = c.mlp_hidden() / D;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "fact", opts(r, 1.0), 4, g);
  std::set<std::string> want = {"head.weight", "head.bias", "FacTu.weight", "FacTv.weight"};
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = fmt::format("blocks.{}.", i);
    for (const char* s : {"q", "k", "v", "proj"}) {
      want.insert(b + "attn." + s + "_FacTs.weight");
      EXPECT_EQ(vit.parameter(b + "attn." + s + "_FacTs.weight").sizes(), (Shape{r, r})) << s;
    }
    want.insert({b + "mlp.fc1_FacTs.weight", b + "mlp.fc2_FacTs.weight"});
    EXPECT_EQ(vit.parameter(b + "mlp.fc1_FacTs.weight").sizes(), (Shape{m * r, r}));
    EXPECT_EQ(vit.parameter(b + "mlp.fc2_FacTs.weight").sizes(), (Shape{r, m * r}));
  }
  EXPECT_EQ(vit.parameter("FacTu.weight").sizes(), (Shape{r, D}));
  EXPECT_EQ(vit.parameter("FacTv.weight").sizes(), (Shape{D, r}));
  EXPECT_EQ(trainable_set(vit), want);
  // fact_tt.py's order: the cores after each module's base layers (attn: qkv, proj, then q, k, v,
  // proj cores; mlp: fc1, fc2, then fc1, fc2 cores), and FacTu, FacTv after the head.
  std::vector<std::string> order = trainable_names(vit);
  std::vector<std::string> expect;
  for (int i = 0; i < c.depth; ++i)
    for (const char* s : {"attn.q_FacTs", "attn.k_FacTs", "attn.v_FacTs", "attn.proj_FacTs", "mlp.fc1_FacTs", "mlp.fc2_FacTs"})
      expect.push_back(fmt::format("blocks.{}.{}.weight", i, s));
  expect.insert(expect.end(), {"head.weight", "head.bias", "FacTu.weight", "FacTv.weight"});
  EXPECT_EQ(order, expect);
  std::vector<std::string> attn;
  for (auto& [n, _] : vit.named_parameters())
    if (n.rfind("blocks.0.attn.", 0) == 0) attn.push_back(n);
  EXPECT_EQ(attn.front(), "blocks.0.attn.qkv.weight");
  EXPECT_EQ(attn.back(), "blocks.0.attn.proj_FacTs.weight");
}

// methods.md "FacT-TT": 2*D*r + L*(4*r^2 + 2*m*r^2): 21,504 for ViT-B/16 at r = 8, 61,440 at r = 16.
TEST(FactMethod, ViTBaseCounts) {
  for (auto [rank, want] : {std::pair<int64_t, int64_t>{8, 21504}, {16, 61440}}) {
    MethodOptions o = testing::command_line_defaults();
    o.rank = rank;
    o.given = {"rank"};
    EXPECT_EQ(testing::vit_base_trainable("fact", o), want) << "rank " << rank;
  }
}

// --alpha is the scale s, default 1 (not LoRA's default r); -1 (unset in code) means 1 too.
TEST(FactMethod, ScaleDefaultsToOne) {
  MethodOptions o;
  o.use_method_defaults = true;
  EXPECT_EQ(resolved_options("fact", o).alpha, 1.0);
  EXPECT_EQ(method_metadata("fact", o).at("alpha"), "1");
  o.alpha = 0.25;
  o.given = {"alpha"};
  EXPECT_EQ(resolved_options("fact", o).alpha, 0.25);
  Generator gi(5);
  Tensor img = randn({2, 3, 8, 8}, gi);
  auto logits = [&](double alpha) {
    nn::VisionTransformer vit(tiny(), 1);
    Generator g(2);
    apply_method(vit, "fact", opts(2, alpha), 3, g);
    randomize_trainable(vit, 4);
    vit.eval();
    return vit.forward(img).detach();
  };
  const Tensor unset = logits(-1), one = logits(1.0), two = logits(2.0);
  EXPECT_EQ(max_abs_diff(unset, one), 0.0);
  EXPECT_GT(max_abs_diff(two, one), 1e-4);
}

// V = 0 (starts at the base model); U and the cores U(+-1/sqrt(fan_in)).
TEST(FactMethod, InitFollowsTheOfficialCodeAndStartsAtTheBaseModel) {
  nn::ViTConfig c = tiny(3);
  c.dim = 32;
  c.heads = 4;
  const int64_t D = c.dim, r = 8, m = c.mlp_hidden() / D;
  nn::VisionTransformer vit(c, 1);
  Generator g2(2);
  apply_method(vit, "fact", opts(r, 10.0), 3, g2);
  vit.eval();
  EXPECT_EQ(testing::max_diff_to_plain_logits(vit), 0.0);
  EXPECT_EQ(max_abs(vit.parameter("FacTv.weight")), 0.0);
  auto bound_ok = [&](const std::string& n, double fan_in) {
    const double mx = max_abs(vit.parameter(n)), b = 1.0 / std::sqrt(fan_in);
    EXPECT_LE(mx, b) << n;
    EXPECT_GT(mx, 0.7 * b) << n;  // 64+ draws: the bound is nearly reached
  };
  bound_ok("FacTu.weight", static_cast<double>(D));
  double core_mx = 0;  // the q, k, v, proj cores together (64 draws each is few)
  for (int i = 0; i < c.depth; ++i) {
    for (const char* s : {"q", "k", "v", "proj"})
      core_mx = std::max(core_mx, max_abs(vit.parameter(fmt::format("blocks.{}.attn.{}_FacTs.weight", i, s))));
    bound_ok(fmt::format("blocks.{}.mlp.fc1_FacTs.weight", i), static_cast<double>(r));
    bound_ok(fmt::format("blocks.{}.mlp.fc2_FacTs.weight", i), static_cast<double>(m * r));
  }
  EXPECT_LE(core_mx, 1.0 / std::sqrt(static_cast<double>(r)));
  EXPECT_GT(core_mx, 0.9 / std::sqrt(static_cast<double>(r)));
}

// ---------------------------------------------------------------- the tensorised MLP paths

// fc1: hidden unit c*D + d gains s * V[d] . (S1 U h)[c*r:(c+1)*r]; fc2 gains s * V S2 Q(g) with
// Q(g)[c*r + j] = U[j] . g[c*D:(c+1)*D] (methods.md "FacT-TT"), checked chunk by chunk.
TEST(FactMethod, MlpPathsUseHiddenUnitOrderCTimesDPlusD) {
  const auto c = tiny();
  const int64_t D = c.dim, r = 2, m = c.mlp_hidden() / D;
  const double s = 0.6;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "fact", opts(r, s), 3, g);
  vit.to(DType::f64);
  vit.eval();
  randomize_trainable(vit, 4);
  NoGradGuard ng;
  Tensor U = vit.parameter("FacTu.weight"), V = vit.parameter("FacTv.weight");
  Tensor S1 = vit.parameter("blocks.1.mlp.fc1_FacTs.weight"), S2 = vit.parameter("blocks.1.mlp.fc2_FacTs.weight");
  nn::Linear& fc1 = *vit.block_list[1]->mlp->fc1;
  nn::Linear& fc2 = *vit.block_list[1]->mlp->fc2;
  Tensor h = randn64({3, D}, 7, false);
  Tensor d1 = sub(fc1.forward(h), linear(h, fc1.weight, fc1.bias));  // [3, m*D]
  for (int64_t ch = 0; ch < m; ++ch) {
    Tensor want = mul(linear(linear(linear(h, U), narrow(S1, 0, ch * r, r)), V), s);  // [3, D]
    EXPECT_LT(max_abs_diff(narrow(d1, 1, ch * D, D), want), 1e-12) << "fc1 chunk " << ch;
  }
  Tensor gh = randn64({3, m * D}, 8, false);
  Tensor d2 = sub(fc2.forward(gh), linear(gh, fc2.weight, fc2.bias));  // [3, D]
  Tensor want2 = zeros({3, r}, DType::f64);  // S2 Q(g): [3, r]
  for (int64_t ch = 0; ch < m; ++ch)  // S2 Q(g) = sum_c S2[:, c*r:(c+1)*r] U g_c
    want2 = add(want2, linear(linear(narrow(gh, 1, ch * D, D), U), narrow(S2, 1, ch * r, r)));
  EXPECT_LT(max_abs_diff(d2, mul(linear(want2, V), s)), 1e-12);
  // nn::Mlp's fused entry point: the path sees gelu(h).
  EXPECT_LT(max_abs_diff(fc2.forward_after_gelu(gh), fc2.forward(gelu(gh))), 1e-12);
}

// Dropout 0.1 on each core's output in training only; the head cache is told.
TEST(FactMethod, DropoutOnlyInTraining) {
  nn::VisionTransformer vit(tiny(), 1);
  Generator g(2);
  apply_method(vit, "fact", opts(4, 1.0), 3, g);
  randomize_trainable(vit, 4);
  Generator gi(5);
  Tensor img = randn({2, 3, 8, 8}, gi);
  bool noisy = false;
  for (methods::Adapted* a : methods::adapted_modules(vit))
    if (!a->training_noise().empty()) noisy = true;
  EXPECT_TRUE(noisy);
  vit.train();
  EXPECT_GT(max_abs_diff(vit.forward(img), vit.forward(img)), 1e-6);
  vit.eval();
  EXPECT_EQ(max_abs_diff(vit.forward(img), vit.forward(img)), 0.0);
}

// ---------------------------------------------------------------- gradients

TEST(FactMethod, Float64Gradcheck) {
  for (const std::string pool : {"cls", "mean"}) {
    nn::ViTConfig c = tiny();
    c.pool = pool;
    nn::VisionTransformer vit(c, 3);
    Generator g(4);
    apply_method(vit, "fact", opts(2, 0.8), 3, g);
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

TEST(FactMethod, FrozenTensorsGetNoGradientAndNoOptimizerState) {
  nn::VisionTransformer vit(tiny(), 3);
  Generator g(4);
  apply_method(vit, "fact", opts(2, 1.0), 3, g);
  testing::expect_optimizer_state_for_trainable_only(vit, testing::expect_grads_only_on_trainable(vit));
}

// ---------------------------------------------------------------- merge

TEST(FactMethod, MergeEqualsUnmergedAndGivesAPlainViT) {
  nn::ViTConfig c = tiny();
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "fact", opts(3, 1.7), 4, g);
  randomize_trainable(vit, 6);
  vit.eval();
  Generator gi(5);
  Tensor img = randn({3, 3, 8, 8}, gi);
  const Tensor before = vit.forward(img).detach();
  merge_adapters(vit);
  EXPECT_LE(max_abs_diff(vit.forward(img), before), 1e-5);
  nn::NamedTensors sd = plain_state_dict(vit);
  for (auto& [n, _] : sd) EXPECT_EQ(n.find("FacT"), std::string::npos) << n;
  c.num_classes = 4;
  nn::VisionTransformer plain(c, 9);
  plain.load_state_dict(std::map<std::string, Tensor>(sd.begin(), sd.end()), /*strict=*/true);
  plain.eval();
  EXPECT_LE(max_abs_diff(plain.forward(img), before), 1e-5);
  nn::VisionTransformer base(tiny(), 1);  // every site changed, biases did not
  for (const char* n : {"blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight", "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.weight"})
    EXPECT_GT(max_abs_diff(plain.parameter(n), base.parameter(n)), 1e-3) << n;
  EXPECT_EQ(max_abs_diff(plain.parameter("blocks.1.mlp.fc1.bias"), base.parameter("blocks.1.mlp.fc1.bias")), 0.0);
}

// ---------------------------------------------------------------- refusals

TEST(FactMethod, OpenaiLayoutIsRefusedInOneLine) {
  testing::expect_openai_layout_refused("fact", tiny());
}

// F must be a multiple of D (the official code hard-codes 4); bad ranks are refused as ever.
TEST(FactMethod, BadConfigAndOptionsAreRefused) {
  nn::ViTConfig c = tiny();
  c.mlp_ratio = 2.5;  // F = 20, D = 8
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  EXPECT_THROW_MSG(apply_method(vit, "fact", MethodOptions{}, 3, g), MethodError, "fact", "F = 20", "D = 8");
  EXPECT_EQ(vit.num_parameters(true), vit.num_parameters());  // refused before anything changed
  nn::VisionTransformer ok(tiny(), 1);
  EXPECT_THROW_MSG(apply_method(ok, "fact", opts(0, 1.0), 3, g), MethodError, "--rank", "got 0");
  EXPECT_THROW_MSG(apply_method(ok, "fact", opts(2, INFINITY), 3, g), MethodError, "--alpha");
}

}  // namespace
}  // namespace peft
