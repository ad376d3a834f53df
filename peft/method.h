// PEFT methods for a ViT: one name each, attached to a built model (methods.md 4-12).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/random.h"
#include "nn/vit.h"

namespace peft {

// Method options (cli.md "Method options"); a method reads only its own.
struct MethodOptions {
  int64_t prompts = 10;          // vpt-shallow, vpt-deep, cvpt
  double prompt_dropout = 0.0;   // vpt-*, cvpt (training only)
  int64_t rank = 8;              // lora
  double alpha = -1;             // lora scale numerator (default: rank)
  std::string targets = "attn.qkv";  // lora
  int64_t bottleneck = 64;       // adaptformer
};

struct MethodInfo {
  std::string name;
  std::string description;
  std::string options;  // the flags it reads
};

const std::vector<MethodInfo>& vision_methods();
bool is_vision_method(const std::string& name);

// Attaches `method` to the model: adds its tensors (initialised as the official code does),
// freezes everything else and gives it a fresh head for `num_classes` classes. Throws
// ValueError for unknown methods or bad options (naming the option).
void apply_method(nn::VisionTransformer& vit, const std::string& method, const MethodOptions& o, int64_t num_classes,
                  Generator& gen);

// The safetensors metadata an adapter file carries: method and its options.
std::map<std::string, std::string> method_metadata(const std::string& method, const MethodOptions& o);
// Reads them back (ValueError when the file has no method).
std::string method_from_metadata(const std::map<std::string, std::string>& md, MethodOptions& o);

}  // namespace peft
