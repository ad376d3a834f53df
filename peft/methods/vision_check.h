// The computation behind `peft check` for vision methods (interop.md "The check command"):
// one eval-mode forward and backward, returning the tensors the reference compares.
#pragma once
#include <cstdint>
#include <string>

#include "nn/module.h"
#include "peft/method.h"

namespace peft {

struct VisionCheckRequest {
  std::string config;   // preset name or JSON file
  std::string weights;  // base safetensors
  std::string method;
  MethodOptions options;
  std::string adapter;  // initial trainable values ("" = the method's own init and the base head)
  std::string inputs;   // images [B,C,S,S] F32, labels [B] I64
  uint64_t seed = 0;    // init of tensors the adapter does not give
};

// Builds the model, attaches the method (head for K = the adapter's head rows, else the config's
// num_classes), loads the base weights (the base head when its class count fits) and then the
// adapter, which overrides any tensor of the same name. Runs the model in eval mode, takes the
// mean cross-entropy and backpropagates. Returns `logits [B,K]`, `loss []` and `grad.{name}`
// for every trainable tensor in parameter order; frozen tensors get no entry.
// Errors name the file at fault: IOError (files), ShapeError (inputs), MethodError (options).
nn::NamedTensors run_vision_check(const VisionCheckRequest& r);

}  // namespace peft
