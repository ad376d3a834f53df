// Config parsing, validation and presets.
#include "nn/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <type_traits>

#include "core/error.h"
#include "core/small_file.h"
#include "nn/clip.h"

namespace peft::nn {

void ViTConfig::validate() const {
  auto bad = [](const std::string& what) { throw ValueError("config: " + what); };
  if (arch != "vit") bad(fmt::format("arch '{}' is not a ViT (expected \"vit\")", arch));
  if (style != "timm" && style != "openai_clip_visual") bad(fmt::format("unknown style '{}' (timm | openai_clip_visual)", style));
  if (image_size <= 0 || patch_size <= 0 || image_size % patch_size != 0)
    bad(fmt::format("patch_size {} must divide image_size {}", patch_size, image_size));
  if (in_chans <= 0) bad(fmt::format("in_chans must be positive, got {}", in_chans));
  // Far beyond any real model, and small enough that sizes and products of sizes (tokens x dim,
  // dim x mlp_ratio) cannot overflow int64 (found by tests/fuzz/fuzz_config).
  constexpr int64_t kMax = int64_t{1} << 20;
  if (image_size > kMax || in_chans > kMax || dim > kMax || depth > kMax || num_classes > kMax || embed_dim > kMax)
    bad(fmt::format("a size is too large (image_size {}, in_chans {}, dim {}, depth {}, num_classes {}, embed_dim {}; "
                    "expected <= {})", image_size, in_chans, dim, depth, num_classes, embed_dim, kMax));
  if (!(mlp_ratio <= 1024)) bad(fmt::format("mlp_ratio must be <= 1024, got {}", mlp_ratio));
  if (dim <= 0 || heads <= 0 || dim % heads != 0) bad(fmt::format("heads {} must divide dim {}", heads, dim));
  if (depth <= 0) bad(fmt::format("depth must be positive, got {}", depth));
  if (mlp_ratio <= 0) bad(fmt::format("mlp_ratio must be positive, got {}", mlp_ratio));
  if (num_classes < 0) bad(fmt::format("num_classes must be >= 0, got {}", num_classes));
  if (act != "gelu" && act != "quick_gelu") bad(fmt::format("unknown act '{}' (gelu | quick_gelu)", act));
  if (pool != "cls" && pool != "mean") bad(fmt::format("unknown pool '{}' (cls | mean)", pool));
  if (style == "openai_clip_visual" && pool != "cls") bad("openai_clip_visual supports only pool \"cls\"");
  if (style == "openai_clip_visual" && (!class_token || reg_tokens || no_embed_class || norm_pre || layer_scale || fc_norm || !qkv_bias))
    bad("the timm variants (class_token, reg_tokens, no_embed_class, norm_pre, layer_scale, fc_norm, qkv_bias) "
        "are for style \"timm\" only");
  if (!class_token && pool == "cls") bad("class_token false needs pool \"mean\" (there is no class token to pool)");
  if (reg_tokens < 0 || reg_tokens > 1024) bad(fmt::format("reg_tokens must be in [0, 1024], got {}", reg_tokens));
  if (!(ln_eps > 0)) bad(fmt::format("ln_eps must be positive, got {}", ln_eps));
  if (drop_path < 0 || drop_path >= 1 || dropout < 0 || dropout >= 1) bad("drop_path and dropout must be in [0, 1)");
  if (!class_names.empty() && static_cast<int64_t>(class_names.size()) != num_classes)
    bad(fmt::format("class_names has {} names for {} classes", class_names.size(), num_classes));
}

namespace {
std::array<float, 3> three_floats(const nlohmann::json& v, const std::string& what) {
  if (!v.is_array() || v.size() != 3) throw ValueError(fmt::format("{}: expected 3 numbers", what));
  std::array<float, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    if (!v[i].is_number()) throw ValueError(fmt::format("{}: expected 3 numbers", what));
    out[i] = v[i].get<float>();
  }
  return out;
}
}  // namespace

