// bfloat16 copies of weights for the GEMMs of --precision bf16, made once per weight value.
//
// Under --precision bf16 a GEMM multiplies bfloat16 inputs (core/blas.h). Activations change on
// every call and are rounded there; a weight does not, yet without this cache it would be rounded
// again by every GEMM that reads it (forward x W^T and backward dY W, every step, every block).
// weight_copy(w) rounds w once and hands the same copy out until w changes: an entry is keyed by
// the weight's storage, offset and shape, and is valid only while that storage is alive
// (weak_ptr: a freed and reused address never matches) and its version is the one it was
// rounded at (every in-place write -- copy_, fill_, the optimizer's update, a LoRA merge --
// bumps the version). A frozen weight is therefore rounded once per run; a trainable one once
// per optimizer step (its forward and backward GEMMs share the copy, as PyTorch autocast's
// weight cast cache does). The float32 weight stays what the model holds (checkpoints,
// gradients, the optimizer and every float32 op read it), so the copy adds half the weight's
// bytes; float32 precision never calls into this (the default stays exact).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace peft::bf16 {

using WeightCopy = std::shared_ptr<const std::vector<uint16_t>>;

// w rounded to bfloat16 (round to nearest even, core/bf16.h), same row-major layout as w; null
// when the bf16 GEMM path does not apply: precision f32, a backend without bf16, w not a
// contiguous float32 leaf (a computed weight, e.g. DoRA's, changes every call), or w empty.
// Thread-safe; keep the returned pointer for as long as the GEMM reads it.
WeightCopy weight_copy(const Tensor& w);

struct WeightCacheStats {
  size_t entries = 0;  // copies held (entries of dead storages are dropped on the next miss)
  size_t bytes = 0;    // their bfloat16 bytes
  uint64_t hits = 0, misses = 0;  // since the start (or the last clear)
};
WeightCacheStats weight_cache_stats();
void clear_weight_cache();  // drops every copy (tests; a program that switches precision)

}  // namespace peft::bf16
