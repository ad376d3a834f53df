// `peft merge`: folds the adapter of a mergeable method (SSF, LoRA, ...) into the base weights and
// writes a plain ViT checkpoint (base names + head); a clip-lora adapter folds into a whole CLIP
// (methods.md "CLIP-LoRA") and gives a plain CLIP checkpoint.
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <set>

#include "apps/peft/commands.h"
#include "apps/peft/model_options.h"
#include "autograd/anomaly.h"
#include "core/atomic_file.h"
#include "core/blas.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/pretrained.h"
#include "nn/clip.h"
#include "core/io/safetensors.h"
#include "peft/adapter.h"
#include "peft/clip_methods.h"
#include "peft/merge.h"
#include "peft/method.h"

namespace peft::app {

namespace {

struct MergeArgs {
  ModelArgs model;
  std::string method, adapter, out;
  MethodOptions options;
};

// True when `a` and `b` name the same file (or would: symlinks and ".." resolved).
bool same_file(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::equivalent(a, b, ec) && !ec) return true;
  ec.clear();
  const fs::path ca = fs::weakly_canonical(a, ec);
  if (ec) return false;
  const fs::path cb = fs::weakly_canonical(b, ec);
  return !ec && ca == cb;
}

// --out (and the config written beside it) must not be one of the inputs: merge replaced
// --adapter or --weights with its output, and the input was lost (issue 20).
void refuse_overwriting_inputs(const std::string& out, const std::string& config_path,
                               const std::vector<std::pair<std::string, std::string>>& inputs) {
  for (const auto& [flag, path] : inputs) {
    if (path.empty()) continue;
    if (same_file(out, path))
      throw UsageError(fmt::format("--out {} is the {} file: merging would overwrite an input. Hint: write to a new file",
                                   out, flag));
    if (same_file(config_path, path))
      throw UsageError(fmt::format("--out {}: its config {} would overwrite the {} file. Hint: choose another --out name",
                                   out, config_path, flag));
  }
}

std::string merged_config_path(const std::string& out) {
  return (std::filesystem::path(out).parent_path() / (std::filesystem::path(out).stem().string() + ".json")).string();
}

// An adapter file's tensor names and shapes, for a method to read its options from.
TensorShapes tensor_shapes(const SafetensorsFile& f) {
  TensorShapes out;
  for (const std::string& n : f.names()) out.emplace_back(n, f.info(n).shape);
  return out;
}

// Refuses a merged model with a NaN or Inf (from the adapter, or a scale that overflows: it would
// be written silently) or whose config would overwrite --out; writes both. Returns the config path.
std::string write_merged(const MergeArgs& a, const nn::NamedTensors& sd, const std::map<std::string, std::string>& md,
                         const std::string& config_json) {
  for (const auto& [name, t] : sd)
    if (int64_t bad = autograd::count_non_finite(t); bad > 0)
      throw ValueError(fmt::format("merge: the merged tensor {} holds {} NaN/Inf values (from {} or the base weights); "
                                   "nothing written",
                                   name, bad, a.adapter));
  const std::string config_path = merged_config_path(a.out);
  if (std::filesystem::absolute(config_path) == std::filesystem::absolute(a.out))
    throw UsageError(fmt::format("--out {}: the merged config would overwrite it; use a .safetensors name", a.out));
  save_safetensors(a.out, sd, md);
  write_text_atomic(config_path, config_json + "\n");
  return config_path;
}

// What a CLIP adapter was trained with: its metadata, or (none, e.g. written by a PyTorch
// script) what its tensors imply; the typed flags win.
ClipMethodOptions clip_merge_options(const MergeArgs& a, const SafetensorsFile& f, const std::string& method) {
  ClipMethodOptions o;
  if (f.metadata().count("method")) {
    try {
      if (clip_method_from_metadata(f.metadata(), o) != method)
        throw UsageError(fmt::format("--method {} does not match {}'s method {}", method, a.adapter, f.metadata().at("method")));
    } catch (const ValueError& e) {
      throw IOError(fmt::format("{}: {}", a.adapter, e.what()));
    }
  } else if (const ClipMethodDescriptor& d = clip_method(method); d.options_from_tensors) {
    d.options_from_tensors(tensor_shapes(f), o);
  }
  if (a.options.given.count("rank")) o.rank = a.options.rank;
  if (a.options.given.count("alpha")) o.alpha = a.options.alpha;
  if (a.options.given.count("targets")) o.targets = a.options.targets;
  return o;
}

// A CLIP method's adapter (clip-lora) folded into a whole CLIP: the result is a plain CLIP
// checkpoint (OpenAI names) with its config beside it. What the plain CLIP cannot express (the
// constant 100 that replaces exp(logit_scale) in clip-lora's logits) goes into the metadata.
int run_clip_merge(const MergeArgs& a, const SafetensorsFile& f, const std::string& method) {
  const ClipMethodDescriptor& d = clip_method(method);
  if (!d.merge) {
    std::string names;
    for (const ClipMethodDescriptor& m : clip_method_registry())
      if (m.merge) names += (names.empty() ? "" : ", ") + m.name;
    throw UsageError(fmt::format("--method: {} cannot be merged (the CLIP methods that fold into the weights: {})", method, names));
  }
  const ClipMethodOptions o = clip_merge_options(a, f, method);
  data::Preprocess preprocess;
  auto clip = open_clip_model(a.model.config, a.model.weights, 0, &preprocess);
  clip->cfg.vision.preprocess = preprocess;
  std::map<std::string, Tensor> tensors;
  for (const std::string& n : f.names()) tensors[n] = f.get(n);
  std::map<std::string, std::string> md;
  try {
    md = d.merge(*clip, resolve_clip_options(method, o), tensors);
  } catch (const ValueError& e) {
    throw IOError(fmt::format("{}: does not fit {} ({}): {}", a.adapter, method, a.model.weights, e.what()));
  }
  md["format"] = "pt";
  md["merged_from"] = method;
  const nn::NamedTensors sd = clip->state_dict();
  const std::string config_path = write_merged(a, sd, md, nn::clip_config_to_json(clip->cfg));
  fmt::print("merge: {} folded into {} -> {} ({} tensors, a plain CLIP), config {}{}\n", method, a.model.weights, a.out,
             sd.size(), config_path,
             md.count("logit_scale_constant")
                 ? fmt::format("; its logits use the constant {} instead of exp(logit_scale) (metadata logit_scale_constant)",
                               md.at("logit_scale_constant"))
                 : std::string());
  return 0;
}

// The adapter's method: its metadata's, or --method for a file without one.
std::string merge_method(const MergeArgs& a, const SafetensorsFile& f) {
  if (!a.method.empty()) return a.method;
  if (!f.metadata().count("method"))
    throw UsageError(fmt::format("{} names no method in its metadata: give --method (a mergeable method: peft methods)", a.adapter));
  return f.metadata().at("method");
}

void require_mergeable(const std::string& method) {
  if (is_mergeable_method(method)) return;
  std::string names;
  for (const MethodDescriptor& d : vision_method_registry())
    if (d.mergeable) names += (names.empty() ? "" : ", ") + d.name;
  throw UsageError(fmt::format("--method: {} cannot be merged (only {} fold into the weights)", method, names));
}

// What the adapter was trained with: its metadata, the options typed on the command line over it;
// a file without metadata (e.g. LoRA written by a PyTorch script) gives what its method reads
// from the tensor names and shapes.
AdapterInfo merge_adapter_info(const MergeArgs& a, const SafetensorsFile& f, const std::string& method) {
  if (!f.has("head.weight") || f.info("head.weight").shape.size() != 2)
    throw IOError(fmt::format("{}: has no head.weight [K, D] (an adapter of {} holds the head)", a.adapter, method));
  AdapterInfo info;
  info.path = a.adapter;
  info.method = method;
  info.options = a.options;
  info.num_classes = f.info("head.weight").shape[0];
  if (f.metadata().count("method")) {
    // read_adapter_info checks the metadata values (IOError naming the file and the key).
    AdapterInfo from_file = read_adapter_info(a.adapter);
    if (from_file.method != method)
      throw UsageError(fmt::format("--method {} does not match {}'s method {}", method, a.adapter, from_file.method));
    info.options = overlay_given(from_file.options, a.options);
    info.class_names = from_file.class_names;
  } else if (const MethodDescriptor& d = vision_method(method); d.options_from_tensors) {
    d.options_from_tensors(tensor_shapes(f), info.options);  // e.g. LoRA's rank and targets
  }
  return info;
}

// The base model with the adapter attached and folded: a plain ViT.
std::unique_ptr<nn::VisionTransformer> merged_model(const MergeArgs& a, const AdapterInfo& info) {
  ModelSource src = open_model_or_usage(a.model);
  if (src.pretrained) {  // nor a sidecar the base config was read from (config.json, model.json, ...)
    std::vector<std::pair<std::string, std::string>> sidecars;
    for (const auto& sc : src.pretrained->sidecars) sidecars.emplace_back("base model's sidecar", sc);
    refuse_overwriting_inputs(a.out, merged_config_path(a.out), sidecars);
  }
  auto vit = std::make_unique<nn::VisionTransformer>(src.config, 0);
  src.load_into(*vit);
  try {
    attach_adapter(*vit, info, 0);  // exactly the method's trainable tensors, or an IOError naming the file
  } catch (const MethodError& e) {
    throw UsageError(e.what());
  }
  merge_adapters(*vit);
  return vit;
}

int run_merge(const MergeArgs& a) {
  // Merging is exact (folds in float64, writes float32) and runs no training GEMM: --precision
  // bf16 must not round the base weights (nn/bf16_storage.h) before they are folded and written.
  blas::set_precision(blas::Precision::f32);
  refuse_overwriting_inputs(a.out, merged_config_path(a.out),
                            {{"--adapter", a.adapter}, {"--weights", a.model.weights}, {"--config", a.model.config}});
  SafetensorsFile f = SafetensorsFile::open(a.adapter);
  const std::string method = merge_method(a, f);
  if (is_clip_method(method)) return run_clip_merge(a, f, method);  // clip-lora: a whole CLIP
  require_mergeable(method);
  const AdapterInfo info = merge_adapter_info(a, f, method);
  auto vit = merged_model(a, info);
  const nn::NamedTensors sd = plain_state_dict(*vit);
  // The merged model's config beside it (<stem>.json, read by every command that takes --weights):
  // its head size, class names and the base checkpoint's preprocessing travel with it.
  const std::string config_path =
      write_merged(a, sd, {{"format", "pt"}, {"merged_from", method}}, nn::vit_config_to_json(vit->cfg));
  fmt::print("merge: {} folded into {} -> {} ({} tensors, head {} classes), config {}\n", method, a.model.weights, a.out,
             sd.size(), info.num_classes, config_path);
  return 0;
}

}  // namespace

void add_merge_command(CLI::App& app, Common& common, Runner& run) {
  static MergeArgs a;
  auto* cmd = app.add_subcommand(
      "merge", "fold the adapter of a mergeable method (peft methods says which) into the base weights (a plain ViT checkpoint)");
  add_model_options(cmd, a.model, /*config_required=*/false, /*weights_required=*/true);
  cmd->add_option("--method", a.method, "a mergeable method (peft methods; default: the adapter's)");
  cmd->add_option("--adapter", a.adapter, "adapter.safetensors written by peft train")->required();
  cmd->add_option("--out", a.out, "merged weights (safetensors)")->required();
  add_method_options(cmd, a.options);  // default: the adapter's own (its metadata)
  add_common_options(cmd, common);
  cmd->callback([&run] {
    run = [] { return run_merge(a); };
  });
}

}  // namespace peft::app
