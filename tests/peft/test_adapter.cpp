// `adapter` (methods.md "Adapter", V-PETL Bench's Adapter): parity with the PyTorch reference
// (tools/reference/peft_reference_adapter_prefix_lntune.py), trainable names and the ViT-B/16
// count, the effective official init, float64 gradcheck and the freeze mask, layer scale before
// the adapter, the default bottleneck, refusals (openai layout, bad bottleneck, merge), and one
// `peft check` run through the built program.
#include <fmt/format.h>

#include <cmath>
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

using testing::randomize_trainable;
using testing::trainable_set;
using testing::expect_matches_reference;
using testing::fixture_request;
using testing::randn64;

const std::string kDir = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/peft/";



nn::ViTConfig tiny(int64_t depth = 2) {
  nn::ViTConfig c;
  c.image_size = 8; c.patch_size = 4; c.dim = 8; c.depth = depth; c.heads = 2; c.num_classes = 3;
  return c;
}

MethodOptions opts(int64_t bottleneck) {
  MethodOptions o;
  o.bottleneck = bottleneck;
  return o;
}

// ---------------------------------------------------------------- parity

TEST(AdapterMethod, MatchesTheReference) { expect_matches_reference("adapter"); }
// The model's act is quick_gelu; the adapter's GELU stays erf (methods.md "Adapter").
TEST(AdapterMethod, MatchesTheReferenceWithQuickGeluModel) { expect_matches_reference("adapter-quick"); }

// ---------------------------------------------------------------- names, counts, init

TEST(AdapterMethod, TrainableTensorsAreTheInteropNames) {
  const auto c = tiny(3);
  const int64_t D = c.dim, b = 5;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "adapter", opts(b), 4, g);
  std::set<std::string> want = {"head.weight", "head.bias"};
  for (int i = 0; i < c.depth; ++i) {
    const std::string a = fmt::format("blocks.{}.adapter_module.", i);
    want.insert({a + "adapter_downsample.weight", a + "adapter_downsample.bias", a + "adapter_upsample.weight",
                 a + "adapter_upsample.bias"});
    EXPECT_EQ(vit.parameter(a + "adapter_downsample.weight").sizes(), (Shape{b, D}));
    EXPECT_EQ(vit.parameter(a + "adapter_downsample.bias").sizes(), (Shape{b}));
    EXPECT_EQ(vit.parameter(a + "adapter_upsample.weight").sizes(), (Shape{D, b}));
    EXPECT_EQ(vit.parameter(a + "adapter_upsample.bias").sizes(), (Shape{D}));
  }
  EXPECT_EQ(trainable_set(vit), want);
  // The base tensors keep their names (blocks.0.mlp.fc1.weight is still there, frozen).
  EXPECT_FALSE(vit.parameter("blocks.0.mlp.fc1.weight").requires_grad());
}

// methods.md "Adapter": L*(2*D*b + b + D) = 156,768 for ViT-B/16 at the default b = 8. The count depends
// on D and L only: ViT-B's, with a small MLP hidden size so that the model builds quickly.
TEST(AdapterMethod, ViTBaseCountAtTheDefaultBottleneck) {
  // as on the command line with no --bottleneck
  EXPECT_EQ(testing::vit_base_trainable("adapter", testing::command_line_defaults(), /*small_mlp=*/true), 156768);
}

TEST(AdapterMethod, DefaultBottleneckIsEightUnlessGiven) {
  MethodOptions o;
  o.use_method_defaults = true;
  EXPECT_EQ(resolved_options("adapter", o).bottleneck, 8);
  EXPECT_EQ(resolved_options("adaptformer", o).bottleneck, 64);  // AdaptFormer keeps its own
  o.bottleneck = 16;
  o.given = {"bottleneck"};
  EXPECT_EQ(resolved_options("adapter", o).bottleneck, 16);
  EXPECT_EQ(method_metadata("adapter", o).at("bottleneck"), "16");
}

// The effective official init: trunc-normal weights (std 0.02, cut at +-2 absolute, i.e. never
// reached at this std) and zero biases.
TEST(AdapterMethod, InitIsTimmTruncNormalWeightsAndZeroBiases) {
  nn::ViTConfig c = tiny(4);
  c.dim = 64;
  c.heads = 4;
  nn::VisionTransformer vit(c, 1);
  Generator g(2);
  apply_method(vit, "adapter", opts(32), 3, g);
  double s1 = 0, s2 = 0, mx = 0;
  int64_t n = 0;
  for (auto& [name, p] : vit.named_parameters()) {
    if (name.find("adapter_module") == std::string::npos) continue;
    auto v = p.to_vector<float>();
    if (name.ends_with(".bias")) {
      for (float e : v) EXPECT_EQ(e, 0.0f) << name;
      continue;
    }
    for (float e : v) {
      s1 += e;
      s2 += static_cast<double>(e) * e;
      mx = std::max(mx, std::abs(static_cast<double>(e)));
      ++n;
    }
  }
  ASSERT_EQ(n, 4 * 2 * 64 * 32);
  EXPECT_NEAR(s1 / n, 0.0, 0.001);
  EXPECT_NEAR(std::sqrt(s2 / n), 0.02, 0.001);
  EXPECT_LT(mx, 0.02 * 6);  // a normal at std 0.02: no value near the +-2 cut, none beyond 6 sigma
  EXPECT_GT(mx, 0.02 * 2);  // and really normal, not a narrow uniform
}

// ---------------------------------------------------------------- gradients

