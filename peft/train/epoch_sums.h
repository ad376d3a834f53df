// Running sums of one training epoch (loss, correct predictions, examples seen): what the
// per-epoch metrics are computed from, and what a mid-epoch checkpoint must carry so that a
// resumed epoch reports the same numbers as an uninterrupted one.
#pragma once
#include <algorithm>
#include <cstdint>

#include "peft/train/evaluation.h"

namespace peft {

struct EpochSums {
  double loss_sum = 0;  // sum over examples of the per-example loss (batch mean x batch size)
  int64_t correct = 0;
  int64_t seen = 0;

  void add(double batch_loss, int64_t batch_correct, int64_t batch_size) {
    loss_sum += batch_loss * static_cast<double>(batch_size);
    correct += batch_correct;
    seen += batch_size;
  }
  double loss() const { return loss_sum / static_cast<double>(seen); }
  double top1() const { return 100.0 * static_cast<double>(correct) / static_cast<double>(seen); }
  EvalResult result(double seconds) const {
    return {top1(), loss(), static_cast<double>(seen) / std::max(seconds, 1e-9), seen};
  }
};

}  // namespace peft
