// Layer-wise learning-rate decay (timm's param_groups_layer_decay) for a VisionTransformer's tensors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/optim/optimizer.h"

namespace peft::nn {

// The layer of a tensor, as timm's VisionTransformer.group_matcher numbers them: 0 for the stem
// (cls_token, pos_embed, patch_embed, reg_token, and the OpenAI layout's class_embedding,
// positional_embedding, conv1), i + 1 for blocks.i (transformer.resblocks.i), and num_blocks + 1
// for everything else: the final norm, the head, and tensors a method adds outside the blocks
// (prompts, prefix tokens). Tensors a method adds inside block i (low-rank factors, adapters) are
// block i's.
int64_t layer_id(const std::string& name, int64_t num_blocks);

// Sets each spec's lr_scale to decay^(num_blocks + 1 - layer_id): the head and final norm keep
// the full learning rate, each block down the stack gets decay times less, the stem least. The
// weight decay of the specs (none for 1-d tensors and no_weight_decay names) is unchanged.
// Throws ValueError naming --layer-decay unless 0 < decay <= 1.
void apply_layer_decay(std::vector<ParamSpec>& specs, int64_t num_blocks, double decay);

}  // namespace peft::nn
