// ViT: logits and every gradient equal the PyTorch reference (timm and OpenAI layouts), a float64
// gradcheck through two whole blocks, names as interop.md, strict loading errors.
#include <gtest/gtest.h>

#include "autograd/ops.h"
#include <fstream>
#include <nlohmann/json.hpp>

#include "nn/checkpoint.h"
#include "nn/pos_embed.h"
#include "core/io/safetensors.h"
#include "nn/vit.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

namespace {
std::string fixture(const std::string& name, const std::string& file) {
  return std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/vit/" + name + "/" + file;
}

void check_parity(const std::string& name) {
  nn::ViTConfig cfg = nn::load_vit_config(fixture(name, "config.json"));
  nn::VisionTransformer vit(cfg, 0);
  vit.eval();
  nn::load_weights(vit, fixture(name, "weights.safetensors"));
  auto batch = nn::read_tensors(fixture(name, "batch.safetensors"));
  auto expected = nn::read_tensors(fixture(name, "expected.safetensors"));
  Tensor logits = vit.forward(batch["images"]);
  Tensor loss = cross_entropy(logits, batch["labels"]);
  EXPECT_LE(max_abs_diff(logits, expected["logits"]), 1e-4) << name << " logits";
  EXPECT_NEAR(loss.item(), expected["loss"].item(), 1e-4);
  backward(loss);
  int checked = 0;
  for (auto& [n, p] : vit.named_parameters()) {
    auto it = expected.find("grad." + n);
    ASSERT_NE(it, expected.end()) << "reference has no gradient for " << n;
    ASSERT_TRUE(p.grad().defined()) << n;
    double scale = std::max(1.0, max_abs_diff(it->second, zeros_like(it->second)));
    EXPECT_LE(max_abs_diff(p.grad(), it->second), 1e-4 * scale) << name << " grad." << n;
    ++checked;
  }
  EXPECT_EQ(checked + 2, static_cast<int>(expected.size()));  // + logits and loss
}
}  // namespace

TEST(ViT, TimmLayoutMatchesPyTorch) { check_parity("timm"); }
TEST(ViT, TimmMeanPoolMatchesPyTorch) { check_parity("timm_mean"); }
TEST(ViT, OpenAIVisualLayoutMatchesPyTorch) { check_parity("openai"); }

