// `peft merge`: folds an SSF or LoRA adapter into the base weights (methods.md 10, 11) and
// writes a plain ViT checkpoint (base names + head).
#include <fmt/format.h>

#include "apps/peft/commands.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/safetensors.h"
#include "peft/merge.h"
#include "peft/method.h"

namespace peft::app {

namespace {

struct MergeArgs {
  std::string config, weights, method, adapter, out;
  MethodOptions options;
};

int run_merge(const MergeArgs& a, CLI::App* cmd) {
  if (!is_mergeable_method(a.method))
    throw UsageError(fmt::format("--method: {} cannot be merged (only ssf and lora fold into the weights)", a.method));
  SafetensorsFile f = SafetensorsFile::open(a.adapter);
  // Options: those the adapter was trained with (its metadata), unless given on the command line.
  MethodOptions o = a.options;
  if (f.metadata().count("method")) {
    MethodOptions from_file;
    std::string m = method_from_metadata(f.metadata(), from_file);
    if (m != a.method) throw UsageError(fmt::format("--method {} does not match {}'s method {}", a.method, a.adapter, m));
    if (!cmd->count("--rank")) o.rank = from_file.rank;
    if (!cmd->count("--alpha")) o.alpha = from_file.alpha;
    if (!cmd->count("--targets")) o.targets = from_file.targets;
  } else if (a.method == "lora") {
    // No metadata (e.g. written by a PyTorch script): rank and targets from the tensor names.
    std::string targets;
    for (const std::string& n : f.names()) {
      const std::string suffix = ".lora_A";
      if (n.size() <= suffix.size() || n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
      if (!cmd->count("--rank") && !f.info(n).shape.empty()) o.rank = f.info(n).shape[0];
      targets += (targets.empty() ? "" : ",") + n.substr(0, n.size() - suffix.size());
    }
    if (!cmd->count("--targets") && !targets.empty()) o.targets = targets;
  }
  if (!f.has("head.weight") || f.info("head.weight").shape.size() != 2)
    throw IOError(fmt::format("{}: has no head.weight [K, D] (an adapter of {} holds the head)", a.adapter, a.method));
  const int64_t k = f.info("head.weight").shape[0];

  nn::ViTConfig c = nn::load_vit_config(a.config);
  c.num_classes = k;
  nn::VisionTransformer vit(c, 0);
  Generator gen(1);
  try {
    apply_method(vit, a.method, o, k, gen);
  } catch (const MethodError& e) {
    throw UsageError(e.what());
  }
  nn::load_vit_weights(vit, a.weights);
  // The adapter must hold exactly the method's trainable tensors.
  nn::LoadResult lr = nn::load_weights(vit, a.adapter, /*strict=*/false);
  std::vector<std::string> missing;
  for (auto& n : lr.missing)
    if (vit.parameter(n).requires_grad()) missing.push_back(n);
  if (!lr.unexpected.empty() || !lr.mismatched.empty() || !missing.empty()) {
    nn::LoadResult bad = lr;
    bad.missing = missing;
    throw IOError(fmt::format("{}: does not fit method {} ({})", a.adapter, a.method, bad.summary()));
  }
  merge_adapters(vit);
  nn::NamedTensors sd = plain_state_dict(vit);
  save_safetensors(a.out, sd, {{"format", "pt"}, {"merged_from", a.method}});
  fmt::print("merge: {} folded into {} -> {} ({} tensors, head {} classes)\n", a.method, a.weights, a.out, sd.size(), k);
  if (k != nn::load_vit_config(a.config).num_classes)
    fmt::print("note: the merged head has {} classes; use a config with \"num_classes\": {}\n", k, k);
  return 0;
}

}  // namespace

void add_merge_command(CLI::App& app, Common& common, Runner& run) {
  static MergeArgs a;
  auto* cmd = app.add_subcommand("merge", "fold an ssf or lora adapter into the base weights (a plain ViT checkpoint)");
  cmd->add_option("--config", a.config, "model config: preset name or JSON file")->required();
  cmd->add_option("--weights", a.weights, "base weights (safetensors)")->required();
  cmd->add_option("--method", a.method, "ssf | lora")->required();
  cmd->add_option("--adapter", a.adapter, "adapter.safetensors written by peft train")->required();
  cmd->add_option("--out", a.out, "merged weights (safetensors)")->required();
  cmd->add_option("--rank", a.options.rank, "LoRA rank (default: the adapter's)");
  cmd->add_option("--alpha", a.options.alpha, "LoRA alpha (default: the adapter's, else rank)");
  cmd->add_option("--targets", a.options.targets, "LoRA targets (default: the adapter's)");
  add_common_options(cmd, common);
  cmd->callback([&run, cmd] {
    run = [cmd] { return run_merge(a, cmd); };
  });
}

}  // namespace peft::app
