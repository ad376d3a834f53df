// The per-method attach functions behind apply_method (one file each). Each one runs on a model
// whose tensors are all frozen, registers its own tensors (trainable, initialised as methods.md
// says) under the interop.md names, and unfreezes what it trains among the base tensors.
#pragma once
#include <string>
#include <vector>

#include "core/random.h"
#include "nn/vit.h"

namespace peft::methods {

// methods.md 6: every base tensor whose name ends in ".bias" (openai layout: plus attn.in_proj_bias).
void attach_bitfit(nn::VisionTransformer& vit);

// methods.md 7, 8: vpt.prompts [1, M, D] (shallow) or [L, M, D] (deep), U(-v, v) with
// v = sqrt(6 / (3 P^2 + D)).
void attach_vpt(nn::VisionTransformer& vit, int64_t prompts, bool deep, double prompt_dropout, Generator& gen);

// methods.md 9: cvpt.prompts [L, M, D], xavier-uniform bound sqrt(6 / ((M + L) D)).
void attach_cvpt(nn::VisionTransformer& vit, int64_t prompts, double prompt_dropout, Generator& gen);

// methods.md 10: ssf_scale ~ N(1, .02^2), ssf_shift ~ N(0, .02^2) on the 6L+2 ops.
void attach_ssf(nn::VisionTransformer& vit, Generator& gen);

// methods.md 11: lora_A [r, in] kaiming-uniform(a=sqrt 5), lora_B [out, r] zeros on each linear
// named in `linears` (full names from lora_target_names), scale alpha / r.
void attach_lora(nn::VisionTransformer& vit, const std::vector<std::string>& linears, int64_t rank, double alpha,
                 Generator& gen);

// methods.md 12: blocks.{i}.adaptmlp.{down_proj,up_proj}; down kaiming-uniform, rest zeros;
// dropout 0.1 on the ReLU output in training.
void attach_adaptformer(nn::VisionTransformer& vit, int64_t bottleneck, Generator& gen);

}  // namespace peft::methods
