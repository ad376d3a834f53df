// Weight files: strict loading with named errors, head replacement, trainable-only saving.
#include "nn/checkpoint.h"

#include <fmt/format.h>

#include "autograd/anomaly.h"
#include "core/error.h"
#include "nn/pretrained.h"
#include "core/io/safetensors.h"

namespace peft::nn {

std::map<std::string, Tensor> read_tensors(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  std::map<std::string, Tensor> out;
  for (const std::string& n : f.names()) {
    const std::string& dt = f.info(n).dtype;
    bool integer = dt[0] == 'I' || dt[0] == 'U' || dt == "BOOL";
    out[n] = f.get(n, integer ? DType::i64 : DType::f32);
    // A NaN or Inf in the weights trained to a "finite" loss before softmax propagated NaN, and
    // still poisons every output: refused where it enters, naming the tensor (issue 20).
    if (!integer)
      if (const int64_t bad = autograd::count_non_finite(out[n]); bad > 0)
        throw IOError(fmt::format("{}: tensor '{}' {} holds {} NaN/Inf value{}. Hint: the file is damaged or was "
                                  "saved from a diverged run",
                                  path, n, shape_str(out[n].sizes()), bad, bad == 1 ? "" : "s"));
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
  // Any naming scheme a user's checkpoint has (nn/pretrained.h), mapped to this model's names.
  PretrainedOptions o;
  o.check_config = false;  // the model's config decides; only the names are mapped
  return load_pretrained(vit, read_pretrained(path, o), note);
}

void save_weights(const Module& m, const std::string& path, const std::map<std::string, std::string>& metadata,
                  bool trainable_only) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [n, t] : m.state_dict())
    if (!trainable_only || t.requires_grad()) out.emplace_back(n, t);
  save_safetensors(path, out, metadata);
}

}  // namespace peft::nn
