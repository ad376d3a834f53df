// The training loop shared by `peft pretrain` and `peft train`: schedule, optimizer, metrics,
// progress, epoch checkpoints for --resume, and evaluation. Its parts live in peft/train/.
#pragma once
#include <functional>
#include <string>

#include "data/dataset.h"
#include "data/transforms.h"
#include "nn/vit.h"
#include "peft/train/evaluation.h"  // EvalResult, evaluate

namespace peft {

struct TrainConfig {
  int64_t epochs = 10;
  int64_t batch = 32;
  double lr = 1e-3;            // peak
  double weight_decay = 0.05;
  double warmup_epochs = 0;    // linear warm-up, then cosine decay to 0
  std::string optimizer = "adamw";  // adamw | sgd (momentum 0.9)
  std::string augment = "none";     // cli.md --augment
  double label_smoothing = 0.0;
  double clip_grad = 0.0;           // global-norm clipping (0 = off)
  uint64_t seed = 0;
  std::string out_dir;        // metrics.jsonl and checkpoint.safetensors go here ("" = none)
  bool resume = false;        // continue from out_dir/checkpoint.safetensors
  int64_t save_every = 0;     // also checkpoint every N steps inside an epoch (0 = at epoch ends only)
  bool progress = true;       // progress bar on stderr (only when it is a terminal)
  // Head-only training without augmentation or dropout: run the backbone once per image and
  // train the head on cached features from the second epoch on (peft/head_cache.h). false:
  // the ordinary loop (--no-feature-cache).
  bool feature_cache = true;
  int64_t feature_cache_limit = 0;  // bytes the cached features may take (0 = default_head_cache_limit())
};

struct TrainResult {
  EvalResult train;  // last epoch, measured during training
  EvalResult val;    // on the validation set (or the training set when none is given)
  double train_time_s = 0;
  double images_per_s = 0;
  int64_t steps = 0;
  bool feature_cache = false;   // trained on cached backbone features
  int64_t backbone_images = 0;  // images the backbone encoded into the caches (train + val)
};

// Input normalisation for a model: CLIP constants for the OpenAI layout, ImageNet otherwise.
data::Normalization normalization_for(const nn::ViTConfig& c);

// Trains the model's trainable tensors on `train` (validated on `val` after each epoch when
// given). Writes out_dir/metrics.jsonl (one JSON object per epoch, cli.md) and
// out_dir/checkpoint.safetensors (trainable tensors + optimizer state + progress) atomically.
// With the feature cache on (plan_head_cache), each metrics line also says "feature_cache":
// "computed" (the backbone ran in this epoch) or "cached" (it did not).
TrainResult train_model(nn::VisionTransformer& model, const data::DatasetPtr& train, const data::DatasetPtr& val,
                        const TrainConfig& cfg);

}  // namespace peft
