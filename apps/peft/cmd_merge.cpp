// `peft merge`: folds an SSF or LoRA adapter into the base weights (methods.md 10, 11) and
// writes a plain ViT checkpoint (base names + head).
#include <fmt/format.h>

#include <filesystem>

#include "apps/peft/commands.h"
#include "apps/peft/model_options.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/safetensors.h"
#include "peft/adapter.h"
#include "peft/merge.h"
#include "peft/method.h"

namespace peft::app {

namespace {

struct MergeArgs {
  ModelArgs model;
  std::string method, adapter, out;
  MethodOptions options;
};

int run_merge(const MergeArgs& a, CLI::App* cmd) {
  SafetensorsFile f = SafetensorsFile::open(a.adapter);
  // The method is the adapter's own (its metadata); --method is needed only for files without it.
  std::string method = a.method;
  if (method.empty()) {
    if (!f.metadata().count("method"))
      throw UsageError(fmt::format("{} names no method in its metadata: give --method ssf|lora", a.adapter));
    method = f.metadata().at("method");
  }
  if (!is_mergeable_method(method))
    throw UsageError(fmt::format("--method: {} cannot be merged (only ssf and lora fold into the weights)", method));
  // Options: those the adapter was trained with (its metadata), unless given on the command line.
  MethodOptions o = a.options;
  if (f.metadata().count("method")) {
    MethodOptions from_file;
    std::string m = method_from_metadata(f.metadata(), from_file);
    if (m != method) throw UsageError(fmt::format("--method {} does not match {}'s method {}", method, a.adapter, m));
    if (!cmd->count("--rank")) o.rank = from_file.rank;
    if (!cmd->count("--alpha")) o.alpha = from_file.alpha;
    if (!cmd->count("--targets")) o.targets = from_file.targets;
  } else if (method == "lora") {
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
    throw IOError(fmt::format("{}: has no head.weight [K, D] (an adapter of {} holds the head)", a.adapter, method));
  const int64_t k = f.info("head.weight").shape[0];

  ModelSource src = open_model_or_usage(a.model);
  nn::ViTConfig c = src.config;
  nn::VisionTransformer vit(c, 0);
  src.load_into(vit);
  AdapterInfo info;  // the options resolved above (metadata, flags, or the tensor names)
  info.path = a.adapter;
  info.method = method;
  info.options = o;
  info.num_classes = k;
  if (f.metadata().count("method")) info.class_names = read_adapter_info(a.adapter).class_names;
  try {
    attach_adapter(vit, info, 0);  // exactly the method's trainable tensors, or an IOError naming the file
  } catch (const MethodError& e) {
    throw UsageError(e.what());
  }
  merge_adapters(vit);
  nn::NamedTensors sd = plain_state_dict(vit);
  // The merged model's config beside it (<stem>.json, read by every command that takes --weights):
  // its head size, class names and the base checkpoint's preprocessing travel with it.
  const nn::ViTConfig& merged = vit.cfg;  // K classes, their names, the base's preprocessing
  const std::string config_path = (std::filesystem::path(a.out).parent_path() /
                                   (std::filesystem::path(a.out).stem().string() + ".json")).string();
  if (std::filesystem::absolute(config_path) == std::filesystem::absolute(a.out))
    throw UsageError(fmt::format("--out {}: the merged config would overwrite it; use a .safetensors name", a.out));
  save_safetensors(a.out, sd, {{"format", "pt"}, {"merged_from", method}});
  write_text_atomic(config_path, nn::vit_config_to_json(merged) + "\n");
  fmt::print("merge: {} folded into {} -> {} ({} tensors, head {} classes), config {}\n", method, a.model.weights, a.out,
             sd.size(), k, config_path);
  return 0;
}

}  // namespace

void add_merge_command(CLI::App& app, Common& common, Runner& run) {
  static MergeArgs a;
  auto* cmd = app.add_subcommand("merge", "fold an ssf or lora adapter into the base weights (a plain ViT checkpoint)");
  add_model_options(cmd, a.model, /*config_required=*/false, /*weights_required=*/true);
  cmd->add_option("--method", a.method, "ssf | lora (default: the adapter's)");
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
