// `dora` (methods.md "DoRA", HF peft DoRA): parity with the PyTorch reference
// (tools/reference/peft_reference_dora_ia3_fact.py), names, registration order and the ViT-B/16
// count, init (starts at the base model), the detached norm (gradients equal the composed
// formula with n a constant; float64 gradcheck with the norm held), the freeze mask, merge, and
// the refusals (openai layout, bad options).
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

MethodOptions opts(int64_t rank, double alpha, const std::string& targets) {
  MethodOptions o;
  o.rank = rank;
  o.alpha = alpha;
  o.targets = targets;
  return o;
}

const std::string kAll = "attn.qkv,attn.proj,mlp.fc1,mlp.fc2";

// Row norms of a [out, in] weight, float64 values.
std::vector<double> row_norms(const Tensor& w) {
  std::vector<double> v = w.to_vector<double>(), out;
  const int64_t rows = w.size(0), cols = w.size(1);
  for (int64_t i = 0; i < rows; ++i) {
    double s = 0;
    for (int64_t j = 0; j < cols; ++j) s += v[i * cols + j] * v[i * cols + j];
    out.push_back(std::sqrt(s));
  }
  return out;
}

// ---------------------------------------------------------------- parity

// All four linears of every block: qkv (fused rows each with their own norm), proj, fc1 and fc2
// (whose input comes through the fused GELU path).
TEST(DoraMethod, MatchesTheReference) { expect_matches_reference("dora"); }

// ---------------------------------------------------------------- names, counts, init

TEST(DoraMethod, TrainableTensorsAreTheInteropNamesInHfOrder) {
  const auto c = tiny();
  const int64_t D = c.dim, F = c.mlp_hidden(), r = 3;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "dora", opts(r, -1, "attn.qkv,mlp.fc2"), 4, g);
  std::set<std::string> want = {"head.weight", "head.bias"};
  for (int i = 0; i < c.depth; ++i) {
    for (auto [t, in, out] : {std::tuple{"attn.qkv", D, 3 * D}, std::tuple{"mlp.fc2", F, D}}) {
      const std::string n = fmt::format("blocks.{}.{}.", i, t);
      want.insert({n + "lora_A", n + "lora_B", n + "lora_magnitude_vector"});
      EXPECT_EQ(vit.parameter(n + "lora_A").sizes(), (Shape{r, in}));
      EXPECT_EQ(vit.parameter(n + "lora_B").sizes(), (Shape{out, r}));
      EXPECT_EQ(vit.parameter(n + "lora_magnitude_vector").sizes(), (Shape{out}));
    }
  }
  EXPECT_EQ(trainable_set(vit), want);
  // Registration order: the base tensors, then A, B, magnitude (HF's LoraLayer order).
  std::vector<std::string> names;
  for (auto& [n, _] : vit.named_parameters())
    if (n.rfind("blocks.0.attn.qkv.", 0) == 0) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
                                             "blocks.0.attn.qkv.lora_A", "blocks.0.attn.qkv.lora_B",
                                             "blocks.0.attn.qkv.lora_magnitude_vector"}));
  EXPECT_FALSE(vit.parameter("blocks.0.attn.qkv.weight").requires_grad());
}

// methods.md "DoRA": ViT-B/16, r = 8 on qkv: 294,912 + 27,648 = 322,560 + head.
TEST(DoraMethod, ViTBaseCount) {
  EXPECT_EQ(testing::vit_base_trainable("dora", testing::command_line_defaults()), 322560);  // rank 8, targets attn.qkv
}

