// Tip-Adapter's cache logits (methods.md "Tip-Adapter") as one op, forward and backward side by side:
//
//   A   = f keys^T                      [B, NK]   affinity of each image with each cached key
//   W   = exp(-(beta - beta * A))       [B, NK]   the official expression, term for term
//   out = W onehot(labels)              [B, K]    out[b, k] = sum of W[b, n] over keys of class k
//
// Composed from matmul/add/mul/exp/matmul it costs four [B, NK] temporaries, their backward
// nodes and a GEMM against a one-hot matrix; fused, it is one GEMM, one pass that takes the
// exponential and sums it by label, and in backward one pass and the key (or feature) GEMM.
// Tip-Adapter-F trains `keys`: a cached epoch runs ~2x faster (docs/performance.md).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace peft {

// f: [B, E], keys: [NK, E] (same float dtype), labels: int64 [NK] with values in [0, K).
// Gradients flow to f and keys where they need one; only what those gradients read is saved
// (W always; f for d keys, keys for d f).
Tensor tip_cache_logits(const Tensor& f, const Tensor& keys, const Tensor& labels, int64_t K, double beta);

}  // namespace peft
