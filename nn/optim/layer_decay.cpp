// Layer ids from tensor names (timm's ViT group_matcher) and the per-tensor lr scales.
#include "nn/optim/layer_decay.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"

namespace peft::nn {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// The block number after `prefix` ("blocks.3.attn..." -> 3), or -1.
int64_t block_after(const std::string& name, const std::string& prefix) {
  if (!starts_with(name, prefix)) return -1;
  size_t i = prefix.size(), j = i;
  while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
  if (j == i || (j < name.size() && name[j] != '.')) return -1;
  return std::stoll(name.substr(i, j - i));
}

}  // namespace

int64_t layer_id(const std::string& name, int64_t num_blocks) {
  for (const char* stem : {"cls_token", "pos_embed", "patch_embed", "reg_token", "class_embedding",
                           "positional_embedding", "conv1."})
    if (starts_with(name, stem)) return 0;
  for (const char* blocks : {"blocks.", "transformer.resblocks."}) {
    const int64_t b = block_after(name, blocks);
    if (b >= 0 && b < num_blocks) return b + 1;
  }
  return num_blocks + 1;
}

void apply_layer_decay(std::vector<ParamSpec>& specs, int64_t num_blocks, double decay) {
  if (!(decay > 0 && decay <= 1))
    throw ValueError(fmt::format("--layer-decay: must be in (0, 1] (got {}); timm fine-tunes ViT-B with 0.65-0.75",
                                 decay));
  for (ParamSpec& s : specs)
    s.lr_scale = std::pow(decay, static_cast<double>(num_blocks + 1 - layer_id(s.name, num_blocks)));
}

}  // namespace peft::nn