// A ~ U(+-1/sqrt(in)), B = 0, m = ||W||_row: the logits are the plain model's.
TEST(DoraMethod, InitStartsAtTheBaseModel) {
  nn::VisionTransformer vit(tiny(), 1);
  Generator g2(2);
  apply_method(vit, "dora", opts(2, 3.0, kAll), 3, g2);
  vit.eval();
  EXPECT_LE(testing::max_diff_to_plain_logits(vit), 1e-6);
  for (const char* t : {"attn.qkv", "mlp.fc2"}) {
    const std::string n = fmt::format("blocks.1.{}.", t);
    double mx = 0;
    for (float e : vit.parameter(n + "lora_A").to_vector<float>()) mx = std::max(mx, std::abs(static_cast<double>(e)));
    const double in = static_cast<double>(vit.parameter(n + "lora_A").size(1));
    EXPECT_LE(mx, 1.0 / std::sqrt(in)) << t;
    EXPECT_GT(mx, 0.5 / std::sqrt(in)) << t;  // 16+ draws: the bound is nearly reached
    for (float e : vit.parameter(n + "lora_B").to_vector<float>()) EXPECT_EQ(e, 0.0f) << t;
    auto m = vit.parameter(n + "lora_magnitude_vector").to_vector<double>();
    auto want = row_norms(vit.parameter(n + "weight"));
    ASSERT_EQ(m.size(), want.size());
    for (size_t i = 0; i < m.size(); ++i) EXPECT_NEAR(m[i], want[i], 1e-6 * want[i]) << t << " row " << i;
  }
}

// ---------------------------------------------------------------- gradients

// The wrapped linear (float64) against the composed formula with n computed beforehand as a
// constant: same output, and the same gradients for x, A, B and m (and none for W, b).
TEST(DoraMethod, NormIsAConstantInBackward) {
  nn::VisionTransformer vit(tiny(), 3);
  Generator g(4);
  apply_method(vit, "dora", opts(2, 3.0, "mlp.fc1"), 3, g);
  vit.to(DType::f64);
  randomize_trainable(vit, 9);
  nn::Linear* lin = vit.block_list[0]->mlp->fc1.get();
  const std::string n = "blocks.0.mlp.fc1.";
  Tensor W = vit.parameter(n + "weight"), b = vit.parameter(n + "bias");
  Tensor A = vit.parameter(n + "lora_A"), B = vit.parameter(n + "lora_B"), m = vit.parameter(n + "lora_magnitude_vector");
  const double s = 3.0 / 2.0;
  // Non-contiguous input: a transposed view [2, 3, D].
  Tensor x = transpose(randn64({2, W.size(1), 3}, 7, false), 1, 2);
  x.requires_grad_(true);
  Tensor probe = randn64({2, 3, W.size(0)}, 8, false);
  backward(sum(mul(lin->forward(x), probe)));
  Tensor gx = x.grad().clone(), gA = A.grad().clone(), gB = B.grad().clone(), gm = m.grad().clone();
  EXPECT_FALSE(W.grad().defined());
  EXPECT_FALSE(b.grad().defined());

  Tensor n0;
  {
    NoGradGuard ng;
    n0 = sqrt(sum(mul(add(W, mul(matmul(B, A), s)), add(W, mul(matmul(B, A), s))), {1}));
  }
  Tensor x2 = x.detach().clone().requires_grad_(true), A2 = A.detach().clone().requires_grad_(true),
         B2 = B.detach().clone().requires_grad_(true), m2 = m.detach().clone().requires_grad_(true);
  Tensor y2 = add(mul(add(linear(x2, W), mul(linear(linear(x2, A2), B2), s)), div(m2, n0)), b);
  EXPECT_LT(max_abs_diff(lin->forward(x), y2), 1e-12);
  backward(sum(mul(y2, probe)));
  EXPECT_LT(max_abs_diff(gx, x2.grad()), 1e-12);
  EXPECT_LT(max_abs_diff(gA, A2.grad()), 1e-12);
  EXPECT_LT(max_abs_diff(gB, B2.grad()), 1e-12);
  EXPECT_LT(max_abs_diff(gm, m2.grad()), 1e-12);
  // The detach matters: the full derivative of B differs (central difference of one element).
  Tensor Bd = B.detach();
  auto f = [&] { NoGradGuard ng; return sum(mul(lin->forward(x.detach()), probe)).item(); };
  const double h = 1e-6, v0 = Bd.to_vector<double>()[0];
  Tensor e0 = narrow(reshape(Bd, {-1}), 0, 0, 1);
  e0.fill_(v0 + h);
  const double up = f();
  e0.fill_(v0 - h);
  const double down = f();
  e0.fill_(v0);
  EXPECT_GT(std::abs((up - down) / (2 * h) - gB.to_vector<double>()[0]), 1e-4);
}

