// `peft inspect`: the module tree and a parameter table with totals.
#include <fmt/format.h>

#include "apps/peft/commands.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/vit.h"
#include "peft/method.h"

namespace peft::app {

namespace {
struct InspectOptions {
  std::string config, weights, method;
  MethodOptions opts;
};
}  // namespace

void add_inspect_command(CLI::App& app, Common& common, Runner& run) {
  static InspectOptions o;
  auto* cmd = app.add_subcommand("inspect", "print the module tree and the parameter table of a model");
  cmd->add_option("--config", o.config, "model config: preset name or JSON file")->required();
  cmd->add_option("--weights", o.weights, "safetensors weights to load (optional)");
  cmd->add_option("--method", o.method, "attach a PEFT method first (peft methods) to see its trainable tensors");
  add_method_options(cmd, o.opts);
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      nn::VisionTransformer vit(nn::load_vit_config(o.config), common.seed);
      std::string note;
      if (!o.weights.empty()) nn::load_vit_weights(vit, o.weights, &note);
      if (!o.method.empty()) {
        require_vision_method(o.method);
        Generator gen(common.seed + 1);
        apply_method(vit, o.method, o.opts, vit.cfg.num_classes > 0 ? vit.cfg.num_classes : 10, gen);
      }
      fmt::print("{}", vit.tree());
      fmt::print("\n{:<48} {:<20} {:>9} {:>12}\n", "name", "shape", "trainable", "count");
      int64_t total = 0, trainable = 0;
      for (auto& [n, t] : vit.named_parameters()) {
        fmt::print("{:<48} {:<20} {:>9} {:>12}\n", n, shape_str(t.sizes()), t.requires_grad() ? "yes" : "no", t.numel());
        total += t.numel();
        if (t.requires_grad()) trainable += t.numel();
      }
      fmt::print("total {} parameters, {} trainable\n", total, trainable);
      if (!note.empty()) fmt::print("note: {}\n", note);
      return 0;
    };
  });
}

}  // namespace peft::app
