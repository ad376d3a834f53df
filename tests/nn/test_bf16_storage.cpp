// nn::store_frozen_weights_bf16 (--precision bf16 keeps frozen GEMM weights once, in bfloat16):
// it converts exactly the frozen Linear weights (the openai layout's fused q|k|v included), halves
// their bytes, leaves every other tensor float32, changes no logit (the GEMMs saw these bf16
// values already, through the weight cache), does nothing under float32, and a converted weight
// cannot be unfrozen later.
#include <gtest/gtest.h>

#include <cstring>

#include "autograd/grad_mode.h"
#include "core/bf16_weights.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/random.h"
#include "nn/bf16_storage.h"
#include "nn/clip.h"
#include "nn/vit.h"
#include "tests/testing.h"

using namespace peft;

namespace {

using peft::testing::Bf16Scope;

// dim 192 and 4 images of 65 tokens: every linear GEMM is above blas's bf16 threshold, so the
// cached and the stored weight take the same bf16 kernel.
nn::ViTConfig wide_config(const std::string& style) {
  nn::ViTConfig c;
  c.style = style;
  c.dim = 192, c.depth = 2, c.heads = 3, c.num_classes = 10;
  return c;
}

Tensor logits(nn::VisionTransformer& vit, const Tensor& x) {
  NoGradGuard ng;
  vit.eval();
  return vit.forward(x);
}

}  // namespace

TEST(Bf16Storage, ConvertsTheFrozenLinearWeightsOnlyAndChangesNoLogit) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  Bf16Scope bf;
  nn::VisionTransformer vit(wide_config("timm"), 3);
  vit.freeze_all();
  vit.unfreeze("head.*");
  Generator g(4);
  Tensor x = randn({4, 3, 32, 32}, g);
  Tensor before = logits(vit, x);
  const nn::Bf16StorageResult r = nn::store_frozen_weights_bf16(vit);
  EXPECT_EQ(r.weights, 4 * 2);  // qkv, proj, fc1, fc2 per block
  EXPECT_EQ(r.bytes_after * 2, r.bytes_before);
  EXPECT_EQ(bf16::weight_cache_stats().entries, 0u) << "the float32 weights' copies are gone";
  for (auto& [name, t] : vit.named_parameters()) {
    const bool linear_weight = name.find("blocks.") == 0 && name.size() > 7 && name.rfind(".weight") == name.size() - 7 &&
                               name.find("norm") == std::string::npos;
    EXPECT_EQ(t.dtype(), linear_weight ? DType::bf16 : DType::f32) << name;
  }
  Tensor after = logits(vit, x);
  EXPECT_EQ(std::memcmp(before.data<float>(), after.data<float>(), before.nbytes()), 0) << "logits bit for bit";
  EXPECT_EQ(bf16::weight_cache_stats().entries, 1u) << "only the trainable head has a cached copy";
  // A converted weight cannot become trainable; the method had to choose before.
  EXPECT_THROW(vit.unfreeze("blocks.0.mlp.fc1.weight"), DTypeError);
}

TEST(Bf16Storage, TrainableWeightsAndFloat32PrecisionAreLeftAlone) {
  nn::VisionTransformer vit(wide_config("timm"), 5);
  vit.freeze_all();
  EXPECT_EQ(nn::store_frozen_weights_bf16(vit).weights, 0) << "precision f32: nothing changes";
  for (auto& [name, t] : vit.named_parameters()) EXPECT_EQ(t.dtype(), DType::f32) << name;
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  Bf16Scope bf;
  vit.unfreeze("blocks.1.*");  // full fine-tuning of block 1
  EXPECT_EQ(nn::store_frozen_weights_bf16(vit).weights, 4 + 1);  // block 0's linears and the frozen head
  for (auto& [name, t] : vit.named_parameters())
    if (name.find("blocks.1.") == 0) {
      EXPECT_EQ(t.dtype(), DType::f32) << name;
    }
}

TEST(Bf16Storage, OpenaiLayoutFusedQkvAndBothClipTowersAreConverted) {
  if (!blas::bf16_supported()) GTEST_SKIP() << "no bf16 GEMM in this build";
  Bf16Scope bf;
  nn::VisionTransformer vit(wide_config("openai_clip_visual"), 6);
  vit.freeze_all();
  EXPECT_EQ(nn::store_frozen_weights_bf16(vit).weights, 4 * 2 + 1);  // and the frozen head
  const auto params = vit.named_parameters();
  int in_proj = 0;
  for (auto& [name, t] : params)
    if (name.find("attn.in_proj_weight") != std::string::npos) {
      EXPECT_EQ(t.dtype(), DType::bf16) << name;
      ++in_proj;
    }
  EXPECT_EQ(in_proj, 2);
  nn::CLIP clip(nn::load_clip_config("clip-micro"), 0);
  clip.freeze_all();
  const nn::Bf16StorageResult r = nn::store_frozen_weights_bf16(clip);
  EXPECT_EQ(r.weights, 4 * (clip.cfg.vision.depth + clip.cfg.text.layers));
}
