// `peft inspect`: the module tree and a parameter table with totals.
#include <fmt/format.h>

#include "apps/peft/commands.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/config.h"
#include "nn/vit.h"
#include "peft/method.h"

namespace peft::app {

namespace {
struct InspectOptions {
  std::string config, weights, method;
  MethodOptions opts;
};

// The module tree, then one row per tensor (name, shape, trainable, count) and the totals.
void print_model(const nn::Module& m, const std::string& note) {
  fmt::print("{}", m.tree());
  fmt::print("\n{:<48} {:<20} {:>9} {:>12}\n", "name", "shape", "trainable", "count");
  int64_t total = 0, trainable = 0;
  for (auto& [n, t] : m.named_parameters()) {
    fmt::print("{:<48} {:<20} {:>9} {:>12}\n", n, shape_str(t.sizes()), t.requires_grad() ? "yes" : "no", t.numel());
    total += t.numel();
    if (t.requires_grad()) trainable += t.numel();
  }
  fmt::print("total {} parameters, {} trainable\n", total, trainable);
  if (!note.empty()) fmt::print("note: {}\n", note);
}

// A CLIP config (preset or "arch": "clip"): the whole model, OpenAI names. Methods are not
// attached here: the CLIP ones need class prompts (peft clip-train), the vision ones a ViT.
int inspect_clip(const InspectOptions& o, uint64_t seed) {
  if (!o.method.empty())
    throw UsageError(fmt::format("inspect: --method with the CLIP config '{}' is not supported: CLIP methods are "
                                 "attached by peft clip-train (peft methods lists their tensors); vision methods "
                                 "need a ViT config",
                                 o.config));
  nn::CLIP clip(nn::load_clip_config(o.config), seed);
  if (!o.weights.empty()) nn::load_weights(clip, o.weights);
  clip.freeze_all();  // a frozen backbone, as every CLIP method uses it
  print_model(clip, "CLIP backbone: frozen in every CLIP method (peft methods)");
  return 0;
}
}  // namespace

void add_inspect_command(CLI::App& app, Common& common, Runner& run) {
  static InspectOptions o;
  auto* cmd = app.add_subcommand("inspect", "print the module tree and the parameter table of a model");
  cmd->add_option("--config", o.config, "model config: preset name (ViT or CLIP) or JSON file")->required();
  cmd->add_option("--weights", o.weights, "safetensors weights to load (optional)");
  cmd->add_option("--method", o.method, "attach a PEFT method first (peft methods) to see its trainable tensors");
  add_method_options(cmd, o.opts);
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      if (nn::is_clip_config(o.config)) return inspect_clip(o, common.seed);
      nn::VisionTransformer vit(nn::load_vit_config(o.config), common.seed);
      std::string note;
      if (!o.weights.empty()) nn::load_vit_weights(vit, o.weights, &note);
      if (!o.method.empty()) {
        require_vision_method(o.method);
        Generator gen(common.seed + 1);
        apply_method(vit, o.method, o.opts, vit.cfg.num_classes > 0 ? vit.cfg.num_classes : 10, gen);
      }
      print_model(vit, note);
      return 0;
    };
  });
}

}  // namespace peft::app
