// The analytic FLOP count of the PyTorch peer ../bench/torch_vit_bench.py (fwd_flops_per_image,
// train_flops_per_image), copied line by line so that `peft bench` and the script report GFLOP/s
// of the same count. It is the script's formula, not a model of our kernels: 2 FLOPs per
// multiply-add, matmuls, convolutions and attention only, its own backward rules per mode.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "nn/config.h"

namespace peft {

// torch_vit_bench.py's mode names are accepted by `peft bench` too (a descriptor's script_alias:
// "vpt" there is VPT-deep); any other name is returned as it is.
std::string method_from_script_mode(const std::string& mode_or_method);

// The script mode whose rule `method` is counted with (MethodDescriptor::script_flops_mode): the
// script's own modes (full, linear, vpt = vpt-deep, ssf, lora, cvpt) and three methods it lacks
// that have followed its nearest rule since `peft bench` existed (vpt-shallow as "vpt", bitfit as
// "ssf", adaptformer as "ssf" plus its projections as an extra term, mode "adaptformer"). nullopt:
// the script has no formula for the method, and none is invented here (the bench reports the
// FLOPs its GEMMs counted instead).
std::optional<std::string> script_flops_mode(const std::string& method);

// Forward FLOPs per image by term (the script's dict). batch matters only for CVPT's prompt k/v
// projection, which runs once per batch and is amortised over it.
struct ScriptFwdFlops {
  double pe = 0, lin = 0, att = 0, head = 0, lora = 0, extra_lin = 0, extra_att = 0, adapter = 0;
  double sum() const { return pe + lin + att + head + lora + extra_lin + extra_att + adapter; }
};

// The model shape and method settings the formula reads. lora_rank: the script's LORA_RANK (8);
// bottleneck: adaptformer's only.
struct ScriptFlopsInput {
  nn::ViTConfig config;
  int64_t batch = 1;
  std::string mode;  // a script_flops_mode
  int64_t prompts = 0;  // M: 0 for methods without prompts
  int64_t lora_rank = 8;
  int64_t bottleneck = 64;
};

ScriptFwdFlops script_fwd_flops_per_image(const ScriptFlopsInput& in);
// Forward + backward: data-grad GEMMs when anything trainable lies upstream, weight-grad GEMMs
// for full and LoRA's factors (and adaptformer's), attention backward = 2x forward; a linear
// probe (or a prompt mode with M = 0) counts the forward and the head's backward only.
double script_train_flops_per_image(const ScriptFlopsInput& in);

}  // namespace peft
