// Lab 3 checks (docs/labs/03-modules-vit.md): the MLP module's names and output, patchify as the
// patch embedding, and the ViT parameter-count formula.
#include <gtest/gtest.h>

#include "apps/examples/labs/lab03_modules_vit.h"
#include "nn/vit.h"
#include "tests/testing.h"

using namespace peft;

// Exercise 1
TEST(Lab03, MlpModuleHasDottedNamesAndMatchesNnMlp) {
  Generator gen(1);
  lab03::TwoLayerMlp mlp(8, 16, gen);
  std::vector<std::string> names;
  for (auto& [n, p] : mlp.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(mlp.num_parameters(), 8 * 16 + 16 + 16 * 8 + 8);
  EXPECT_EQ(mlp.parameter("fc2.weight").sizes(), (Shape{8, 16}));

  // The library's Mlp (inside a ViT block) loads into it strictly and gives the same output.
  nn::ViTConfig c;
  c.dim = 8;
  c.mlp_ratio = 2.0;
  nn::Mlp ref(c, gen, nullptr);
  std::map<std::string, Tensor> sd;
  for (auto& [n, t] : ref.state_dict()) sd[n] = t;
  EXPECT_TRUE(mlp.load_state_dict(sd).ok());
  Tensor x = randn({2, 5, 8}, gen);
  EXPECT_LT(max_abs_diff(mlp.forward(x), ref.forward(x)), 1e-6);

  // Freezing by name reaches the children.
  EXPECT_EQ(mlp.freeze("fc1.*"), 2);
  EXPECT_EQ(mlp.num_parameters(true), 16 * 8 + 8);
}

// Exercise 2
TEST(Lab03, PatchifyThenLinearIsThePatchEmbedding) {
  nn::ViTConfig c;
  c.image_size = 8;
  c.patch_size = 4;
  c.dim = 6;
  c.depth = 1;
  nn::VisionTransformer vit(c, 2);
  Generator gen(3);
  Tensor images = randn({2, 3, 8, 8}, gen);
  Tensor rows = lab03::patchify(images, 4);
  EXPECT_EQ(rows.sizes(), (Shape{2, 4, 48}));
  // Patch 1 (top right) of image 0, channel 2, pixel (1, 3) sits at row 1, column 2*16 + 1*4 + 3.
  EXPECT_EQ(rows.at({0, 1, 2 * 16 + 1 * 4 + 3}), images.at({0, 2, 1, 4 + 3}));
  Tensor w = vit.patch_embed->weight;
  Tensor tokens = linear(rows, reshape(w, {w.size(0), -1}), vit.patch_embed->bias);
  EXPECT_LT(max_abs_diff(tokens, vit.patch_embed->forward(images)), 1e-5);
  // Built from differentiable views, so gradients flow back to the pixels.
  auto fn = [](const std::vector<Tensor>& in) { return lab03::patchify(in[0], 2); };
  EXPECT_GRADCHECK(fn, std::vector<Tensor>{peft::testing::randn64({1, 2, 4, 4}, 4)});
}

// Exercise 3
TEST(Lab03, ParameterCountFormulaMatchesTheModel) {
  for (const char* preset : {"vit-micro", "vit-tiny"}) {
    nn::ViTConfig c = nn::load_vit_config(preset);
    c.depth = 2;  // keep the test fast; the formula is linear in depth
    nn::VisionTransformer vit(c, 0);
    EXPECT_EQ(lab03::vit_num_parameters(c), vit.num_parameters()) << preset;
  }
  nn::ViTConfig c;
  c.image_size = 16;
  c.patch_size = 8;
  c.dim = 12;
  c.depth = 3;
  c.heads = 3;
  c.mlp_ratio = 3.0;
  c.num_classes = 0;  // features only: no head
  nn::VisionTransformer vit(c, 0);
  EXPECT_EQ(lab03::vit_num_parameters(c), vit.num_parameters());
}
