// Cached backbone features for training only the classification head (a linear probe).
//
// When every trainable tensor lies in the head and nothing random runs before it (no
// augmentation, no dropout or drop-path), the backbone maps each image to the same pooled
// feature vector in every epoch. The trainer then runs the backbone once per image, without an
// autograd graph, keeps the head's inputs [N, F] in memory, and from the second epoch on trains
// the head on them alone: same batches, same order, same optimizer steps, so the result equals
// the ordinary loop up to float rounding.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"
#include "data/transforms.h"
#include "nn/vit.h"

namespace peft {

// Features of the images of one dataset, filled as the images come by.
class HeadFeatureCache {
 public:
  HeadFeatureCache(int64_t num_examples, int64_t feature_dim);

  int64_t size() const { return n_; }
  int64_t feature_dim() const { return dim_; }
  bool complete() const { return filled_ == n_; }
  // Images the backbone has encoded into this cache so far (each example at most once).
  int64_t encoded() const { return filled_; }

  // Head inputs [B, F] for dataset examples `indices`, whose images are the rows of `images`
  // [B, C, S, S]: cached rows are copied, the others go through model.forward_features (no
  // autograd) and are stored. The model's train/eval mode is left as it is: the caller has made
  // sure nothing random runs in the backbone, so both modes give the same features.
  Tensor features(nn::VisionTransformer& model, const std::vector<int64_t>& indices, const Tensor& images);
  // The same when every example is cached already (no images needed); StateError otherwise.
  Tensor gather(const std::vector<int64_t>& indices) const;

 private:
  int64_t n_, dim_, filled_ = 0;
  Tensor store_;            // [N, F] float32
  std::vector<char> have_;  // have_[i]: row i of store_ holds example i's features
};

// Bytes the train (+ val) feature caches hold: (n_train + n_val) * F * 4.
int64_t head_cache_bytes(int64_t n_train, int64_t n_val, int64_t feature_dim);

// The most the caches may take by default: 4 GiB, and at most a quarter of the memory the process
// can still take (when that is known).
int64_t default_head_cache_limit();

// Whether the trainer trains on cached features, and if not, why (one short clause).
struct HeadCachePlan {
  bool on = false;
  std::string why_not;  // empty when on
  int64_t bytes = 0;    // what the caches will hold
};

// Decides for training `model` on `train` (+ `val`, may be null) with this --augment list.
// wanted = false (--no-feature-cache) turns it off; limit_bytes <= 0 means default_head_cache_limit().
HeadCachePlan plan_head_cache(const nn::VisionTransformer& model, const data::DatasetPtr& train,
                              const data::DatasetPtr& val, const std::string& augment, bool wanted,
                              int64_t limit_bytes = 0);
// Same, with the whole augmentation (--augment and the later stages: --aa, --color-jitter, --reprob).
HeadCachePlan plan_head_cache(const nn::VisionTransformer& model, const data::DatasetPtr& train,
                              const data::DatasetPtr& val, const data::Augment& augment, bool wanted,
                              int64_t limit_bytes = 0);

}  // namespace peft
