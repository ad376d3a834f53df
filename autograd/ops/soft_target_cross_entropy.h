// Soft-target cross-entropy: the loss of mixup/cutmix targets (timm's SoftTargetCrossEntropy).
#pragma once
#include "core/tensor.h"

namespace peft {

// logits: [B, K] float; targets: a probability row per example, [B, K] or broadcastable to it
// ([K]: one target for every row). loss = mean_b sum_k -targets[b, k] * log_softmax(logits)[b, k].
// Backward: d logits = (softmax * sum_k t - t) / B, d targets = -log_softmax / B (summed over the
// broadcast rows). Targets need not sum to 1 (the gradient keeps the sum_k t factor).
Tensor soft_target_cross_entropy(const Tensor& logits, const Tensor& targets);

}  // namespace peft