// float64 gradcheck of every tensor (trainable ones checked, frozen ones must get no gradient),
// in eval mode, with layer scale on and off.
TEST(AdapterMethod, Float64Gradcheck) {
  for (bool layer_scale : {false, true}) {
    nn::ViTConfig c = tiny();
    c.layer_scale = layer_scale;
    nn::VisionTransformer vit(c, 3);
    Generator g(4);
    apply_method(vit, "adapter", opts(3), 3, g);
    vit.to(DType::f64);
    vit.eval();
    randomize_trainable(vit, 9);
    if (layer_scale)  // ls gamma around 1 so that the MLP branch matters
      for (auto& [n, p] : vit.named_parameters())
        if (n.find("gamma") != std::string::npos) {
          NoGradGuard ng;
          Tensor(p).fill_(0.7);
        }
    std::vector<Tensor> inputs{randn64({2, 3, 8, 8}, 11, false)};
    for (auto& [_, p] : vit.named_parameters()) inputs.push_back(p);
    auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
    auto r = gradcheck(fn, inputs);
    EXPECT_TRUE(r.ok) << "layer_scale " << layer_scale << ": " << r.message;
  }
}

TEST(AdapterMethod, FrozenBaseTensorsGetNoGradient) {
  nn::VisionTransformer vit(tiny(), 3);
  Generator g(4);
  apply_method(vit, "adapter", opts(3), 3, g);
  testing::expect_grads_only_on_trainable(vit);
  for (auto& [n, p] : vit.named_parameters())
    if (p.requires_grad()) {
      EXPECT_GT(max_abs_diff(p.grad(), zeros_like(p.grad())), 0.0) << n;
    }
}

// V-PETL's Block: x + drop_path(adapter(ls2(mlp(norm2(x))))): layer scale acts on the MLP output
// before the adapter sees it. Checked against the block's own pieces, with gamma far from 1 so
// that the other order (adapter before ls2) would differ.
TEST(AdapterMethod, LayerScaleActsBeforeTheAdapter) {
  nn::ViTConfig c = tiny(1);
  c.layer_scale = true;
  nn::VisionTransformer vit(c, 3);
  Generator g(4);
  apply_method(vit, "adapter", opts(3), 3, g);
  vit.eval();
  randomize_trainable(vit, 9, /*all=*/true);
  nn::Block& b = *vit.block_list[0];
  NoGradGuard ng;
  Generator gi(6);
  Tensor x = randn({2, 5, c.dim}, gi);
  Tensor x1 = add(x, b.attn_branch(x));
  Tensor m = b.ls2->forward(b.mlp->forward(b.norm2->forward(x1)));
  Tensor down = linear(m, vit.parameter("blocks.0.adapter_module.adapter_downsample.weight"),
                       vit.parameter("blocks.0.adapter_module.adapter_downsample.bias"));
  Tensor up = linear(gelu(down), vit.parameter("blocks.0.adapter_module.adapter_upsample.weight"),
                     vit.parameter("blocks.0.adapter_module.adapter_upsample.bias"));
  Tensor want = add(x1, add(m, up));
  EXPECT_LT(max_abs_diff(b.forward(x), want), 1e-5);
  // The control: a plain block (no adapter) differs, so the adapter really acts.
  EXPECT_GT(max_abs_diff(b.nn::Block::forward(x), want), 1e-4);
}

// ---------------------------------------------------------------- refusals

TEST(AdapterMethod, OpenaiLayoutIsRefusedInOneLine) {
  testing::expect_openai_layout_refused("adapter", tiny());
}

TEST(AdapterMethod, BadBottleneckAndMergeAreRefused) {
  nn::VisionTransformer vit(tiny(), 1);
  Generator g(2);
  EXPECT_THROW_MSG(apply_method(vit, "adapter", opts(0), 3, g), MethodError, "--bottleneck", "got 0");
  EXPECT_THROW_MSG(apply_method(vit, "adapter", opts(-3), 3, g), MethodError, "--bottleneck", "got -3");
  EXPECT_FALSE(is_mergeable_method("adapter"));  // GELU: no fold
  apply_method(vit, "adapter", opts(2), 3, g);
  EXPECT_THROW_MSG(merge_adapters(vit), ValueError, "adapter");
}

// ---------------------------------------------------------------- the CLI

TEST(AdapterMethod, CheckCommandMatchesTheReference) {
  testing::TempDir tmp("peft_adapter");
  const std::string out = tmp / "result.safetensors";
  testing::CliResult r = testing::run_peft("check --config " + kDir + "config.json --weights " + kDir +
                                               "base.safetensors --method adapter --bottleneck 4 --adapter " + kDir +
                                               "adapter/adapter.safetensors --inputs " + kDir +
                                               "batch.safetensors --out " + out,
                                           "adapter_check");
  ASSERT_EQ(r.status, 0) << r.err;
  auto got = nn::read_tensors(out);
  auto want = nn::read_tensors(kDir + "adapter/expected.safetensors");
  EXPECT_EQ(got.size(), want.size());
  for (auto& [n, t] : want) {
    auto it = got.find(n);
    ASSERT_NE(it, got.end()) << n;
    EXPECT_TRUE(allclose(it->second, t, 1e-3, 1e-4)) << n << ": max abs diff " << max_abs_diff(it->second, t);
  }
  // The openai layout: a usage error in one line naming the method.
  const std::string oa = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/vit/openai/";
  testing::CliResult bad = testing::run_peft("check --config " + oa + "config.json --weights " + oa +
                                                 "weights.safetensors --method adapter --inputs " + oa +
                                                 "batch.safetensors --out " + tmp / "x.safetensors",
                                             "adapter_check_openai");
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find("adapter"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.err.find('\n'), bad.err.size() - 1) << "one line: " << bad.err;
  EXPECT_FALSE(std::filesystem::exists(tmp / "x.safetensors"));
}

}  // namespace
}  // namespace peft
