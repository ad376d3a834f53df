// Lab 5 checks (docs/labs/05-prompts.md): VPT-shallow, VPT-deep and CVPT re-implemented against the
// library forward, sequence lengths per block, the CLS -> prompt attention share, GEMM FLOPs
// (measured = predicted, and the VPT-deep - CVPT difference in closed form) and prompt gradients.
#include <gtest/gtest.h>

#include <cmath>

#include "apps/examples/labs/lab05_prompts.h"
#include "tests/testing.h"

using namespace peft;

namespace {
struct Lab05 : ::testing::Test {
  nn::ViTConfig c = lab05::tiny_config();
  Generator gen{5};
  Tensor images = randn({2, c.in_chans, c.image_size, c.image_size}, gen);
  const int64_t N = c.num_patches();
};
}  // namespace

// Exercise 1: the re-implementation equals VisionTransformer::forward_features, and the blocks see
// 1+M+N tokens under VPT, 1+N under CVPT and without prompts.
TEST_F(Lab05, PromptedFeaturesMatchTheLibrary) {
  const int64_t M = 4;
  for (const std::string method : {"linear", "vpt-shallow", "vpt-deep", "cvpt"}) {
    auto vit = lab05::make_model(c, method, M, 3);
    std::vector<int64_t> lengths;
    Tensor mine = lab05::prompted_features(*vit, images, &lengths);
    Tensor lib = vit->forward_features(images);
    ASSERT_EQ(mine.sizes(), lib.sizes()) << method;
    EXPECT_LT(max_abs_diff(mine, lib), 1e-5) << method;
    const bool vpt = method == "vpt-shallow" || method == "vpt-deep";
    EXPECT_EQ(lengths, std::vector<int64_t>(c.depth, 1 + N + (vpt ? M : 0))) << method;
  }
}

TEST_F(Lab05, DeepPromptRowsReachTheOutput) {
  // Changing row i >= 1 of VPT-deep's prompts changes the features, so the replacement must happen.
  auto vit = lab05::make_model(c, "vpt-deep", 3, 4);
  Tensor before = lab05::prompted_features(*vit, images);
  narrow(lab05::prompt_tensor(*vit), 0, c.depth - 1, 1).fill_(0.5);
  Tensor after = lab05::prompted_features(*vit, images);
  EXPECT_GT(max_abs_diff(before, after), 1e-4);
  EXPECT_LT(max_abs_diff(after, vit->forward_features(images)), 1e-5);
}

// Exercise 2: uniform attention (q = k = 0) puts exactly M / (1+M+N) of CLS's attention on the prompts.
TEST_F(Lab05, ClsPromptShareUnderUniformAttention) {
  const int64_t M = 6, D = c.dim;
  auto vit = lab05::make_model(c, "vpt-deep", M, 6);
  for (auto& b : vit->block_list) {  // zero the q and k rows of the fused projection
    narrow(b->attn->qkv->weight, 0, 0, 2 * D).fill_(0.0);
    narrow(b->attn->qkv->bias, 0, 0, 2 * D).fill_(0.0);
  }
  std::vector<double> share = lab05::cls_prompt_attention_share(*vit, images);
  ASSERT_EQ(share.size(), static_cast<size_t>(c.depth));
  for (double s : share) EXPECT_NEAR(s, static_cast<double>(M) / static_cast<double>(1 + M + N), 1e-6);
  for (auto& b : vit->block_list) EXPECT_FALSE(b->attn->keep_attention);  // switched off again
}

// ... and block 0's share equals a direct computation from the block's input [CLS, P_0, patches].
TEST_F(Lab05, ClsPromptShareOfBlockZeroMatchesDirectComputation) {
  const int64_t M = 5, D = c.dim, H = c.heads, B = images.size(0);
  auto vit = lab05::make_model(c, "vpt-shallow", M, 7);
  // A fresh ViT attends almost uniformly; larger q/k weights make the attention peaked, so that a
  // wrong column range shows.
  for (auto& b : vit->block_list) b->attn->qkv->weight.set_data(mul(b->attn->qkv->weight, 6.0));
  std::vector<double> share = lab05::cls_prompt_attention_share(*vit, images);
  NoGradGuard ng;
  Tensor x = add(cat({expand(reshape(vit->cls_token, {1, 1, D}), {B, 1, D}), vit->patch_embed->forward(images)}, 1),
                 reshape(vit->pos_embed, {1, -1, D}));
  x = cat({narrow(x, 1, 0, 1), expand(lab05::prompt_tensor(*vit), {B, M, D}), narrow(x, 1, 1, N)}, 1);  // [B, 1+M+N, D]
  const auto& attn = *vit->block_list[0]->attn;
  Tensor qkv = reshape(attn.qkv->forward(vit->block_list[0]->norm1->forward(x)), {B, 1 + M + N, 3, H, D / H});
  Tensor A = attention_probs(transpose(select(qkv, 2, 0), 1, 2), transpose(select(qkv, 2, 1), 1, 2));
  double expected = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 1; j <= M; ++j) expected += A.at({b, h, 0, j});
  expected /= static_cast<double>(B * H);
  EXPECT_NEAR(share[0], expected, 1e-6);
  EXPECT_GT(std::abs(expected - static_cast<double>(M) / static_cast<double>(1 + M + N)), 1e-3);  // not uniform
  for (double s : share) {
    EXPECT_GT(s, 0.0);
    EXPECT_LT(s, 1.0);
  }
  auto plain = lab05::make_model(c, "linear", 0, 7);
  for (double s : lab05::cls_prompt_attention_share(*plain, images)) EXPECT_EQ(s, 0.0);
}

