// The training loop shared by `peft pretrain` and `peft train`: schedule, optimizer, metrics,
// progress, epoch checkpoints for --resume, and evaluation. Its parts live in peft/train/.
#pragma once
#include <functional>
#include <string>

#include "core/distributed.h"
#include "data/dataset.h"
#include "data/mixup.h"
#include "data/transforms.h"
#include "nn/vit.h"
#include "peft/train/evaluation.h"  // EvalResult, evaluate
#include "peft/train/run_settings.h"

namespace peft {

struct TrainConfig {
  int64_t epochs = 10;
  int64_t batch = 32;
  double lr = 1e-3;            // peak
  double weight_decay = 0.05;
  double warmup_epochs = 0;    // linear warm-up from warmup_lr, then the schedule
  // The schedule after the warm-up (nn/optim/lr_schedule.h, timm's names and defaults except
  // warmup_lr, which stays 0 so that a run without the new options trains as before).
  std::string sched = "cosine";  // cosine | step | plateau | constant
  double min_lr = 0, warmup_lr = 0;
  double decay_epochs = 90, decay_rate = 0.1;  // step, plateau
  int64_t patience_epochs = 10;                // plateau
  int64_t patience = 0;  // early stopping: stop after this many epochs without a better val top-1 (0 = off)
  // Gradient accumulation: one update per accum_steps batches, equal to one batch that many times
  // larger (the loss of each batch is weighted by its share of the group's examples).
  int64_t accum_steps = 1;
  bool model_ema = false;  // EMA of the trainable tensors, validated and kept (peft/train/model_ema.h)
  double model_ema_decay = 0.9998;
  std::string optimizer = "adamw";  // adamw | sgd (momentum 0.9)
  std::string augment = "none";     // cli.md --augment
  // timm's later stages (data/train_augment.h), seeded per example like --augment: --aa (RandAugment
  // config, "" = off), --color-jitter (0 = off; unused with --aa, as timm), --reprob/--remode/--recount.
  std::string aa;
  double color_jitter = 0;
  double reprob = 0;
  std::string remode = "pixel";
  int64_t recount = 1;
  double label_smoothing = 0.0;     // also smooths the mixup/cutmix targets (timm's --smoothing)
  // Mixup / CutMix of every training batch (data/mixup.h; seeded by seed, epoch and batch) with
  // soft-target cross-entropy. Training top-1 is not measured while mixing (timm reports only
  // the loss): metrics.jsonl's train_top1 is null and the lines show the loss alone.
  data::MixupOptions mixup;
  int64_t workers = 1;       // image decoding threads of the training loader (--workers; same result for any N)
  double layer_decay = 0;    // per-block lr scales (nn/optim/layer_decay.h, timm --layer-decay; 0 = off)
  double clip_grad = 0.0;           // global-norm clipping (0 = off)
  uint64_t seed = 0;
  std::string out_dir;        // metrics.jsonl and checkpoint.safetensors go here ("" = none)
  bool resume = false;        // continue from out_dir/checkpoint.safetensors
  // Recorded in the checkpoint; a --resume must match them (peft/train/run_settings.h: check_resume,
  // which the trainer applies too). extend: --epochs may exceed the run's (the schedule is
  // recomputed for the new total from where the run stands).
  RunSettings settings;
  bool extend = false;
  int64_t save_every = 0;     // also checkpoint every N steps inside an epoch (0 = at epoch ends only; --checkpoint-steps)
  int64_t save_every_epochs = 0;  // also write the kept weights every N epochs (adapter-epochN; --save-every)
  // Writes the weights a run keeps (an adapter, or pretrain's full weights) to a path. The
  // trainer calls it at the end with DIR/<best_name> (the best epoch by val top-1, the last
  // without val), DIR/<last_name>, and with --save-every N for every Nth epoch. Empty: the
  // trainer writes no weights (the model still ends holding the best epoch's weights).
  std::function<void(const std::string& path)> save_weights;
  std::string best_name = "adapter.safetensors", last_name = "adapter-last.safetensors";
  bool progress = true;       // progress bar on stderr (only when it is a terminal)
  // Head-only training without augmentation or dropout: run the backbone once per image and
  // train the head on cached features from the second epoch on (peft/head_cache.h). false:
  // the ordinary loop (--no-feature-cache).
  bool feature_cache = true;
  int64_t feature_cache_limit = 0;  // bytes the cached features may take (0 = default_head_cache_limit())
  // Data parallelism (issue 18, core/distributed.h): with a world of several ranks each rank
  // trains on its shard of every global batch of `batch` examples (which must divide by the
  // ranks), the gradients are summed in one allreduce per update, and only rank 0 writes files
  // and the progress. nullptr or one rank: a single process.
  dist::World* world = nullptr;
};

struct TrainResult {
  EvalResult train;  // last epoch, measured during training
  EvalResult val;    // the kept weights (the best epoch's) on the validation set; without one the last train epoch
  EvalResult last_val;    // the last epoch on the validation set
  int64_t best_epoch = 0;  // 1-based epoch the kept weights come from
  int64_t epochs_run = 0;  // epochs trained in total (fewer than asked when early stopping stopped the run)
  bool finished_before = false;  // --resume of a run that had already trained every epoch: nothing was done
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
