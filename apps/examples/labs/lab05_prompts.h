// Lab 5 exercises (docs/labs/05-prompts.md): where VPT and CVPT prompts go, what they cost and
// where the attention goes. Reference solutions filled in so that tests/labs/test_lab05.cpp passes.
#pragma once
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/counters.h"
#include "core/random.h"
#include "nn/config.h"
#include "nn/vit.h"
#include "peft/method.h"

namespace lab05 {

using peft::Tensor;

// A tiny timm ViT: 16x16 images, 4x4 patches (N = 16), D = 32, 3 blocks of 4 heads, 5 classes.
inline peft::nn::ViTConfig tiny_config() {
  peft::nn::ViTConfig c;
  c.image_size = 16;
  c.patch_size = 4;
  c.dim = 32;
  c.depth = 3;
  c.heads = 4;
  c.num_classes = 5;
  return c;
}

// A model with `method` attached ("linear" = no prompts, the M = 0 baseline; "vpt-shallow",
// "vpt-deep" or "cvpt" with M prompts), in eval mode so that no dropout runs.
inline std::unique_ptr<peft::nn::VisionTransformer> make_model(const peft::nn::ViTConfig& c, const std::string& method,
                                                               int64_t M, uint64_t seed = 0) {
  auto vit = std::make_unique<peft::nn::VisionTransformer>(c, seed);
  peft::Generator gen(seed + 1);
  peft::MethodOptions o;
  o.prompts = M;
  peft::apply_method(*vit, method, o, c.num_classes, gen);
  vit->eval();
  return vit;
}

// The model's prompt tensor: vpt.prompts [1 or L, M, D] or cvpt.prompts [L, M, D] (undefined
// for a model without prompts). Methods register their tensors under these names (interop.md).
inline Tensor prompt_tensor(const peft::nn::VisionTransformer& vit) {
  if (vit.has_parameter("vpt.prompts")) return vit.parameter("vpt.prompts");
  if (vit.has_parameter("cvpt.prompts")) return vit.parameter("cvpt.prompts");
  return Tensor();
}

// Exercise 1: re-implement VisionTransformer::forward_features (timm layout, eval mode) for the
// three prompt methods, using only the model's public members and its prompt tensor (or
// `prompts` in its place when given), and record the sequence length every block sees in
// `lengths` (one entry per block).
//   VPT-shallow (methods.md "VPT-shallow"): x = [CLS, P_0, patches], prompts without pos-embed.
//   VPT-deep (methods.md "VPT-deep"): before block i >= 1, rows 1..M are replaced by P_i.
//   CVPT (methods.md "CVPT"): the sequence stays [CLS, patches]; block i cross-attends to
//   cvpt.prompts[i] [1, M, D] between its attention and its MLP (Attention::cross).
inline Tensor prompted_features(peft::nn::VisionTransformer& vit, const Tensor& images,
                                std::vector<int64_t>* lengths = nullptr, Tensor prompts = Tensor()) {
  using namespace peft;
  const int64_t B = images.size(0), D = vit.cfg.dim;
  const bool vpt = vit.has_parameter("vpt.prompts"), cvpt = vit.has_parameter("cvpt.prompts");
  if (!prompts.defined()) prompts = prompt_tensor(vit);
  Tensor t = vit.patch_embed->forward(images);                                  // [B, N, D]
  Tensor cls = expand(reshape(vit.cls_token, {1, 1, D}), {B, 1, D});             // [B, 1, D]
  Tensor x = add(cat({cls, t}, 1), reshape(vit.pos_embed, {1, -1, D}));          // [B, 1+N, D]
  const int64_t M = vpt ? prompts.size(1) : 0;
  const bool deep = vpt && prompts.size(0) > 1;
  // Prompt row i of vpt.prompts [L or 1, M, D], broadcast to the batch: [B, M, D].
  auto vpt_row = [&](int64_t i) {
    Tensor row = narrow(prompts, 0, i, 1);
    return expand(row, {B, M, D});
  };
  if (vpt) x = cat({narrow(x, 1, 0, 1), vpt_row(0), narrow(x, 1, 1, x.size(1) - 1)}, 1);  // [B, 1+M+N, D]
  if (lengths) lengths->clear();
  for (size_t i = 0; i < vit.block_list.size(); ++i) {
    const int64_t li = static_cast<int64_t>(i);
    const nn::Block& blk = *vit.block_list[i];
    // Deep prompts: the M prompt outputs of block i-1 are discarded, CLS and patch rows are kept.
    if (deep && i > 0) x = cat({narrow(x, 1, 0, 1), vpt_row(li), narrow(x, 1, 1 + M, x.size(1) - 1 - M)}, 1);
    if (lengths) lengths->push_back(x.size(1));
    x = add(x, blk.attn_branch(x));                                       // x + SA(LN(x))
    if (cvpt) x = add(x, blk.attn->cross(x, narrow(prompts, 0, li, 1)));  // + CA(x, P_i): [1, M, D]
    x = add(x, blk.mlp_branch(x));                                        // + MLP(LN(x))
  }
  x = vit.norm->forward(x);
  if (vit.cfg.pool == "mean") return mean(narrow(x, 1, 1 + M, x.size(1) - 1 - M), {1});  // patch rows only
  return select(x, 1, 0);                                                               // CLS: [B, D]
}

// Exercise 2: the share of CLS's attention that lands on the prompt rows 1..M, per block, averaged
// over the batch and the heads: share_i = mean_{b,h} sum_{j=1..M} A_i[b, h, 0, j]. Use
// Attention::keep_attention and Attention::last_attention [B, H, T, T] of every block (switch
// keep_attention off again afterwards). For a model without VPT prompts every share is 0.
inline std::vector<double> cls_prompt_attention_share(peft::nn::VisionTransformer& vit, const Tensor& images) {
  using namespace peft;
  NoGradGuard ng;
  for (auto& b : vit.block_list) b->attn->keep_attention = true;
  vit.forward(images);
  const int64_t M = vit.has_parameter("vpt.prompts") ? prompt_tensor(vit).size(1) : 0;
  std::vector<double> share;
  for (auto& b : vit.block_list) {
    Tensor A = b->attn->last_attention;                         // [B, H, T, T]
    Tensor cls_row = select(A, 2, 0);                           // [B, H, T]: CLS as the query
    Tensor on_prompts = sum(narrow(cls_row, 2, 1, M), {2});     // [B, H]
    share.push_back(M == 0 ? 0.0 : mean(on_prompts).item());
    b->attn->keep_attention = false;
    b->attn->last_attention = Tensor();
  }
  return share;
}

// Exercise 3: predict the GEMM FLOPs (2*m*n*k per GEMM, as core/counters.h counts them) of one
// eval forward pass of make_model(c, method, M) on a batch of B images, from the formulas of
// methods.md "VPT-shallow", "VPT-deep", "CVPT". Per block with T tokens: qkv 2BTD*3D, scores and weighted sum 2*2BT^2D (all
// heads together), proj 2BTD^2, MLP 2*2BTDF. CVPT adds per block: q and output projections
// 2*2BTD^2, the prompts' k and v 2*2MD^2 (once for the batch) and 2*2BTMD for scores and sum.
// Patch embedding 2BN(CP^2)D and the head 2BDK come on top.
inline int64_t predict_forward_flops(const peft::nn::ViTConfig& c, const std::string& method, int64_t M, int64_t B) {
  const int64_t N = c.num_patches(), D = c.dim, F = c.mlp_hidden(), K = c.num_classes;
  const bool vpt = method == "vpt-shallow" || method == "vpt-deep";
  const bool cvpt = method == "cvpt";
  if (!vpt && !cvpt && method != "linear") throw std::invalid_argument("predict_forward_flops: unknown method " + method);
  const int64_t T = 1 + N + (vpt ? M : 0);  // the sequence every block sees
  int64_t block = 2 * B * T * D * 3 * D       // qkv
                  + 2 * 2 * B * T * T * D     // Q K^T and A V over the heads: quadratic in T
                  + 2 * B * T * D * D         // proj
                  + 2 * 2 * B * T * D * F;    // fc1, fc2
  if (cvpt)
    block += 2 * 2 * B * T * D * D            // cross-attention q and output projections
             + 2 * 2 * M * D * D              // prompt keys and values, once for the batch
             + 2 * 2 * B * T * M * D;         // scores and weighted sum: linear in M
  return 2 * B * N * (c.in_chans * c.patch_size * c.patch_size) * D + c.depth * block + 2 * B * D * K;
}

// ... and measure it: GEMM FLOPs counted by peft::counters() during one forward without autograd.
inline int64_t measure_forward_flops(peft::nn::VisionTransformer& vit, const Tensor& images) {
  peft::NoGradGuard ng;
  peft::reset_gemm_counters();
  vit.forward(images);
  return peft::counters().gemm_flops;
}

// Exercise 4: the training loss as a function of the prompt tensor alone, for gradcheck: runs the
// model of exercise 1 with `prompts` in place of its vpt.prompts (or cvpt.prompts) and returns
// cross_entropy(head(features), labels).
inline Tensor loss_of_prompts(peft::nn::VisionTransformer& vit, const Tensor& prompts, const Tensor& images,
                              const Tensor& labels) {
  if (!prompt_tensor(vit).defined()) throw std::invalid_argument("loss_of_prompts: the model has no prompts");
  return peft::cross_entropy(vit.forward_head(prompted_features(vit, images, nullptr, prompts)), labels);
}

}  // namespace lab05
