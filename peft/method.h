// PEFT methods for a ViT: one name each, attached to a built model (methods.md 4-12).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/random.h"
#include "nn/vit.h"

namespace peft {

// Method options (cli.md "Method options"); a method reads only its own.
struct MethodOptions {
  int64_t prompts = 10;          // vpt-shallow, vpt-deep, cvpt
  double prompt_dropout = 0.0;   // vpt-*, cvpt (training only)
  int64_t rank = 8;              // lora
  double alpha = -1;             // lora scale numerator (negative: default = rank)
  std::string targets = "attn.qkv";  // lora
  int64_t bottleneck = 64;       // adaptformer
};

// A bad method name or option value (names the option): the CLI maps it to a usage error (exit 2).
struct MethodError : ValueError {
  using ValueError::ValueError;
};

struct MethodInfo {
  std::string name;
  std::string description;
  std::string options;  // the flags it reads
};

const std::vector<MethodInfo>& vision_methods();
bool is_vision_method(const std::string& name);

// Throws MethodError for an unknown method or a bad value of an option the method reads
// (--prompts <= 0, --prompt-dropout outside [0,1), --rank <= 0, --bottleneck <= 0, empty --targets).
void validate_method_options(const std::string& method, const MethodOptions& o);

// Attaches `method` to the model: adds its tensors (initialised as the official code does),
// freezes everything else and gives it a fresh head for `num_classes` classes. Throws
// MethodError (a ValueError) for unknown methods or bad options (naming the option).
void apply_method(nn::VisionTransformer& vit, const std::string& method, const MethodOptions& o, int64_t num_classes,
                  Generator& gen);

// The full names of the linears a LoRA --targets list selects (methods.md 11), in model order.
// Short names (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) mean that linear in every block; anything
// else is a glob over full base names. MethodError when a target matches no linear.
std::vector<std::string> lora_target_names(nn::VisionTransformer& vit, const std::string& targets);

// Names of the trainable tensors (requires_grad), in registration order: an adapter's contents.
std::vector<std::string> trainable_names(const nn::Module& m);

// The safetensors metadata an adapter file carries: method and its options.
std::map<std::string, std::string> method_metadata(const std::string& method, const MethodOptions& o);
// Reads a numeric metadata entry into field when present (ValueError naming the key otherwise);
// shared by the vision and the CLIP adapter readers.
void read_metadata_number(const std::map<std::string, std::string>& md, const char* key, double& field);
void read_metadata_number(const std::map<std::string, std::string>& md, const char* key, int64_t& field);
// The "method" entry (ValueError when the file has none).
std::string metadata_method(const std::map<std::string, std::string>& md);
// Reads them back (ValueError when the file has no method).
std::string method_from_metadata(const std::map<std::string, std::string>& md, MethodOptions& o);

}  // namespace peft
