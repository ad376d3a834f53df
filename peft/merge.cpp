// Merging: each installed module of a mergeable method folds itself into the base tensors
// (peft/methods/adapted.h); the result is a plain ViT (timm or OpenAI layout).
#include "peft/merge.h"

#include <fmt/format.h>

#include <set>

#include "core/error.h"
#include "peft/method.h"
#include "peft/methods/adapted.h"

namespace peft {

bool is_mergeable_method(const std::string& method) {
  return is_vision_method(method) && vision_method(method).mergeable;
}

void merge_adapters(nn::VisionTransformer& vit) {
  const std::vector<methods::Adapted*> mods = methods::adapted_modules(vit);
  // Refuse before anything changes.
  for (methods::Adapted* a : mods) {
    if (!a->mergeable()) throw ValueError(fmt::format("merge: {} cannot be folded into the weights", a->method()));
    a->check_merge();
  }
  const DType dt = vit.pos_embed.dtype();
  vit.to(DType::f64);  // fold in float64, round once at the end
  for (methods::Adapted* a : mods) a->merge(vit);
  vit.to(dt);
}

nn::NamedTensors plain_state_dict(const nn::VisionTransformer& vit) {
  std::set<std::string> added;
  for (methods::Adapted* a : methods::adapted_modules(const_cast<nn::VisionTransformer&>(vit)))
    added.insert(a->added_names.begin(), a->added_names.end());
  nn::NamedTensors out;
  for (auto& [n, t] : vit.state_dict())
    if (!added.count(n)) out.emplace_back(n, t);
  return out;
}

}  // namespace peft
