// The method registry: names, descriptions, attaching and the adapter metadata.
#include "peft/method.h"

#include <fmt/format.h>

#include "core/error.h"

namespace peft {

const std::vector<MethodInfo>& vision_methods() {
  static const std::vector<MethodInfo> m = {
      {"linear", "linear probe: frozen backbone, trains the head", ""},
      {"full", "full fine-tuning: every tensor trains", ""},
  };
  return m;
}

bool is_vision_method(const std::string& name) {
  for (auto& m : vision_methods())
    if (m.name == name) return true;
  return false;
}

void apply_method(nn::VisionTransformer& vit, const std::string& method, const MethodOptions& /*o*/, int64_t k,
                  Generator& gen) {
  if (!is_vision_method(method)) {
    std::string names;
    for (auto& m : vision_methods()) names += (names.empty() ? "" : ", ") + m.name;
    throw ValueError(fmt::format("unknown method '{}' (available: {})", method, names));
  }
  vit.reset_head(k, gen);
  if (method == "full") {
    for (auto& [_, p] : vit.named_parameters()) Tensor(p).requires_grad_(true);
    return;
  }
  vit.freeze_all();
  vit.unfreeze("head.*");
}

std::map<std::string, std::string> method_metadata(const std::string& method, const MethodOptions& o) {
  return {{"method", method},
          {"prompts", std::to_string(o.prompts)},
          {"prompt_dropout", fmt::format("{}", o.prompt_dropout)},
          {"rank", std::to_string(o.rank)},
          {"alpha", fmt::format("{}", o.alpha)},
          {"targets", o.targets},
          {"bottleneck", std::to_string(o.bottleneck)}};
}

std::string method_from_metadata(const std::map<std::string, std::string>& md, MethodOptions& o) {
  auto it = md.find("method");
  if (it == md.end()) throw ValueError("adapter: its metadata names no method");
  auto num = [&](const char* k, auto& field) {
    auto f = md.find(k);
    if (f == md.end()) return;
    try {
      field = static_cast<std::decay_t<decltype(field)>>(std::stod(f->second));
    } catch (const std::exception&) {
      throw ValueError(fmt::format("adapter: metadata '{}' = '{}' is not a number", k, f->second));
    }
  };
  num("prompts", o.prompts);
  num("prompt_dropout", o.prompt_dropout);
  num("rank", o.rank);
  num("alpha", o.alpha);
  num("bottleneck", o.bottleneck);
  if (auto f = md.find("targets"); f != md.end()) o.targets = f->second;
  return it->second;
}

}  // namespace peft