data::Preprocess preprocess_from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw ValueError(fmt::format("{}: expected an object", source));
  data::Preprocess p;
  try {
    for (auto& [k, v] : j.items()) {
      if (k == "size") p.size = v.get<int64_t>();
      else if (k == "interpolation") p.interpolation = v.get<std::string>();
      else if (k == "crop_pct") p.crop_pct = v.get<double>();
      else if (k == "crop_mode") p.crop_mode = v.get<std::string>();
      else if (k == "mean") p.norm.mean = three_floats(v, source + ": mean");
      else if (k == "std") p.norm.std = three_floats(v, source + ": std");
      else if (k == "source") p.source = v.get<std::string>();
      else throw ValueError(fmt::format("{}: unknown key '{}'", source, k));
    }
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(fmt::format("{}: wrong value type ({})", source, e.what()));
  }
  return p;
}

nlohmann::json preprocess_to_json(const data::Preprocess& p) {
  return {{"size", p.size},   {"interpolation", p.interpolation},
          {"crop_pct", p.crop_pct}, {"crop_mode", p.crop_mode},
          {"mean", p.norm.mean}, {"std", p.norm.std}, {"source", p.source}};
}

ViTConfig vit_config_from_json(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, nullptr, true, /*ignore_comments=*/true);
  } catch (const std::exception& e) {
    throw IOError(fmt::format("{}: invalid JSON ({})", source, e.what()));
  }
  if (!j.is_object()) throw IOError(fmt::format("{}: expected a JSON object", source));
  ViTConfig c;
  static const std::set<std::string> known = {"arch", "style", "image_size", "patch_size", "in_chans", "dim", "depth",
                                              "heads", "mlp_ratio", "num_classes", "act", "ln_eps", "pool",
                                              "embed_dim", "drop_path", "dropout", "class_token", "reg_tokens",
                                              "no_embed_class", "norm_pre", "layer_scale", "fc_norm", "qkv_bias",
                                              "preprocess", "class_names"};
  for (auto& [k, v] : j.items())
    if (!known.count(k)) throw ValueError(fmt::format("{}: unknown key '{}'", source, k));
  try {
    auto get = [&](const char* k, auto& field) {
      using F = std::decay_t<decltype(field)>;
      if (!j.contains(k)) return;
      // An integer field given as a float (1e70) would overflow the conversion (UB, found by
      // tests/fuzz/fuzz_config): only whole numbers that fit are accepted.
      if constexpr (std::is_integral_v<F>) {
        if (j[k].is_number_float()) {
          const double v = j[k].get<double>();
          if (!(v == std::floor(v) && std::fabs(v) < 9.0e15))
            throw ValueError(fmt::format("{}: '{}' must be an integer (got {})", source, k, j[k].dump()));
          field = static_cast<F>(v);
          return;
        }
      }
      field = j[k].get<F>();
    };
    get("arch", c.arch);
    get("style", c.style);
    get("image_size", c.image_size);
    get("patch_size", c.patch_size);
    get("in_chans", c.in_chans);
    get("dim", c.dim);
    get("depth", c.depth);
    get("heads", c.heads);
    get("mlp_ratio", c.mlp_ratio);
    get("num_classes", c.num_classes);
    get("act", c.act);
    get("ln_eps", c.ln_eps);
    get("pool", c.pool);
    get("embed_dim", c.embed_dim);
    get("drop_path", c.drop_path);
    get("dropout", c.dropout);
    get("class_token", c.class_token);
    get("reg_tokens", c.reg_tokens);
    get("no_embed_class", c.no_embed_class);
    get("norm_pre", c.norm_pre);
    get("layer_scale", c.layer_scale);
    get("fc_norm", c.fc_norm);
    get("qkv_bias", c.qkv_bias);
    get("class_names", c.class_names);
    if (j.contains("preprocess")) {
      c.preprocess = preprocess_from_json(j["preprocess"], source + ": preprocess");
      c.preprocess.size = c.image_size;  // the model's input size decides; the key is informative
    }
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(fmt::format("{}: wrong value type ({})", source, e.what()));
  }
  try {
    c.validate();
  } catch (const ValueError& e) {
    throw ValueError(fmt::format("{}: {}", source, e.what()));
  }
  return c;
}

