// Contrastive pretraining of a CLIP on captioned procedural images (`peft clip-demo`'s first
// step; Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
// Supervision", and OpenAI's training recipe: symmetric InfoNCE with a learned temperature, AdamW
// with betas 0.9/0.98 and eps 1e-6, the temperature multiplier clamped at 100).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/clip.h"

namespace peft {

struct ClipPretrainConfig {
  std::string task = "mixed";  // the procedural task whose captioned images it trains on
  int64_t images = 12000, epochs = 6;
  int64_t batch = 128;         // every batch is full (drop_last): the InfoNCE targets are arange(batch)
  double lr = 1e-3;            // peak; linear warm-up over min(50, steps / 5) steps, then cosine decay
  double weight_decay = 0.1;   // on the matrices only (nn::param_groups)
  uint64_t seed = 0;           // the images and the batch order
};

struct ClipPretrainResult {
  std::vector<double> epoch_loss;  // mean contrastive loss of each epoch
  double time_s = 0;
  double last_loss() const { return epoch_loss.empty() ? 0.0 : epoch_loss.back(); }
};

// The symmetric InfoNCE loss of a batch: images [B, C, S, S] against their captions' tokens
// [B, T]; the i-th caption belongs to the i-th image. Scalar, differentiable.
Tensor clip_contrastive_loss(nn::CLIP& clip, const Tensor& images, const Tensor& tokens);

// Trains every tensor of `clip` (logit_scale included) and leaves it in eval mode; `say` gets one
// line per epoch (loss, temperature, time). Fewer images than a batch train nothing (loss 0).
ClipPretrainResult pretrain_clip(nn::CLIP& clip, const ClipPretrainConfig& c,
                                 const std::function<void(const std::string&)>& say = {});

}  // namespace peft
