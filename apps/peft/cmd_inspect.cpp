// `peft inspect`: the module tree and a parameter table with totals.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>

#include "apps/peft/commands.h"
#include "apps/peft/model_options.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/config.h"
#include "nn/pretrained.h"
#include "nn/vit.h"
#include "peft/memory_guard.h"
#include "peft/method.h"

namespace peft::app {

namespace {
struct InspectOptions {
  ModelArgs model;
  std::string method;
  MethodOptions opts;
  const std::string& config = model.config;
  const std::string& weights = model.weights;
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
  const nn::CLIPConfig cfg = nn::load_clip_config(o.config);
  check_clip_model_memory(cfg, "config '" + o.config + "'");  // before anything is allocated
  nn::CLIP clip(cfg, seed);
  if (!o.weights.empty()) nn::load_weights(clip, o.weights);
  clip.freeze_all();  // a frozen backbone, as every CLIP method uses it
  print_model(clip, "CLIP backbone: frozen in every CLIP method (peft methods)");
  return 0;
}

// What was detected and inferred from a checkpoint, as text (stdout) and as JSON (--json).
nlohmann::json describe_source(const ModelSource& src) {
  nlohmann::json j;
  j["config"] = nlohmann::json::parse(nn::vit_config_to_json(src.config));
  j["preprocess"] = nn::preprocess_to_json(src.config.preprocess);
  if (src.pretrained) {
    const nn::Pretrained& p = *src.pretrained;
    j["scheme"] = p.scheme;
    j["weights"] = p.path;
    j["sidecars"] = p.sidecars;
    j["notes"] = p.notes;
    j["describe"] = p.describe();
    if (p.is_clip) j["clip"] = nlohmann::json::parse(nn::clip_config_to_json(p.clip));
    fmt::print("weights: {}\nscheme:  {} ({})\n", p.path, p.scheme, p.describe());
    fmt::print("sidecars: {}\n", p.sidecars.empty() ? std::string("none") : nn::name_list(p.sidecars, 8));
    for (const std::string& n : p.notes) fmt::print("  - {}\n", n);
  }
  fmt::print("preprocessing: {}\n", src.config.preprocess.describe());
  fmt::print("config (what --config would take):\n{}\n\n", nn::vit_config_to_json(src.config));
  return j;
}

void add_totals(nlohmann::json& j, const nn::Module& m) {
  j["total_params"] = m.num_parameters(false);
  j["trainable_params"] = m.num_parameters(true);
}
}  // namespace

void add_inspect_command(CLI::App& app, Common& common, Runner& run) {
  // Owned by the callbacks (not a static): every app built in one process, as the argv fuzz
  // harness builds one per input, starts from the defaults.
  auto opts = std::make_shared<InspectOptions>();
  InspectOptions& o = *opts;
  auto* cmd = app.add_subcommand("inspect", "detected checkpoint scheme, inferred config, module tree and parameter table");
  add_model_options(cmd, o.model, /*config_required=*/false, /*weights_required=*/false);
  cmd->add_option("--method", o.method, "attach a PEFT method first (peft methods) to see its trainable tensors");
  add_method_options(cmd, o.opts);
  add_common_options(cmd, common);
  cmd->callback([&run, &common, opts] {
    run = [&common, opts] {
      const InspectOptions& o = *opts;
      if (!o.config.empty() && nn::is_clip_config(o.config)) return inspect_clip(o, common.seed);
      ModelSource src = open_model_or_usage(o.model);
      nlohmann::json j = describe_source(src);
      if (src.pretrained && src.pretrained->is_clip && o.method.empty()) {  // a whole CLIP file: both towers
        nn::CLIP clip(src.pretrained->clip, common.seed);
        clip.load_state_dict(src.pretrained->clip_tensors);
        clip.freeze_all();
        print_model(clip, "CLIP: peft clip-train adapts it; the vision methods take its visual tower (--method)");
        add_totals(j, clip);
        if (common.json) fmt::print("{}\n", j.dump());
        return 0;
      }
      nn::VisionTransformer vit(src.config, common.seed);
      std::string note;
      src.load_into(vit, &note);
      if (!o.method.empty()) {
        require_vision_method(o.method);
        Generator gen(common.seed + 1);
        try {  // a bad method option is usage (exit 2), as in peft train
          apply_method(vit, o.method, o.opts, vit.cfg.num_classes > 0 ? vit.cfg.num_classes : 10, gen);
        } catch (const MethodError& e) {
          throw UsageError(e.what());
        }
      }
      print_model(vit, note);
      add_totals(j, vit);
      if (common.json) fmt::print("{}\n", j.dump());
      return 0;
    };
  });
}

}  // namespace peft::app