TEST(ViT, NamesFollowTheInteropContract) {
  nn::ViTConfig c;
  c.depth = 2;
  nn::VisionTransformer vit(c);
  std::vector<std::string> names;
  for (auto& [n, _] : vit.named_parameters()) names.push_back(n);
  for (const char* want : {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                           "blocks.1.norm1.weight", "blocks.1.attn.qkv.weight", "blocks.1.attn.qkv.bias",
                           "blocks.1.attn.proj.weight", "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.bias",
                           "norm.weight", "head.weight", "head.bias"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  EXPECT_EQ(vit.parameter("blocks.0.attn.qkv.weight").sizes(), (Shape{3 * c.dim, c.dim}));
}

TEST(ViT, Float64GradcheckThroughTwoBlocks) {
  nn::ViTConfig c;
  c.image_size = 4; c.patch_size = 2; c.dim = 8; c.depth = 2; c.heads = 2; c.num_classes = 3;
  nn::VisionTransformer vit(c, 7);
  vit.to(DType::f64);
  vit.eval();
  // Random (non-identity) norms so LayerNorm gradients are exercised away from the init.
  Generator g(3);
  { NoGradGuard ng; for (auto& [n, p] : vit.named_parameters()) Tensor(p).copy_(randn(p.sizes(), g, DType::f64, 0.0, 0.5)); }
  std::vector<Tensor> inputs{randn64({2, 3, 4, 4}, 11)};
  auto params = vit.named_parameters();
  for (auto& [_, p] : params) inputs.push_back(p);
  auto fn = [&](const std::vector<Tensor>& in) { return vit.forward(in[0]); };
  auto r = gradcheck(fn, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(ViT, FrozenBackboneGetsNoGradient) {
  nn::ViTConfig c;
  c.depth = 1;
  nn::VisionTransformer vit(c);
  vit.freeze("*");
  vit.unfreeze("head.*");
  Generator g(1);
  Tensor loss = cross_entropy(vit.forward(rand({2, 3, 32, 32}, g)), from_vector_i64({1, 2}, {2}));
  backward(loss);
  for (auto& [n, p] : vit.named_parameters()) EXPECT_EQ(p.grad().defined(), n.rfind("head.", 0) == 0) << n;
}

TEST(ViT, StrictLoadingNamesTheFileAndTensors) {
  nn::ViTConfig cfg = nn::load_vit_config(fixture("timm", "config.json"));
  cfg.dim = 32;  // does not fit the weights
  cfg.heads = 2;
  nn::VisionTransformer vit(cfg);
  // One short line: the file, the first tensor that differs with both shapes, and how many more.
  EXPECT_THROW_MSG(nn::load_weights(vit, fixture("timm", "weights.safetensors")), IOError, "weights.safetensors",
                   "cls_token: file [1, 1, 16] vs model [1, 1, 32] and 30 more");
}

TEST(ViT, HeadIsReplacedWhenClassCountDiffers) {
  nn::ViTConfig cfg = nn::load_vit_config(fixture("timm", "config.json"));
  cfg.num_classes = 5;
  nn::VisionTransformer vit(cfg);
  std::string note;
  nn::load_vit_weights(vit, fixture("timm", "weights.safetensors"), &note);
  EXPECT_NE(note.find("head replaced"), std::string::npos) << note;
  EXPECT_EQ(vit.head->weight.size(0), 5);
}

TEST(ViT, BadConfigsAreRejected) {
  EXPECT_THROW_MSG(nn::vit_config_from_json(R"({"dim": 10, "heads": 3})"), ValueError, "heads 3 must divide dim 10");
  EXPECT_THROW_MSG(nn::vit_config_from_json(R"({"image_size": 30, "patch_size": 4})"), ValueError, "patch_size");
  EXPECT_THROW_MSG(nn::vit_config_from_json(R"({"dmi": 10})"), ValueError, "unknown key 'dmi'");
  EXPECT_THROW(nn::vit_config_from_json("{not json"), IOError);
}

TEST(ViT, PosEmbedResamplingMatchesTimm) {
  std::ifstream f(std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/pos_embed.json");
  auto cases = nlohmann::json::parse(f);
  ASSERT_EQ(cases.size(), 5u);
  for (auto& c : cases) {
    const int64_t go = c["g_old"], gn = c["g_new"], d = c["d"];
    Tensor pos = from_vector(c["pos"].get<std::vector<double>>(), {1, 1 + go * go, d}, DType::f64);
    Tensor want = from_vector(c["out"].get<std::vector<double>>(), {1, 1 + gn * gn, d}, DType::f64);
    EXPECT_LE(max_abs_diff(nn::resample_pos_embed(pos, gn), want), 1e-12) << go << " -> " << gn;
  }
  EXPECT_THROW(nn::resample_pos_embed(zeros({1, 1 + 5, 2}), 3), ShapeError);
}

TEST(ViT, LoadsACheckpointForAnotherImageSize) {
  nn::ViTConfig cfg = nn::load_vit_config(fixture("timm", "config.json"));
  cfg.image_size = 12;  // 3x3 patches instead of 2x2
  nn::VisionTransformer vit(cfg);
  std::string note;
  nn::load_vit_weights(vit, fixture("timm", "weights.safetensors"), &note);
  EXPECT_NE(note.find("pos_embed resampled from 5 to 10 tokens"), std::string::npos) << note;
  EXPECT_EQ(vit.pos_embed.sizes(), (Shape{1, 10, cfg.dim}));
  auto w = nn::read_tensors(fixture("timm", "weights.safetensors"));
  EXPECT_EQ(vit.pos_embed.at({0, 0, 3}), w["pos_embed"].at({0, 0, 3}));  // CLS row kept
}
