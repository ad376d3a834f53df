// Pretrained checkpoints as users have them: the naming scheme is detected from the tensor names
// (timm, DINOv2, torchvision, Hugging Face ViT and CLIP, OpenAI / open_clip CLIP, and this
// project's own files), mapped at load time to the internal names (interop.md's, which stay the
// export format), and the model config is inferred from the tensor shapes and the sidecar files
// the hub puts next to the weights (timm / Hugging Face config.json, preprocessor_config.json,
// open_clip_config.json, this project's model.json).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/clip.h"
#include "nn/config.h"
#include "nn/module.h"
#include "nn/vit.h"

namespace peft::nn {

struct PretrainedOptions {
  std::string config;      // --config (preset or JSON): wins over inference ("" = infer)
  int64_t image_size = 0;  // --image-size: run at this size, resampling the position embedding (0 = the checkpoint's)
  int64_t heads = 0;       // --heads: when no sidecar gives it (0 = sidecar, known architecture, or width / 64)
  std::string act;         // --act gelu|quick_gelu: overrides the scheme's default ("" = keep)
  // false: only the names are mapped (the caller's model gives the config); the inferred config
  // is then not checked (load_vit_weights).
  bool check_config = true;
};

struct Pretrained {
  std::string path;
  // "peft" (this project's names with its own model.json), "timm", "dinov2", "torchvision",
  // "hf_vit", "hf_clip", "open_clip" (OpenAI / open_clip CLIP files), "openai_visual" (an OpenAI
  // visual tower without the "visual." prefix, this project's openai_clip_visual style).
  std::string scheme;
  std::vector<std::string> sidecars;  // the files beside the weights that were read
  ViTConfig config;                   // the ViT (for CLIP files: the visual tower with no head)
  std::map<std::string, Tensor> tensors;  // the ViT's tensors under internal names
  std::vector<std::string> class_names;   // from the sidecar (timm label_names, HF id2label); may be empty
  std::vector<std::string> notes;         // how each inferred value was found, for `peft inspect`
  // A whole CLIP (hf_clip, open_clip): its config and every tensor under OpenAI names.
  bool is_clip = false;
  CLIPConfig clip;
  std::map<std::string, Tensor> clip_tensors;
  std::string describe() const;  // one line: "timm ViT D768 L12 H12 patch 16 224 px, 1000 classes"
};

// Reads a safetensors file as a pretrained model. Throws IOError (one line, naming the file,
// the scheme it looks like and what is missing or not supported) for files it cannot use.
Pretrained read_pretrained(const std::string& weights_path, const PretrainedOptions& o = {});

// Loads the pretrained tensors into a ViT built from pre.config (or a config with the same
// backbone: another head size keeps the model's fresh head, another image size resamples the
// position embedding as the scheme does). Load the base before attaching a method: every
// tensor of the model must be in the file. Appends what it did to `note`. Throws IOError naming the file when tensors do not fit.
LoadResult load_pretrained(VisionTransformer& vit, const Pretrained& pre, std::string* note = nullptr);

// A whole CLIP for the CLIP commands: `config` (preset or JSON with "arch": "clip"; may be empty
// when `weights` is given: inferred from the file and its sidecars) and `weights` (OpenAI /
// open_clip or Hugging Face CLIPModel names; empty: random init). The checkpoint's
// preprocessing and a one-line description are returned through the pointers. `before_build`,
// when given, sees the config and the description after the file is read and before any tensor of
// the model is allocated (peft's memory guard refuses a config that cannot fit there).
using ClipConfigCheck = std::function<void(const CLIPConfig&, const std::string&)>;
std::shared_ptr<CLIP> load_clip_model(const std::string& config, const std::string& weights, uint64_t seed,
                                      data::Preprocess* preprocess = nullptr, std::string* describe = nullptr,
                                      const ClipConfigCheck& before_build = {});

// The scheme names and what identifies each (for messages and docs).
std::vector<std::pair<std::string, std::string>> pretrained_schemes();

}  // namespace peft::nn