// Exercise 3: predicted GEMM FLOPs equal the counted ones for M = 0, 10, 50.
TEST_F(Lab05, ForwardFlopsMatchThePrediction) {
  const int64_t B = images.size(0);
  auto plain = lab05::make_model(c, "linear", 0);
  EXPECT_EQ(lab05::measure_forward_flops(*plain, images), lab05::predict_forward_flops(c, "linear", 0, B));
  for (const std::string method : {"vpt-shallow", "vpt-deep", "cvpt"})
    for (int64_t M : {10, 50}) {
      auto vit = lab05::make_model(c, method, M);
      EXPECT_EQ(lab05::measure_forward_flops(*vit, images), lab05::predict_forward_flops(c, method, M, B))
          << method << " M=" << M;
    }
}

TEST_F(Lab05, VptIsQuadraticInMAndCvptLinear) {
  auto f = [&](const std::string& m, int64_t M) { return lab05::predict_forward_flops(c, m, M, 2); };
  // Second differences: 0 for a linear function of M, positive for a quadratic one.
  EXPECT_EQ(f("cvpt", 50) - 2 * f("cvpt", 25) + f("cvpt", 0), 0);
  EXPECT_EQ(f("vpt-deep", 50) - 2 * f("vpt-deep", 25) + f("vpt-deep", 0), c.depth * 2 * 2 * 2 * c.dim * 2 * 25 * 25);
  EXPECT_EQ(f("vpt-shallow", 10), f("vpt-deep", 10));  // same sequence everywhere
  EXPECT_EQ(f("vpt-deep", 0), f("linear", 0));         // M = 0 is the plain ViT
}

TEST_F(Lab05, DeepMinusCvptAtFiftyInClosedForm) {
  // Measured difference VPT-deep - CVPT at M = 50 against methods.md "VPT-deep" and 9 written out by hand:
  // per block and image, VPT adds M rows to qkv, proj and the MLP (2*M*(3D^2 + D^2 + 2DF)) and grows
  // attention from 4*T0^2*D to 4*(T0+M)^2*D; CVPT adds 4*T0*D^2 + 4*T0*M*D per image and 4*M*D^2 once.
  const int64_t M = 50, B = images.size(0), D = c.dim, F = c.mlp_hidden(), L = c.depth, T0 = 1 + N;
  const int64_t vpt_extra = B * (2 * M * (3 * D * D + D * D + 2 * D * F) + 4 * ((T0 + M) * (T0 + M) - T0 * T0) * D);
  const int64_t cvpt_extra = B * (4 * T0 * D * D + 4 * T0 * M * D) + 4 * M * D * D;
  auto deep = lab05::make_model(c, "vpt-deep", M), cvpt = lab05::make_model(c, "cvpt", M);
  EXPECT_EQ(lab05::measure_forward_flops(*deep, images) - lab05::measure_forward_flops(*cvpt, images),
            L * (vpt_extra - cvpt_extra));
  EXPECT_EQ(lab05::predict_forward_flops(c, "vpt-deep", M, B) - lab05::predict_forward_flops(c, "cvpt", M, B),
            L * (vpt_extra - cvpt_extra));
}

// Exercise 4: the prompts' gradient through the frozen blocks passes a float64 gradcheck, and none
// of the frozen backbone receives one.
TEST(Lab05Grad, PromptGradientsPassGradcheck) {
  nn::ViTConfig c;
  c.image_size = 8;
  c.patch_size = 4;
  c.dim = 8;
  c.depth = 2;
  c.heads = 2;
  c.num_classes = 3;
  Generator gen(9);
  Tensor images = randn({2, 3, 8, 8}, gen, DType::f64);
  Tensor labels = from_vector_i64({0, 2}, {2});
  for (const std::string method : {"vpt-shallow", "vpt-deep", "cvpt"}) {
    auto vit = lab05::make_model(c, method, 3, 11);
    vit->to(DType::f64);
    Tensor p = lab05::prompt_tensor(*vit).clone();
    p.requires_grad_(true);
    auto r = gradcheck([&](const std::vector<Tensor>& in) { return lab05::loss_of_prompts(*vit, in[0], images, labels); },
                       {p});
    EXPECT_TRUE(r.ok) << method << ": " << r.message;
    // Every row of the prompts gets a gradient (VPT-deep: row i through blocks i..L-1).
    vit->zero_grad();
    p.zero_grad();
    Tensor loss = lab05::loss_of_prompts(*vit, p, images, labels);
    backward(loss);
    for (int64_t i = 0; i < p.size(0); ++i) EXPECT_GT(sum(abs(select(p.grad(), 0, i))).item(), 0.0) << method;
    for (auto& [name, t] : vit->blocks->named_parameters()) EXPECT_FALSE(t.grad().defined()) << method << " " << name;
    p.zero_grad();
  }
}
