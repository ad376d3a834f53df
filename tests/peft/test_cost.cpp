// peft/cost.h: parameter counts, GEMM FLOPs against the analytic count of a ViT, how FLOPs grow
// with the number of prompts (VPT-deep faster than linear, CVPT linear), memory and time sanity,
// and that measuring leaves the model as it was.
#include <algorithm>
#include <string>

#include "autograd/grad_mode.h"
#include "peft/cost.h"
#include "peft/method.h"
#include "tests/testing.h"

namespace peft {
namespace {

// The tiny config of the issue: image 16, patch 4, dim 16, depth 2, heads 2 (T = 1 + 16).
nn::ViTConfig tiny() {
  nn::ViTConfig c;
  c.image_size = 16; c.patch_size = 4; c.dim = 16; c.depth = 2; c.heads = 2; c.num_classes = 3;
  return c;
}

std::unique_ptr<nn::VisionTransformer> with_method(const std::string& method, int64_t prompts = 10) {
  auto vit = std::make_unique<nn::VisionTransformer>(tiny(), 0);
  MethodOptions o;
  o.prompts = prompts;
  Generator gen(1);
  apply_method(*vit, method, o, 3, gen);
  return vit;
}

int64_t flops(const std::string& method, int64_t prompts = 10) { return measure_cost(*with_method(method, prompts), 2, 1).flops_per_image; }

// Forward GEMM FLOPs of one image through a plain timm ViT with T tokens in every block.
int64_t analytic_flops(const nn::ViTConfig& c, int64_t T) {
  const int64_t D = c.dim, N = c.num_patches(), P = c.patch_size, hidden = c.mlp_hidden(), K = c.num_classes;
  int64_t f = 2 * N * (c.in_chans * P * P) * D;  // patch embedding
  const int64_t block = 2 * T * D * 3 * D      // qkv
                        + 2 * 2 * T * T * D    // QK^T and PV over all heads (H * hd = D)
                        + 2 * T * D * D        // proj
                        + 2 * 2 * T * D * hidden;  // fc1, fc2
  f += c.depth * block;
  return f + 2 * D * K;  // head
}

TEST(Cost, LinearProbeTrainsOnlyTheHead) {
  auto vit = with_method("linear");
  const CostReport r = measure_cost(*vit, 2, 1);
  const int64_t head = 3 * 16 + 3;
  EXPECT_EQ(r.trainable, head);
  EXPECT_EQ(r.total, vit->num_parameters(false));
  EXPECT_EQ(r.backbone, r.total - head);
  EXPECT_NEAR(r.trainable_pct, 100.0 * head / static_cast<double>(r.backbone), 1e-9);
  EXPECT_EQ(r.batch, 2);
}

TEST(Cost, FullFineTuningTrainsEverything) {
  const CostReport r = measure_cost(*with_method("full"), 2, 1);
  EXPECT_EQ(r.trainable, r.total);
  EXPECT_GT(r.trainable_pct, 100.0);  // head included, backbone excluded
}

TEST(Cost, FlopsMatchTheAnalyticCount) {
  const nn::ViTConfig c = tiny();
  EXPECT_EQ(flops("linear"), analytic_flops(c, 1 + c.num_patches()));
  // VPT-deep: M more tokens in every block (the prompts themselves cost no GEMM).
  EXPECT_EQ(flops("vpt-deep", 10), analytic_flops(c, 1 + 10 + c.num_patches()));
}

TEST(Cost, VptDeepFlopsGrowFasterThanLinear) {
  const int64_t f0 = flops("linear"), f50 = flops("vpt-deep", 50), f100 = flops("vpt-deep", 100);
  EXPECT_GT(flops("vpt-deep", 1), f0);
  EXPECT_GT(f50, f0);
  EXPECT_GT(f100, f50);
  // Attention is quadratic in the tokens: the second 50 prompts cost clearly more than the first.
  EXPECT_GT(static_cast<double>(f100 - f50), 1.2 * static_cast<double>(f50 - f0));
}

TEST(Cost, CvptFlopsGrowLinearly) {
  const int64_t f0 = flops("linear"), f10 = flops("cvpt", 10), f20 = flops("cvpt", 20), f30 = flops("cvpt", 30);
  EXPECT_GT(f10, f0);
  const double d1 = static_cast<double>(f20 - f10), d2 = static_cast<double>(f30 - f20);
  EXPECT_GT(d1, 0);
  EXPECT_NEAR(d2, d1, 0.1 * d1);
  // From M = 0 there is also a constant step: the cross-attention's own query and output
  // projections of every token, paid once whatever M is (the extra tokens need not be counted).
  const nn::ViTConfig c = tiny();
  const int64_t T = 1 + c.num_patches(), D = c.dim;
  EXPECT_NEAR(static_cast<double>(f10 - f0 - 2 * c.depth * 2 * T * D * D), d1, 0.1 * d1);
  // And it grows far slower than VPT-deep's.
  EXPECT_LT(f30 - f10, flops("vpt-deep", 30) - flops("vpt-deep", 10));
}

TEST(Cost, MemoryAndTimeAreSane) {
  const CostReport lin = measure_cost(*with_method("linear"), 4, 2);
  const CostReport full = measure_cost(*with_method("full"), 4, 2);
  const CostReport deep = measure_cost(*with_method("vpt-deep", 50), 4, 2);
  for (const CostReport& r : {lin, full, deep}) {
    EXPECT_GT(r.train_step_s, 0);
    EXPECT_GT(r.infer_batch_s, 0);
    EXPECT_GT(r.infer_peak_bytes, 0);
    EXPECT_GE(r.train_peak_bytes, r.infer_peak_bytes);  // activations saved for backward
    EXPECT_GT(r.peak_rss_mb, 0);
  }
  // Full fine-tuning holds gradients and two AdamW moments for every weight.
  EXPECT_GT(full.train_peak_bytes, lin.train_peak_bytes + 3 * 4 * (full.total - lin.trainable) * 9 / 10);
  // 50 prompts in every block: more activations.
  EXPECT_GT(deep.train_peak_bytes, lin.train_peak_bytes);
  EXPECT_GT(deep.infer_peak_bytes, lin.infer_peak_bytes);
}

TEST(Cost, MeasuringLeavesTheModelUnchanged) {
  auto vit = with_method("vpt-deep", 5);
  Generator g(3);
  Tensor x = randn({2, 3, 16, 16}, g);
  auto logits = [&] {
    NoGradGuard ng;
    vit->eval();
    Tensor y = vit->forward(x);
    vit->train();
    return y.to_vector<float>();
  };
  const std::vector<float> before = logits();
  vit->train();
  measure_cost(*vit, 2, 2);
  EXPECT_TRUE(vit->is_training());
  EXPECT_EQ(logits(), before);  // AdamW steps were undone
  for (auto& [name, t] : vit->named_parameters()) EXPECT_FALSE(t.grad().defined()) << name;
}

TEST(Cost, TableAndCsv) {
  CostReport a = measure_cost(*with_method("linear"), 2, 1), b = measure_cost(*with_method("cvpt", 4), 2, 1);
  a.method = "linear";
  b.method = "cvpt";
  b.prompts = 4;
  const std::string t = format_cost_table({a, b});
  EXPECT_NE(t.find("MFLOPs/img"), std::string::npos);
  EXPECT_NE(t.find("linear"), std::string::npos);
  EXPECT_NE(t.find("cvpt"), std::string::npos);
  EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 3);
  const std::string csv = format_cost_csv({a, b});
  EXPECT_EQ(csv.rfind(cost_csv_header() + "\n", 0), 0u);
  EXPECT_NE(csv.find("\ncvpt,4,2," + std::to_string(b.trainable) + ","), std::string::npos);
  EXPECT_NE(csv.find("," + std::to_string(b.flops_per_image) + ","), std::string::npos);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
}

TEST(Cost, BadArguments) {
  auto vit = with_method("linear");
  EXPECT_THROW_MSG(measure_cost(*vit, 0, 1), ValueError, "batch and steps must be positive");
  EXPECT_THROW_MSG(measure_cost(*vit, 2, 0), ValueError, "batch and steps must be positive");
  nn::ViTConfig c = tiny();
  c.num_classes = 0;
  nn::VisionTransformer headless(c, 0);
  EXPECT_THROW_MSG(measure_cost(headless, 2, 1), ValueError, "no head");
}

}  // namespace
}  // namespace peft
