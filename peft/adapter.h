// Adapter files (interop.md): the trainable tensors of a method, with the method, its options and
// the class names it was trained on in the safetensors metadata. One reader for every command
// that uses an adapter (eval, predict, merge).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/vit.h"
#include "peft/method.h"

namespace peft {

struct AdapterInfo {
  std::string path;
  std::string method;
  MethodOptions options;
  int64_t num_classes = 0;               // head.weight rows
  std::vector<std::string> class_names;  // empty for adapters written before class names were recorded
};

// The metadata of an adapter: method, options, "class_names" (a JSON list) for `names`.
std::map<std::string, std::string> adapter_metadata(const std::string& method, const MethodOptions& o,
                                                    const std::vector<std::string>& class_names);

// Reads an adapter's metadata and head size. IOError naming the file when it has no method or
// no head.weight [K, D], or when its class names do not match K.
AdapterInfo read_adapter_info(const std::string& path);

// Attaches the adapter's method to a ViT that holds the base weights and loads the adapter's
// tensors, which must be exactly the method's trainable set (IOError naming the file otherwise).
void attach_adapter(nn::VisionTransformer& vit, const AdapterInfo& info, uint64_t seed);

}  // namespace peft