// float64 gradcheck of the whole model with the norm held (the gradient DoRA defines), every
// tensor passed: frozen ones must get no gradient. All four linears of both blocks.
TEST(DoraMethod, Float64GradcheckWithTheNormHeld) {
  nn::VisionTransformer vit(tiny(), 3);
  Generator g(4);
  apply_method(vit, "dora", opts(2, 3.0, kAll), 3, g);
  vit.to(DType::f64);
  vit.eval();
  randomize_trainable(vit, 9);
  for (methods::Adapted* a : methods::adapted_modules(vit)) a->hold_detached(true);
  std::vector<Tensor> inputs{randn64({2, 3, 8, 8}, 11, false)};
  for (auto& [_, p] : vit.named_parameters()) inputs.push_back(p);
  auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
  auto r = gradcheck(fn, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(DoraMethod, FrozenTensorsGetNoGradientAndNoOptimizerState) {
  nn::VisionTransformer vit(tiny(), 3);
  Generator g(4);
  apply_method(vit, "dora", opts(2, -1, kAll), 3, g);
  testing::expect_optimizer_state_for_trainable_only(vit, testing::expect_grads_only_on_trainable(vit));
}

// ---------------------------------------------------------------- merge

TEST(DoraMethod, MergeEqualsUnmergedAndGivesAPlainViT) {
  for (const std::string pool : {"cls", "mean"}) {
    SCOPED_TRACE(pool);
    nn::ViTConfig c = tiny();
    c.pool = pool;
    nn::VisionTransformer vit(c, 1);
    Generator g(2);
    apply_method(vit, "dora", opts(3, 5.0, kAll), 4, g);
    randomize_trainable(vit, 6);
    vit.eval();
    Generator gi(5);
    Tensor img = randn({3, 3, 8, 8}, gi);
    const Tensor before = vit.forward(img).detach();
    merge_adapters(vit);
    EXPECT_LE(max_abs_diff(vit.forward(img), before), 1e-5);
    // The merged wrapper computes the base function: B = 0.
    for (float e : vit.parameter("blocks.1.mlp.fc2.lora_B").to_vector<float>()) EXPECT_EQ(e, 0.0f);
    nn::NamedTensors sd = plain_state_dict(vit);
    for (auto& [n, _] : sd) EXPECT_EQ(n.find("lora_"), std::string::npos) << n;
    c.num_classes = 4;
    nn::VisionTransformer plain(c, 9);
    plain.load_state_dict(std::map<std::string, Tensor>(sd.begin(), sd.end()), /*strict=*/true);
    plain.eval();
    EXPECT_LE(max_abs_diff(plain.forward(img), before), 1e-5);
    // Not vacuous: the weights changed, the biases did not (methods.md "DoRA": bias not rescaled).
    nn::VisionTransformer base(tiny(), 1);
    EXPECT_GT(max_abs_diff(plain.parameter("blocks.0.attn.qkv.weight"), base.parameter("blocks.0.attn.qkv.weight")), 1e-3);
    EXPECT_EQ(max_abs_diff(plain.parameter("blocks.0.attn.qkv.bias"), base.parameter("blocks.0.attn.qkv.bias")), 0.0);
  }
}

// ---------------------------------------------------------------- refusals

TEST(DoraMethod, OpenaiLayoutIsRefusedInOneLine) {
  testing::expect_openai_layout_refused("dora", tiny());
}

TEST(DoraMethod, BadOptionsNameTheOption) {
  nn::VisionTransformer vit(tiny(), 1);
  Generator g(2);
  EXPECT_THROW_MSG(apply_method(vit, "dora", opts(0, -1, "attn.qkv"), 3, g), MethodError, "--rank", "got 0");
  EXPECT_THROW_MSG(apply_method(vit, "dora", opts(2, -1, "attn.q"), 3, g), MethodError, "--targets", "'attn.q'");
  EXPECT_THROW_MSG(apply_method(vit, "dora", opts(2, NAN, "attn.qkv"), 3, g), MethodError, "--alpha");
}

}  // namespace
}  // namespace peft
