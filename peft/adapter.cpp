// Adapter metadata (method, options, class names) and attaching an adapter to a base model.
#include "peft/adapter.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "nn/checkpoint.h"
#include "core/io/safetensors.h"

namespace peft {

std::map<std::string, std::string> adapter_metadata(const std::string& method, const MethodOptions& o,
                                                    const std::vector<std::string>& class_names) {
  auto md = method_metadata(method, o);
  if (!class_names.empty()) md["class_names"] = nlohmann::json(class_names).dump();
  return md;
}

AdapterInfo read_adapter_info(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  AdapterInfo info;
  info.path = path;
  try {
    info.method = method_from_metadata(f.metadata(), info.options);
  } catch (const ValueError& e) {
    throw IOError(fmt::format("{}: {} (not an adapter written by peft train?)", path, e.what()));
  }
  // The options come from the file, not the command line: a bad value is the file's fault (exit
  // 1), named by its metadata key (a rank of 2^56 crashed eval and merge, issue 20).
  try {
    validate_method_options(info.method, info.options);
  } catch (const ValueError& e) {
    std::string msg = e.what();
    for (const char* key : {"prompt-dropout", "prompts", "rank", "alpha", "targets", "bottleneck", "method"}) {
      const std::string flag = std::string("--") + key;
      if (auto at = msg.find(flag); at != std::string::npos) {
        std::string k = key;
        if (k == "prompt-dropout") k = "prompt_dropout";
        msg.replace(at, flag.size(), "metadata '" + k + "'");
      }
    }
    throw IOError(fmt::format("{}: {} (not an adapter written by peft train?)", path, msg));
  }
  if (!f.has("head.weight") || f.info("head.weight").shape.size() != 2)
    throw IOError(fmt::format("{}: has no head.weight [K, D] (an adapter of {} holds the head)", path, info.method));
  info.num_classes = f.info("head.weight").shape[0];
  if (auto it = f.metadata().find("class_names"); it != f.metadata().end()) {
    try {
      info.class_names = nlohmann::json::parse(it->second).get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception&) {
      throw IOError(fmt::format("{}: metadata 'class_names' is not a JSON list of strings", path));
    }
    if (static_cast<int64_t>(info.class_names.size()) != info.num_classes)
      throw IOError(fmt::format("{}: metadata names {} classes but head.weight has {}", path, info.class_names.size(),
                                info.num_classes));
  }
  return info;
}

void attach_adapter(nn::VisionTransformer& vit, const AdapterInfo& info, uint64_t seed) {
  Generator gen(seed + 1);
  apply_method(vit, info.method, info.options, info.num_classes, gen);
  vit.cfg.class_names = info.class_names;
  // The adapter must hold exactly the method's trainable tensors.
  nn::LoadResult lr = nn::load_weights(vit, info.path, /*strict=*/false);
  std::vector<std::string> missing;
  for (auto& n : lr.missing)
    if (vit.parameter(n).requires_grad()) missing.push_back(n);
  if (!lr.unexpected.empty() || !lr.mismatched.empty() || !missing.empty()) {
    nn::LoadResult bad = lr;
    bad.missing = missing;
    throw IOError(fmt::format("{}: does not fit method {} ({})", info.path, info.method, bad.summary()));
  }
}

}  // namespace peft
