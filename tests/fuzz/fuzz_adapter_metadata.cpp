// libFuzzer harness: adapter metadata -> method options -> a method attached to a tiny ViT (issue
// 20: an adapter whose metadata said rank 2^56 crashed eval and merge). The input is "key=value"
// lines (the safetensors __metadata__ of an adapter). Reading and validating may only throw
// peft::Error subclasses; options that pass are attached to a micro model.
#include <cstdint>
#include <map>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/random.h"
#include "nn/config.h"
#include "nn/vit.h"
#include "peft/method.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  std::map<std::string, std::string> md;
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  for (std::string line; std::getline(in, line);) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) md[line.substr(0, eq)] = line.substr(eq + 1);
  }
  MethodOptions o;
  std::string method;
  try {
    method = method_from_metadata(md, o);
    validate_method_options(method, o);
  } catch (const Error&) {
    return 0;
  }
  // Accepted options: attach them to a micro ViT (16 px, patch 4, dim 16, one block). The option
  // bounds keep every tensor small enough to build (rank or prompts <= 65536 at dim 16).
  static const nn::ViTConfig cfg = nn::vit_config_from_json(
      R"({"image_size": 16, "patch_size": 4, "dim": 16, "depth": 1, "heads": 2, "num_classes": 2})", "micro");
  try {
    nn::VisionTransformer vit(cfg, 0);
    Generator gen(1);
    apply_method(vit, method, o, 2, gen);
  } catch (const Error&) {
  }
  return 0;
}
