// Helpers shared by the method files: finding, wrapping and registering (see adapted.h).
#include "peft/methods/adapted.h"

#include <fmt/format.h>

#include "core/error.h"

namespace peft::methods {

void Adapted::merge(nn::VisionTransformer&) {
  throw ValueError(fmt::format("merge: {} cannot be folded into the weights", method()));
}

std::vector<Adapted*> adapted_modules(nn::VisionTransformer& vit) {
  std::vector<Adapted*> out;
  for (auto& [name, m] : vit.named_modules()) {
    if (auto* a = dynamic_cast<Adapted*>(m)) out.push_back(a);
    if (auto* at = dynamic_cast<nn::Attention*>(m); at && at->openai_names)
      if (auto* a = dynamic_cast<Adapted*>(at->qkv.get())) out.push_back(a);
  }
  return out;
}

Tensor add_tensor(Adapted& a, nn::Module& owner, const std::string& owner_name, const std::string& local, Tensor t) {
  a.added_names.push_back(owner_name.empty() ? local : owner_name + "." + local);
  return owner.register_parameter(local, std::move(t));
}

std::vector<LinearSite> linear_sites(nn::VisionTransformer& vit) {
  std::vector<LinearSite> out;
  for (auto& [name, m] : vit.named_modules()) {
    if (name == "head" || name.rfind("head.", 0) == 0) continue;
    if (auto* at = dynamic_cast<nn::Attention*>(m); at && at->openai_names)
      out.push_back({name + ".in_proj", at->qkv.get(), at});
    auto* lin = dynamic_cast<nn::Linear*>(m);
    if (!lin || dynamic_cast<Adapted*>(m)) continue;
    // A linear inside a module a method added (an adapter's projections) is no base site.
    bool inside_added = false;
    for (auto& [other, om] : vit.named_modules())
      if (auto* a = dynamic_cast<Adapted*>(om); a && a->added_module() && name.rfind(other + ".", 0) == 0)
        inside_added = true;
    if (inside_added) continue;
    LinearSite s{name, lin, nullptr};
    // timm's fused qkv is a child named qkv of its attention.
    const size_t dot = name.rfind('.');
    if (dot != std::string::npos && name.substr(dot + 1) == "qkv")
      for (auto& [pn, pm] : vit.named_modules())
        if (pn == name.substr(0, dot)) s.fused = dynamic_cast<nn::Attention*>(pm);
    out.push_back(s);
  }
  return out;
}

std::string module_name(nn::Module& root, const nn::Module* m) {
  for (auto& [n, pm] : root.named_modules())
    if (pm == m) return n;
  return "";
}

void replace_at(nn::Module& root, const std::string& name, std::shared_ptr<nn::Module> m) {
  const size_t dot = name.rfind('.');
  const std::string parent = dot == std::string::npos ? "" : name.substr(0, dot);
  const std::string child = dot == std::string::npos ? name : name.substr(dot + 1);
  for (auto& [n, pm] : root.named_modules())
    if (n == parent) {
      pm->replace_module(child, std::move(m));
      return;
    }
  throw ValueError(fmt::format("replace: no module named '{}'", parent));
}

nn::Module& install_linear(nn::VisionTransformer& vit, const LinearSite& site, std::shared_ptr<nn::Linear> wrapper) {
  if (site.fused) {  // the attention's own pointer (and, timm, its child) take the wrapper
    site.fused->replace_qkv(wrapper);
    return site.fused->qkv_slot();
  }
  replace_at(vit, site.name, wrapper);
  return *wrapper;
}

}  // namespace peft::methods
