// Loading and saving module weights as safetensors, with the messages a user needs.
#pragma once
#include <map>
#include <string>

#include "nn/module.h"
#include "nn/vit.h"

namespace peft::nn {

// Reads every tensor of a safetensors file (as float32, int64 for integer tensors).
std::map<std::string, Tensor> read_tensors(const std::string& path);

// Loads a file into a module; strict by default. Errors name the file and the tensors.
LoadResult load_weights(Module& m, const std::string& path, bool strict = true);

// Loads a base checkpoint into a ViT. A head whose class count differs from the model's is
// skipped (the model keeps its fresh head) and `note` says so; a checkpoint without a head is
// fine for a model with one. Everything else must match exactly.
LoadResult load_vit_weights(VisionTransformer& vit, const std::string& path, std::string* note = nullptr);

// Writes the module's state dict (or only the trainable tensors), atomically.
void save_weights(const Module& m, const std::string& path, const std::map<std::string, std::string>& metadata = {},
                  bool trainable_only = false);

}  // namespace peft::nn
