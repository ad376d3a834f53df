// Evaluation passes: top-1 and mean loss of a model over a dataset, the plain way (every image
// through the whole model) or on cached backbone features (peft/head_cache.h).
#pragma once
#include <cstdint>
#include <vector>

#include "data/dataset.h"
#include "nn/vit.h"

namespace peft::dist {
class World;
}

namespace peft {

class HeadFeatureCache;

struct EvalResult {
  double top1 = 0;  // percent
  double loss = 0;
  double images_per_s = 0;
  int64_t n = 0;
};

// Correct top-1 predictions of a batch of logits [B, K] against labels [B].
int64_t count_correct(const Tensor& logits, const Tensor& labels);

// With a distributed world each rank evaluates its shard of every batch and the sums are
// reduced: every rank gets the result of the whole dataset.
EvalResult evaluate(nn::VisionTransformer& model, const data::DatasetPtr& ds, int64_t batch,
                    dist::World* world = nullptr);

// evaluate() for a frozen backbone: the head on cached features. The first call encodes the
// images (in the batches evaluate() uses); later calls only run the head.
EvalResult evaluate_cached(nn::VisionTransformer& model, const data::DatasetPtr& ds, int64_t batch,
                           HeadFeatureCache& cache, const std::vector<int64_t>& labels);

}  // namespace peft
