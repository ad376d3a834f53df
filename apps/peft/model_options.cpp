// The shared model flags (apps/peft/model_options.h).
#include "apps/peft/model_options.h"

#include "core/error.h"

namespace peft::app {

void add_model_options(CLI::App* cmd, ModelArgs& m, bool config_required, bool weights_required) {
  auto* c = cmd->add_option("--config", m.config,
                            config_required ? "model config: preset name or JSON file"
                                            : "model config: preset or JSON (default: inferred from --weights and the "
                                              "config files beside it)");
  if (config_required) c->required();
  auto* w = cmd->add_option("--weights", m.weights,
                            "weights (safetensors) in timm, DINOv2, torchvision, Hugging Face, OpenAI/open_clip or peft "
                            "naming");
  if (weights_required) w->required();
  cmd->add_option("--image-size", m.image_size, "run at this image size (the position embedding is resampled)");
  cmd->add_option("--heads", m.heads, "attention heads when no config file says (default: width / 64)");
  cmd->add_option("--act", m.act, "gelu | quick_gelu, when no config file says (open_clip LAION models: gelu)");
  cmd->add_option("--mean", m.mean, "normalisation mean R,G,B (default: the checkpoint's)")->delimiter(',');
  cmd->add_option("--std", m.std, "normalisation std R,G,B (default: the checkpoint's)")->delimiter(',');
  cmd->add_option("--interpolation", m.interpolation, "bicubic | bilinear | nearest (default: the checkpoint's)");
  cmd->add_option("--crop-pct", m.crop_pct, "eval: resize the short side to size / crop_pct, centre crop (default: the checkpoint's)");
}

ModelSource open_model_or_usage(const ModelArgs& m) {
  if (m.config.empty() && m.weights.empty()) throw UsageError("--config or --weights is required");
  return open_model(m);
}

}  // namespace peft::app
