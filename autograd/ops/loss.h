// Losses: cross-entropy on integer labels (fused log_softmax + NLL).
#pragma once
#include "core/tensor.h"

namespace peft {

// logits: [B, K] float, labels: [B] int64 in [0, K) (ValueError naming the bad label otherwise).
// Mean over the batch; label_smoothing s mixes the one-hot target with s/K uniform (as PyTorch).
// Backward is (softmax - target) / B.
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, double label_smoothing = 0.0);

}  // namespace peft
