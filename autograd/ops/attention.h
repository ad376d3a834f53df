// Scaled dot-product attention as one fused op: softmax(q k^T * scale + mask) v.
#pragma once
#include "core/tensor.h"

namespace peft {

// q: [B, H, Tq, hd], k, v: [B, H, Tk, hd] (any strides with a unit last-dim stride are used
// in place, e.g. head views of a fused qkv projection); mask: additive, broadcastable to
// [B, H, Tq, Tk] (e.g. [Tq, Tk] causal with -inf), or undefined. scale <= 0 means hd^-0.5.
// Returns [B, H, Tq, hd]. Saves q, k, v for backward, and the [B, H, Tq, Tk] probabilities only
// while they are small (T <= 1.5 hd for self-attention); otherwise
// backward recomputes them head by head in cache-sized scratch (flash-attention style).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask = Tensor(), double scale = 0.0);

// The same op with every head in one oneDNN batched bfloat16 GEMM per product (float32
// accumulation; scores, mask, softmax and its backward in float32), like PyTorch's autocast bmm:
// float32 q, k, v, the oneDNN backend. Not what --precision bf16 runs: on this project's CPU
// (oneDNN 2.6, AMX) it measured 8-16% slower than the per-head GEMMs above (cache-resident
// scores; bf16 per head only above blas's 2^20 threshold) at ViT-tiny, ViT-B/16 and 577-token
// shapes (docs/performance.md "bf16: weights rounded once"); apps/bench/bench_bf16_weights.cpp
// compares the two.
Tensor scaled_dot_product_attention_bf16(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const Tensor& mask = Tensor(), double scale = 0.0);

// The attention probabilities [B, H, Tq, Tk] alone, without autograd (attention maps, labs).
Tensor attention_probs(const Tensor& q, const Tensor& k, const Tensor& mask = Tensor(), double scale = 0.0);

}  // namespace peft
