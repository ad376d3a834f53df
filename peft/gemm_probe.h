// The sgemm rate on a ViT's block-linear GEMM shapes, exactly the calls nn::Linear makes (through
// blas::gemm), so that `peft bench` can read the whole step's arithmetic rate against what the
// machine's GEMM reaches on the same shapes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/random.h"
#include "nn/config.h"

namespace peft {

struct GemmRate {
  std::string name;  // attn.qkv, attn.proj, mlp.fc1, mlp.fc2; " dX" / " dW" for the backward GEMMs
  int64_t M, N, K;
  double gflops;
  double seconds;  // median seconds per call
};

// Times the block linears' GEMMs as a step runs them (rows = batch x tokens): the forward
// C = X W^T (NT) always; the data gradient dX = dY W (NN) when gradients flow through the
// backbone, and the weight gradient dW = dY^T X (TN) when the weights train. Each shape is timed
// alone: the median over enough repetitions to fill ~0.2 s (3 to 50), after one warm-up call.
std::vector<GemmRate> probe_gemm(const nn::ViTConfig& c, int64_t rows, bool data_grad, bool weight_grad,
                                 Generator& gen);

// FLOP-weighted rate of one call of each shape, as one block runs them.
double flop_weighted_gflops(const std::vector<GemmRate>& rates);

}  // namespace peft
