// The data-parallel part of a training step (issue 18): the trainable tensors' gradients summed
// over the ranks in one flat buffer, one allreduce per update, so that every rank applies the
// same optimizer step and the weights stay identical. Only these tensors travel: for a PEFT
// method 0.03-2% of the model. The statistics of the update's batches (loss, correct, size: 3
// numbers each) ride in the same buffer, so an update costs one collective call, not two.
#pragma once
#include <cstdint>
#include <vector>

#include "core/distributed.h"
#include "core/random.h"
#include "nn/optim/optimizer.h"

namespace peft {

// One global batch's statistics: its mean loss (NaN when a rank's loss was), correct
// predictions and size, the same on every rank.
struct GlobalBatchStats {
  double mean_loss = 0;
  int64_t correct = 0, n = 0;
};

class GradSync {
 public:
  GradSync(dist::World& world, const std::vector<nn::ParamSpec>& groups);

  // Bytes each rank sends into the allreduce per update of one batch (the printed traffic per
  // step): the gradients, a flag per tensor and the batch's 3 statistics.
  int64_t bytes_per_update() const { return static_cast<int64_t>((grads_ + 3) * sizeof(float)); }
  // This rank's shard of a batch of the coming update: its mean loss over its n examples
  // (ignored when n is 0) and its correct predictions. Every rank adds as many batches per update.
  void add_batch(double mean_loss, int64_t correct, int64_t n);
  // Replaces each gradient by its sum over the ranks and returns the global statistics of the
  // batches added since the last call, in order. A tensor without a gradient on a rank (its
  // shard was empty) counts as zeros there, and stays without one only when no rank has one, as
  // in a single process. Each rank must have scaled its loss by its share of the global batch:
  // the sum is then the gradient of the global batch's mean loss. The statistics are summed in
  // float, as the gradients (about 7 significant digits of the loss).
  std::vector<GlobalBatchStats> allreduce(const std::vector<nn::ParamSpec>& groups);

 private:
  dist::World& world_;
  size_t grads_ = 0;          // gradient values and one "has a gradient" flag per tensor
  std::vector<float> buf_;    // the gradients, the flags, then 3 numbers per pending batch
  std::vector<float> stats_;  // the pending batches' loss sum, correct, n
};

// Gives each rank its own dropout / drop-path stream, as PyTorch DDP does (timm seeds each rank
// with seed + rank): rank 0 keeps the stream a single process draws, rank r > 0 continues from a
// state derived from it and r. Otherwise every rank would draw the same masks for its shard's
// rows. So a data-parallel run of a model with dropout is not the single-process run (without
// dropout it is, to the summation order); after --resume the other ranks derive their streams
// from rank 0's saved one.
void own_rank_stream(Generator& drop_gen, int rank);

}  // namespace peft
