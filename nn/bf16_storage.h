// Frozen GEMM weights stored once, in bfloat16, under --precision bf16.
//
// Under --precision bf16 every large GEMM rounds its inputs to bfloat16 (core/blas.h). A frozen
// Linear weight never changes, so keeping its float32 values as well as a bf16 copy
// (core/bf16_weights.h) holds 6 bytes per element where 2 suffice. store_frozen_weights_bf16
// replaces each such weight's data by its bfloat16 rounding (DType::bf16, in place, like
// PyTorch's `p.data = p.data.bfloat16()`): the backbone's weight memory halves against float32,
// and the GEMMs read the bf16 values directly as their B operand (core/kernels/gemm_view.h).
//
// Only weights that nothing reads elementwise are converted: a Linear's 2-d float32 weight that
// is frozen, when the Linear says so (Linear::weight_only_in_gemms; DoRA's wrapper, which takes
// row norms of W, says no). Biases, norms, embeddings, the patch projection and every trainable
// tensor stay float32, as do the optimizer state and master weights. The values the GEMMs see
// are the ones the weight cache would have produced (the same round-to-nearest-even), so
// training is unchanged bit for bit for GEMMs on the bf16 path.
#pragma once
#include <cstddef>
#include <cstdint>

#include "nn/module.h"

namespace peft::nn {

struct Bf16StorageResult {
  int64_t weights = 0;       // tensors converted
  size_t bytes_before = 0;   // their float32 bytes
  size_t bytes_after = 0;    // their bfloat16 bytes
};

// Under blas::precision() == bf16 (with a backend that has bf16 GEMMs), converts every eligible
// frozen Linear weight of `root` (children, and the fused q|k|v of openai-layout attention, which
// is no child) to bfloat16 and returns the freed float32 blocks to the system. Under f32 it does
// nothing. Call it after the method has set what trains: a weight unfrozen later would be a
// bf16 tensor the optimizer refuses (TrainError from the optimizer's dtype check).
Bf16StorageResult store_frozen_weights_bf16(Module& root);

// The same, whatever the precision setting (the caller knows the bf16 GEMM path is available).
Bf16StorageResult store_frozen_weights_bf16_now(Module& root);

}  // namespace peft::nn
