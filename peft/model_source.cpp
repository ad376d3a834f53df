// Resolving --config / --weights and the overrides into one config, and loading the weights.
#include "peft/model_source.h"
#include "peft/memory_guard.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/error.h"

namespace peft {

namespace {

std::array<float, 3> three(const std::vector<float>& v, const char* opt) {
  if (v.size() == 1) return {v[0], v[0], v[0]};
  if (v.size() != 3) throw ValueError(fmt::format("{}: expected 3 values (R,G,B) or 1, got {}", opt, v.size()));
  return {v[0], v[1], v[2]};
}

}  // namespace

ModelSource open_model(const ModelArgs& a) {
  if (a.config.empty() && a.weights.empty())
    throw ValueError("--config or --weights is required (a preset, a JSON config, or a checkpoint whose config is inferred)");
  if (a.image_size < 0) throw ValueError(fmt::format("--image-size must be positive (got {})", a.image_size));
  if (a.heads < 0) throw ValueError(fmt::format("--heads must be positive (got {})", a.heads));
  if (!a.act.empty() && a.act != "gelu" && a.act != "quick_gelu")
    throw ValueError(fmt::format("--act must be gelu or quick_gelu (got '{}')", a.act));
  ModelSource src;
  if (!a.weights.empty()) {
    nn::PretrainedOptions o;
    o.config = a.config;
    o.image_size = a.image_size;
    o.heads = a.heads;
    o.act = a.act;
    src.pretrained = nn::read_pretrained(a.weights, o);
    src.config = src.pretrained->config;
  } else {
    src.config = nn::load_vit_config(a.config);
    if (a.image_size > 0) src.config.image_size = a.image_size;
    if (a.heads > 0) src.config.heads = a.heads;
    if (!a.act.empty()) src.config.act = a.act;
    src.config.validate();
  }
  // Before any command builds the model: a config whose parameters cannot fit is refused now
  // instead of after allocating for tens of seconds (issue 20).
  check_model_memory(src.config, a.weights.empty() ? "config '" + a.config + "'" : "'" + a.weights + "'");
  data::Preprocess p = nn::effective_preprocess(src.config);
  std::vector<std::string> changed;
  if (!a.mean.empty()) p.norm.mean = three(a.mean, "--mean"), changed.push_back("--mean");
  if (!a.std.empty()) p.norm.std = three(a.std, "--std"), changed.push_back("--std");
  if (!a.interpolation.empty()) p.interpolation = a.interpolation, changed.push_back("--interpolation");
  if (a.crop_pct != 0) {
    p.crop_pct = a.crop_pct;
    p.crop_mode = "center";
    changed.push_back("--crop-pct");
  }
  if (!changed.empty()) {
    std::string list;
    for (auto& c : changed) list += (list.empty() ? "" : " ") + c;
    p.source += "; " + list;
  }
  try {
    p.validate();
  } catch (const ValueError& e) {
    throw ValueError(fmt::format("{} (options --mean --std --interpolation --crop-pct)", e.what()));
  }
  src.config.preprocess = p;
  return src;
}

std::string ModelSource::describe() const {
  if (!pretrained) return fmt::format("ViT D{} L{} H{} patch {} {} px (no weights)", config.dim, config.depth, config.heads,
                                      config.patch_size, config.image_size);
  return fmt::format("{} ({})", pretrained->describe(), std::filesystem::path(pretrained->path).filename().string());
}

void ModelSource::load_into(nn::VisionTransformer& vit, std::string* note) const {
  if (pretrained) nn::load_pretrained(vit, *pretrained, note);
}

std::string preprocess_line(const data::Preprocess& p) { return p.describe(); }

std::shared_ptr<nn::CLIP> open_clip_model(const std::string& config, const std::string& weights, uint64_t seed,
                                          data::Preprocess* preprocess, std::string* describe) {
  return nn::load_clip_model(config, weights, seed, preprocess, describe, check_clip_model_memory);
}

}  // namespace peft
