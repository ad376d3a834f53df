// `lntune` (methods.md "LN-TUNE", V-PETL Bench's LN-TUNE): parity with the PyTorch reference
// (tools/reference/peft_reference_adapter_prefix_lntune.py, pool cls and mean), the trainable
// set ('norm' in the name: norm_pre and fc_norm too when present) and the ViT-B/16 count, the
// pretrained init, float64 gradcheck and the freeze mask, merge (the trained values replace the
// base ones: a plain model), the openai refusal, and `peft merge` + `peft check` through the
// built program.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "autograd/backward.h"
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "core/io/safetensors.h"
#include "peft/merge.h"
#include "peft/method.h"
#include "peft/methods/vision_check.h"
#include "tests/apps/cli_util.h"
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



nn::ViTConfig tiny(int64_t depth = 2, const std::string& pool = "cls") {
  nn::ViTConfig c;
  c.image_size = 8; c.patch_size = 4; c.dim = 8; c.depth = depth; c.heads = 2; c.num_classes = 3; c.pool = pool;
  return c;
}

// ---------------------------------------------------------------- parity

TEST(LntuneMethod, MatchesTheReference) { expect_matches_reference("lntune"); }
TEST(LntuneMethod, MatchesTheReferenceWithMeanPool) { expect_matches_reference("lntune-mean"); }

// ---------------------------------------------------------------- trainable set, count, init

TEST(LntuneMethod, TrainsTheLayerNormsUnderBaseNames) {
  const auto c = tiny(3);
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "lntune", MethodOptions{}, 4, g);
  std::set<std::string> want = {"head.weight", "head.bias", "norm.weight", "norm.bias"};
  for (int i = 0; i < c.depth; ++i)
    for (const char* s : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"})
      want.insert(fmt::format("blocks.{}.{}", i, s));
  EXPECT_EQ(trainable_set(vit), want);
  // No tensor of its own: the model's tensor names are the plain ViT's.
  nn::VisionTransformer plain(c, 1);
  plain.reset_head(4, g);
  std::set<std::string> a, b;
  for (auto& [n, _] : vit.named_parameters()) a.insert(n);
  for (auto& [n, _] : plain.named_parameters()) b.insert(n);
  EXPECT_EQ(a, b);
}

// The official filter is 'norm' in the name: a model with norm_pre and fc_norm trains them too.
TEST(LntuneMethod, NormPreAndFcNormFollowTheNameFilter) {
  nn::ViTConfig c = tiny(1, "mean");
  c.norm_pre = true;
  c.fc_norm = true;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "lntune", MethodOptions{}, 4, g);
  std::set<std::string> want = {"head.weight", "head.bias", "norm_pre.weight", "norm_pre.bias", "fc_norm.weight",
                                "fc_norm.bias"};
  for (const char* s : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}) want.insert(fmt::format("blocks.0.{}", s));
  EXPECT_EQ(trainable_set(vit), want);
}

// methods.md "LN-TUNE": 4*L*D + 2*D = 38,400 for ViT-B/16. The count depends on L and D only: ViT-B's,
// with a small MLP hidden size so that the model builds quickly.
TEST(LntuneMethod, ViTBaseCount) {
  EXPECT_EQ(testing::vit_base_trainable("lntune", MethodOptions{}, /*small_mlp=*/true), 38400);
}

// Init: the pretrained values (attaching changes no backbone tensor).
TEST(LntuneMethod, StartsAtThePretrainedValues) {
  const auto c = tiny();
  nn::VisionTransformer vit(c, 1), base(c, 1);
  randomize_trainable(base, 3, /*all=*/true);  // LayerNorms away from 1 / 0
  auto sd = base.state_dict();
  vit.load_state_dict(std::map<std::string, Tensor>(sd.begin(), sd.end()));
  Generator g(2);
  apply_method(vit, "lntune", MethodOptions{}, 4, g);
  for (auto& [n, t] : base.named_parameters())
    if (n.rfind("head.", 0) != 0) {
      EXPECT_EQ(max_abs_diff(vit.parameter(n), t), 0.0) << n;
    }
}

// ---------------------------------------------------------------- gradients

TEST(LntuneMethod, Float64Gradcheck) {
  for (const std::string pool : {"cls", "mean"}) {
    nn::VisionTransformer vit(tiny(2, pool), 3);
    Generator g(4);
    apply_method(vit, "lntune", MethodOptions{}, 3, g);
    vit.to(DType::f64);
    vit.eval();
    randomize_trainable(vit, 9);
    std::vector<Tensor> inputs{randn64({2, 3, 8, 8}, 11, false)};
    for (auto& [_, p] : vit.named_parameters()) inputs.push_back(p);
    auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
    auto r = gradcheck(fn, inputs);
    EXPECT_TRUE(r.ok) << "pool " << pool << ": " << r.message;
  }
}

