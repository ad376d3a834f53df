// Weight files: strict loading with named errors, head replacement, trainable-only saving.
#include "nn/checkpoint.h"

#include <fmt/format.h>

#include "core/error.h"
#include "nn/pos_embed.h"
#include "nn/safetensors.h"

namespace peft::nn {

std::map<std::string, Tensor> read_tensors(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  std::map<std::string, Tensor> out;
  for (const std::string& n : f.names()) {
    const std::string& dt = f.info(n).dtype;
    bool integer = dt[0] == 'I' || dt[0] == 'U' || dt == "BOOL";
    out[n] = f.get(n, integer ? DType::i64 : DType::f32);
  }
  return out;
}

LoadResult load_weights(Module& m, const std::string& path, bool strict) {
  auto sd = read_tensors(path);
  try {
    return m.load_state_dict(sd, strict);
  } catch (const ValueError& e) {
    throw IOError(fmt::format("{}: does not fit the model ({})", path, e.what()));
  }
}

LoadResult load_vit_weights(VisionTransformer& vit, const std::string& path, std::string* note) {
  auto sd = read_tensors(path);
  if (vit.head) {
    auto w = sd.find("head.weight");
    if (w != sd.end() && w->second.dim() == 2 && w->second.size(0) != vit.head->out_features) {
      if (note)
        *note = fmt::format("head replaced: {} has {} classes, the model {}", path, w->second.size(0), vit.head->out_features);
      sd.erase("head.weight");
      sd.erase("head.bias");
    }
  } else {
    sd.erase("head.weight");
    sd.erase("head.bias");
  }
  // A checkpoint for another image size: resample its position embedding (bicubic, as timm).
  for (const char* name : {"pos_embed", "positional_embedding"}) {
    auto it = sd.find(name);
    if (it == sd.end() || !vit.has_parameter(name)) continue;
    Tensor mine = vit.parameter(name);
    if (it->second.sizes() == mine.sizes() || it->second.dim() != mine.dim() || it->second.size(-1) != mine.size(-1)) continue;
    const int64_t old_rows = it->second.size(-2);
    it->second = resample_pos_embed(it->second, vit.cfg.grid());
    if (note)
      *note += fmt::format("{}{} resampled from {} to {} tokens (bicubic)", note->empty() ? "" : "; ", name, old_rows,
                           mine.size(-2));
  }
  LoadResult r = vit.load_state_dict(sd, false);
  std::vector<std::string> missing;
  for (auto& n : r.missing)
    if (n != "head.weight" && n != "head.bias") missing.push_back(n);
  // PEFT tensors attached before loading are not in a base file.
  std::erase_if(missing, [](const std::string& n) {
    return n.find("lora_") != std::string::npos || n.find("ssf_") != std::string::npos ||
           n.find("prompts") != std::string::npos || n.find("adaptmlp") != std::string::npos;
  });
  if (!missing.empty() || !r.unexpected.empty() || !r.mismatched.empty()) {
    LoadResult bad = r;
    bad.missing = missing;
    throw IOError(fmt::format("{}: does not fit the model config ({})", path, bad.summary()));
  }
  if (note && note->empty() && vit.head && !sd.count("head.weight"))
    *note = fmt::format("{} has no head: the model keeps a fresh head", path);
  return r;
}

void save_weights(const Module& m, const std::string& path, const std::map<std::string, std::string>& metadata,
                  bool trainable_only) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [n, t] : m.state_dict())
    if (!trainable_only || t.requires_grad()) out.emplace_back(n, t);
  save_safetensors(path, out, metadata);
}

}  // namespace peft::nn
