// Lab 3 exercises (docs/labs/03-modules-vit.md): a Module with named children, the patch embedding
// as one GEMM, and a ViT's parameter count. Reference solutions filled in so that
// tests/labs/test_lab03.cpp passes.
#pragma once
#include <memory>

#include "autograd/ops.h"
#include "core/random.h"
#include "nn/config.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace lab03 {

using peft::Shape;
using peft::Tensor;

// Exercise 1: the transformer MLP as a Module: fc1 [hidden, dim] -> gelu -> fc2 [dim, hidden].
// Re-implements nn::Mlp (nn/vit.cpp) without dropout. Registering the children under "fc1" and
// "fc2" is what makes named_parameters() say fc1.weight, fc1.bias, fc2.weight, fc2.bias, so that
// state dicts of nn::Mlp load into it.
class TwoLayerMlp : public peft::nn::Module {
 public:
  TwoLayerMlp(int64_t dim, int64_t hidden, peft::Generator& gen) {
    fc1 = register_module("fc1", std::make_shared<peft::nn::Linear>(dim, hidden, true, gen));
    fc2 = register_module("fc2", std::make_shared<peft::nn::Linear>(hidden, dim, true, gen));
  }
  std::string type_name() const override { return "TwoLayerMlp"; }
  // x: [..., dim] -> [..., dim]
  Tensor forward(const Tensor& x) const { return fc2->forward(peft::gelu(fc1->forward(x))); }

  std::shared_ptr<peft::nn::Linear> fc1, fc2;
};

// Exercise 2: cut images into non-overlapping P x P patches, one row per patch, with views and
// one copy: [B, C, S, S] -> [B, C, G, P, G, P] -> [B, G, G, C, P, P] -> [B, N, C*P*P], N = G*G,
// patches in row-major order and each row in (c, i, j) order, the order of a conv weight
// [D, C, P, P]. Then linear(patchify(x), reshape(W, {D, -1}), b) is the patch embedding:
// re-implements the unfold inside peft::conv2d_patch (autograd/ops/conv.cpp) / nn::PatchEmbed.
inline Tensor patchify(const Tensor& images, int64_t P) {
  const int64_t B = images.size(0), C = images.size(1), S = images.size(2), G = S / P;
  Tensor x = peft::reshape(images, {B, C, G, P, G, P});
  x = peft::permute(x, {0, 2, 4, 1, 3, 5});          // [B, G, G, C, P, P]
  return peft::reshape(x, {B, G * G, C * P * P});  // copies: the permuted view is not contiguous
}

// Exercise 3: the number of parameters of a timm-style ViT (every Linear with a bias, LayerNorm
// with weight and bias, a class token, learned position embeddings, a head when num_classes > 0),
// from the config alone. Checked against VisionTransformer::num_parameters().
inline int64_t vit_num_parameters(const peft::nn::ViTConfig& c) {
  const int64_t D = c.dim, H = c.mlp_hidden(), N = c.num_patches(), K = c.num_classes;
  const int64_t patch = D * c.in_chans * c.patch_size * c.patch_size + D;
  const int64_t tokens = D + (1 + N) * D;  // cls_token, pos_embed
  const int64_t attn = (3 * D * D + 3 * D) + (D * D + D);
  const int64_t mlp = (H * D + H) + (D * H + D);
  const int64_t block = 2 * D + attn + 2 * D + mlp;  // norm1, attn, norm2, mlp
  const int64_t head = K > 0 ? D * K + K : 0;
  return patch + tokens + c.depth * block + 2 * D + head;
}

}  // namespace lab03