TEST(LntuneMethod, FrozenTensorsGetNoGradient) {
  nn::VisionTransformer vit(tiny(), 3);
  Generator g(4);
  apply_method(vit, "lntune", MethodOptions{}, 3, g);
  testing::expect_grads_only_on_trainable(vit);
  for (auto& [n, p] : vit.named_parameters())
    EXPECT_EQ(p.requires_grad(), n.find("norm") != std::string::npos || n.rfind("head.", 0) == 0) << n;
}

// ---------------------------------------------------------------- merge and refusals

// Merging folds nothing: the trained LayerNorm values are base tensors, so the plain state dict
// loads strictly into a plain ViT and gives the same logits.
TEST(LntuneMethod, MergeGivesAPlainModelWithTheSameLogits) {
  const auto c = tiny();
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "lntune", MethodOptions{}, 4, g);
  randomize_trainable(vit, 6);
  vit.eval();
  Generator gi(5);
  Tensor img = randn({3, 3, 8, 8}, gi);
  Tensor before = vit.forward(img).detach();
  EXPECT_TRUE(is_mergeable_method("lntune"));
  merge_adapters(vit);
  nn::NamedTensors sd = plain_state_dict(vit);
  nn::ViTConfig c4 = c;
  c4.num_classes = 4;
  nn::VisionTransformer plain(c4, 9);
  plain.load_state_dict(std::map<std::string, Tensor>(sd.begin(), sd.end()), /*strict=*/true);
  plain.eval();
  EXPECT_EQ(max_abs_diff(plain.forward(img), before), 0.0);
  nn::VisionTransformer base(c, 1);  // the trained values really differ from the base ones
  EXPECT_GT(max_abs_diff(plain.parameter("blocks.1.norm2.weight"), base.parameter("blocks.1.norm2.weight")), 1e-3);
}

TEST(LntuneMethod, OpenaiLayoutIsRefusedInOneLine) {
  testing::expect_openai_layout_refused("lntune", tiny());
}

// ---------------------------------------------------------------- the CLI

// `peft check` matches the reference; `peft merge` writes a plain ViT whose `check --method
// linear` logits and loss are the reference's.
TEST(LntuneMethod, CheckAndMergeCommands) {
  testing::TempDir tmp("peft_lntune");
  auto expect_matches = [&](const std::string& result, bool grads) {
    auto got = nn::read_tensors(result);
    auto want = nn::read_tensors(kDir + "lntune/expected.safetensors");
    if (grads) {
      EXPECT_EQ(got.size(), want.size());
    }
    for (auto& [n, t] : want) {
      if (!grads && n.rfind("grad.", 0) == 0) continue;
      auto it = got.find(n);
      ASSERT_NE(it, got.end()) << n;
      EXPECT_TRUE(allclose(it->second, t, 1e-3, 1e-4)) << n << ": max abs diff " << max_abs_diff(it->second, t);
    }
  };
  const std::string base = "--config " + kDir + "config.json --weights " + kDir + "base.safetensors ";
  testing::CliResult r = testing::run_peft("check " + base + "--method lntune --adapter " + kDir +
                                               "lntune/adapter.safetensors --inputs " + kDir +
                                               "batch.safetensors --out " + tmp / "result.safetensors",
                                           "lntune_check");
  ASSERT_EQ(r.status, 0) << r.err;
  expect_matches(tmp / "result.safetensors", true);

  testing::CliResult m = testing::run_peft("merge " + base + "--adapter " + kDir + "lntune/adapter.safetensors --out " +
                                               tmp / "merged.safetensors",
                                           "lntune_merge");
  ASSERT_EQ(m.status, 0) << m.err;
  // The merged config (merged.json beside it) has the adapter's 4 classes.
  testing::CliResult r2 = testing::run_peft("check --config " + tmp / "merged.json" + " --weights " +
                                                tmp / "merged.safetensors" + " --method linear --inputs " + kDir +
                                                "batch.safetensors --out " + tmp / "result2.safetensors",
                                            "lntune_check_merged");
  ASSERT_EQ(r2.status, 0) << r2.err;
  expect_matches(tmp / "result2.safetensors", false);
}

}  // namespace
}  // namespace peft
