// Where a command's ViT comes from: --config and/or --weights (any naming scheme, nn/pretrained.h),
// the overrides a user can give (--image-size, --heads, --act) and the preprocessing overrides
// (--mean, --std, --interpolation, --crop-pct), resolved in one place for every command.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/preprocess.h"
#include "nn/clip.h"
#include "nn/config.h"
#include "nn/pretrained.h"
#include "nn/vit.h"

namespace peft {

struct ModelArgs {
  std::string config;   // preset or JSON; optional when weights are given
  std::string weights;  // safetensors in any supported naming
  int64_t image_size = 0, heads = 0;
  std::string act;
  std::vector<float> mean, std;  // 3 values each when given
  std::string interpolation;
  double crop_pct = 0;
};

struct ModelSource {
  nn::ViTConfig config;                   // preprocess resolved (never size 0)
  std::optional<nn::Pretrained> pretrained;  // when weights were given
  // "timm ViT D768 L12 H12 patch 16 224 px, 1000 classes (model.safetensors)"
  std::string describe() const;
  // Loads the weights (when any) into a model built from `config` (or one with another head).
  void load_into(nn::VisionTransformer& vit, std::string* note = nullptr) const;
};

// Throws ValueError naming the option when neither --config nor --weights is given, or an
// override is out of range (crop_pct outside (0, 1], a std <= 0, ...).
ModelSource open_model(const ModelArgs& a);

// A whole CLIP for the CLIP commands (nn::load_clip_model: preset, JSON or any CLIP checkpoint)
// behind the memory guard: a config whose parameters cannot fit is refused in one line before
// any tensor is allocated (issue 20).
std::shared_ptr<nn::CLIP> open_clip_model(const std::string& config, const std::string& weights, uint64_t seed,
                                          data::Preprocess* preprocess = nullptr, std::string* describe = nullptr);

// The preprocessing as JSON for summary.json and run headers.
std::string preprocess_line(const data::Preprocess& p);

}  // namespace peft
