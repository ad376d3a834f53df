// Where the training loop's batches and logits come from: the data loader (augmentation,
// shuffling, parallel decoding, mixup/cutmix), or, for a head trained on a frozen backbone, the
// feature caches (peft/head_cache.h) once they are full. The loop sees one interface either way.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/mixup.h"
#include "nn/vit.h"
#include "peft/train/evaluation.h"

namespace peft {

struct TrainConfig;

// The whole training augmentation of a config: its --augment list and the later stages (--aa,
// --color-jitter, --reprob, --remode, --recount).
data::Augment train_augment(const TrainConfig& cfg);

// The model's own preprocessing (nn::effective_preprocess): its normalisation, and with rrc a
// random resized crop of the original image resized with its interpolation. shard/shards: this
// rank's part of every batch; workers: its decoding threads (data::LoaderOptions).
data::DataLoader make_loader(const data::DatasetPtr& ds, int64_t batch, bool shuffle, uint64_t seed,
                             const data::Augment& aug, const data::Preprocess& pre, int64_t shard = 0,
                             int64_t shards = 1, int64_t workers = 1);

class BatchSource {
 public:
  BatchSource(nn::VisionTransformer& model, data::DatasetPtr train, data::DatasetPtr val, const TrainConfig& cfg);
  ~BatchSource();

  int64_t batches_per_epoch() const { return nb_; }
  bool feature_cache() const { return train_cache_ != nullptr; }
  // Images the backbone has encoded into the caches (train + val).
  int64_t encoded() const;

  // Begins `epoch` at batch `first`. Once every training image is cached, an epoch needs only
  // the order of its examples and their labels: the loader builds no images. Until then (the
  // first epoch, and the epoch after a resume that began mid-epoch) the loader runs and the
  // cache fills from its batches.
  void start_epoch(int64_t epoch, int64_t first);
  // With --mixup/--cutmix the batch's images are mixed and out.targets holds its soft targets
  // (data/mixup.h, seeded by (seed, rank, epoch, batch); a data-parallel rank mixes its own
  // shard, as each timm process mixes its local batch).
  bool next(data::Batch& out);
  // The training logits of a batch from next() (autograd on; the backbone skipped when cached).
  Tensor logits(nn::VisionTransformer& model, const data::Batch& b);
  // For the progress bar: which of the three ways this epoch runs.
  const char* note() const;
  // The validation set's result (on its cache when there is one); an empty result without --val.
  EvalResult evaluate_val(nn::VisionTransformer& model, int64_t batch);

 private:
  data::DatasetPtr train_, val_;
  int64_t batch_;
  dist::World* world_;  // nullptr unless data parallel
  data::DataLoader loader_;
  int64_t nb_;
  std::unique_ptr<HeadFeatureCache> train_cache_, val_cache_;
  std::vector<int64_t> train_labels_, val_labels_;
  bool from_cache_ = false;
  int64_t epoch_ = 0, step_ = 0;
  data::MixupOptions mixup_;
  uint64_t mix_seed_ = 0;
  int64_t num_classes_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace peft
