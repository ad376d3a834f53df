// The data-parallel part of a training step (issue 18): the trainable tensors' gradients summed
// over the ranks in one flat buffer, one allreduce per update, so that every rank applies the
// same optimizer step and the weights stay identical. Only these tensors travel: for a PEFT
// method 0.03-2% of the model.
#pragma once
#include <cstdint>
#include <vector>

#include "core/distributed.h"
#include "nn/optim/optimizer.h"

namespace peft {

class GradSync {
 public:
  GradSync(dist::World& world, const std::vector<nn::ParamSpec>& groups);

  // Bytes each rank sends into the allreduce per update (the printed traffic per step).
  int64_t bytes_per_update() const { return static_cast<int64_t>(buf_.size() * sizeof(float)); }
  // Replaces each gradient by its sum over the ranks. A tensor without a gradient on a rank
  // (its shard was empty) counts as zeros there, and stays without one only when no rank has
  // one, as in a single process. Each rank must have scaled its loss by its share of the
  // global batch: the sum is then the gradient of the global batch's mean loss.
  void allreduce(const std::vector<nn::ParamSpec>& groups);

 private:
  dist::World& world_;
  std::vector<float> buf_;  // every gradient, then one "has a gradient" flag per tensor
};

// The statistics of one global batch from this rank's shard: its mean loss (over the shard's n
// examples; ignored when n is 0) and correct predictions become the global batch's mean loss,
// correct count and size, identical on every rank.
void reduce_batch_stats(dist::World& world, double& mean_loss, int64_t& correct, int64_t& n);

}  // namespace peft
