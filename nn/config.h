// Model configs: the JSON of interop.md and the built-in presets (`peft presets`).
#pragma once
#include <string>
#include <nlohmann/json_fwd.hpp>
#include <vector>

#include "data/preprocess.h"

namespace peft::nn {

struct ViTConfig {
  std::string arch = "vit";     // "vit" (a CLIP config holds a ViTConfig for its vision tower)
  std::string style = "timm";   // "timm" | "openai_clip_visual"
  int64_t image_size = 32, patch_size = 4, in_chans = 3;
  int64_t dim = 64, depth = 2, heads = 2;
  double mlp_ratio = 4.0;
  int64_t num_classes = 10;     // 0 = features only
  std::string act = "gelu";     // "gelu" | "quick_gelu"
  double ln_eps = 1e-6;
  std::string pool = "cls";     // "cls" | "mean"
  int64_t embed_dim = 0;        // openai style: proj [W, E]; 0 = dim
  double drop_path = 0.0;       // stochastic depth, linearly increasing over blocks (timm)
  double dropout = 0.0;         // dropout after the MLP activation and projections
  // timm VisionTransformer variants (timm style only; methods.md "timm ViT" is the all-default case):
  bool class_token = true;      // cls_token [1,1,D]; false: no class token (pool must be "mean")
  int64_t reg_tokens = 0;       // reg_token [1,R,D] after the class token (timm reg_tokens, DINOv2 registers)
  bool no_embed_class = false;  // pos_embed [1,N,D] covers the patches only; prefix tokens get none
  bool norm_pre = false;        // norm_pre: LayerNorm after the position embedding (timm pre_norm)
  bool layer_scale = false;     // blocks.i.ls1.gamma, ls2.gamma [D] scale each residual branch
  bool fc_norm = false;         // fc_norm after pooling instead of norm on every token
  bool qkv_bias = true;         // blocks.i.attn.qkv.bias
  // The checkpoint's own preprocessing (size 0: the style's default, see effective_preprocess).
  data::Preprocess preprocess;
  // The head's class names in label order (timm label_names, Hugging Face id2label, the folders
  // a model was trained on); empty when unknown. Written to model.json as "class_names".
  std::vector<std::string> class_names;

  int64_t grid() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }
  int64_t num_prefix_tokens() const { return (class_token ? 1 : 0) + reg_tokens; }
  // Rows of pos_embed: the patches, plus the prefix tokens unless no_embed_class.
  int64_t pos_embed_rows() const { return num_patches() + (no_embed_class ? 0 : num_prefix_tokens()); }
  int64_t mlp_hidden() const { return static_cast<int64_t>(dim * mlp_ratio); }
  int64_t feature_dim() const { return style == "openai_clip_visual" ? (embed_dim > 0 ? embed_dim : dim) : dim; }
  void validate() const;  // throws ValueError naming the bad field
};

// Parses a JSON object (text); unknown keys are errors, so typos do not pass silently.
ViTConfig vit_config_from_json(const std::string& json_text, const std::string& source = "config");
std::string vit_config_to_json(const ViTConfig& c);
// A preset name (vit-micro, vit-tiny, vit-small, vit-base, bench-tiny, bench-base) or a path to
// a JSON file. A CLIP preset or config gives its visual tower (no head). Throws ValueError /
// IOError naming the name or file.
ViTConfig load_vit_config(const std::string& name_or_path);
std::vector<std::string> vit_preset_names();

// The preprocessing a model expects: cfg.preprocess when set (read from a checkpoint's sidecar),
// else this project's default for the style: S x S squash (bilinear), ImageNet mean/std for
// timm, OpenAI CLIP's for openai_clip_visual. size is always cfg.image_size.
data::Preprocess effective_preprocess(const ViTConfig& cfg);

// The "preprocess" object of a config: {"size", "interpolation", "crop_pct", "crop_mode", "mean",
// "std", "source"} (ValueError naming `source` and the key on a bad one).
data::Preprocess preprocess_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json preprocess_to_json(const data::Preprocess& p);

}  // namespace peft::nn