std::string vit_config_to_json(const ViTConfig& c) {
  nlohmann::json j = {{"arch", c.arch},         {"style", c.style},   {"image_size", c.image_size},
                      {"patch_size", c.patch_size}, {"in_chans", c.in_chans}, {"dim", c.dim},
                      {"depth", c.depth},       {"heads", c.heads},   {"mlp_ratio", c.mlp_ratio},
                      {"num_classes", c.num_classes}, {"act", c.act}, {"ln_eps", c.ln_eps},
                      {"pool", c.pool}};
  if (c.embed_dim > 0) j["embed_dim"] = c.embed_dim;
  if (c.drop_path > 0) j["drop_path"] = c.drop_path;
  if (c.dropout > 0) j["dropout"] = c.dropout;
  // The variants are written only when they differ from methods.md "timm ViT", so plain configs stay as before.
  if (!c.class_token) j["class_token"] = false;
  if (c.reg_tokens) j["reg_tokens"] = c.reg_tokens;
  if (c.no_embed_class) j["no_embed_class"] = true;
  if (c.norm_pre) j["norm_pre"] = true;
  if (c.layer_scale) j["layer_scale"] = true;
  if (c.fc_norm) j["fc_norm"] = true;
  if (!c.qkv_bias) j["qkv_bias"] = false;
  if (c.preprocess.size > 0) j["preprocess"] = preprocess_to_json(c.preprocess);
  if (!c.class_names.empty()) j["class_names"] = c.class_names;
  return j.dump(2);
}

namespace {
std::map<std::string, ViTConfig> presets() {
  std::map<std::string, ViTConfig> p;
  ViTConfig micro;  // the demo/test size: trains in seconds on 2 cores
  micro.image_size = 32; micro.patch_size = 4; micro.dim = 64; micro.depth = 4; micro.heads = 4; micro.num_classes = 10;
  p["vit-micro"] = micro;
  ViTConfig tiny;  // timm vit_tiny_patch16_224
  tiny.image_size = 224; tiny.patch_size = 16; tiny.dim = 192; tiny.depth = 12; tiny.heads = 3; tiny.num_classes = 1000;
  p["vit-tiny"] = tiny;
  ViTConfig small = tiny;
  small.dim = 384; small.heads = 6;
  p["vit-small"] = small;
  ViTConfig base = tiny;
  base.dim = 768; base.heads = 12;
  p["vit-base"] = base;
  ViTConfig bt;  // `peft bench --config tiny` (torch_vit_bench.py)
  bt.image_size = 32; bt.patch_size = 4; bt.dim = 192; bt.depth = 12; bt.heads = 3; bt.num_classes = 10;
  p["bench-tiny"] = bt;
  ViTConfig bb = base;  // `peft bench --config base`
  p["bench-base"] = bb;
  return p;
}
}  // namespace

data::Preprocess effective_preprocess(const ViTConfig& c) {
  data::Preprocess p = c.preprocess;
  if (p.size == 0) {
    p = data::Preprocess{};
    p.norm = c.style == "openai_clip_visual" ? data::clip_normalization() : data::imagenet_normalization();
    p.source = fmt::format("default for a {} model", c.style);
  }
  p.size = c.image_size;
  return p;
}

std::vector<std::string> vit_preset_names() {
  std::vector<std::string> n;
  for (auto& [k, _] : presets()) n.push_back(k);
  return n;
}

ViTConfig load_vit_config(const std::string& name) {
  auto p = presets();
  if (auto it = p.find(name); it != p.end()) return it->second;
  // A CLIP preset or config where a ViT is wanted: its visual tower (openai_clip_visual, no head),
  // which the vision methods adapt with a fresh head.
  if (is_clip_config(name)) {
    ViTConfig v = load_clip_config(name).vision;
    v.num_classes = 0;
    return v;
  }
  if (!std::filesystem::exists(name))
    throw IOError(fmt::format("config '{}': neither a preset ({}) nor an existing file", name,
                              fmt::format("{}", fmt::join(vit_preset_names(), ", "))));
  // Bounded and regular files only: `--config /dev/zero` read forever, a FIFO hung (issue 20).
  return vit_config_from_json(read_small_file(name, "config", kMaxConfigBytes), name);
}

}  // namespace peft::nn
