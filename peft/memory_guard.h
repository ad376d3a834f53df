// Memory guard: estimates what a training run will hold in memory and refuses to start one that
// cannot fit, with a clear message instead of the kernel's OOM killer halfway through epoch 1.
#pragma once
#include <cstdint>
#include <string>

#include "nn/clip.h"
#include "nn/config.h"
#include "nn/vit.h"

namespace peft {

// Everything that decides the footprint of one training step.
struct MemoryInputs {
  nn::ViTConfig cfg;
  int64_t batch = 32;
  int64_t total_params = 0;      // every tensor of the model (frozen ones included)
  int64_t trainable_params = 0;  // tensors that get a gradient and optimizer state
  int64_t extra_tokens = 0;      // prompt tokens added to the sequence (vpt, cvpt)
  // True when something before the head trains (full, prompts, adapters): the forward pass then
  // keeps every block's activations for backward. A linear probe keeps none of them.
  bool backbone_grad = true;
  // --checkpoint-activations: each block keeps only its input [B, T, D]; backward recomputes one
  // block at a time, so one block's saved tensors are alive at once instead of depth of them.
  bool checkpoint_activations = false;
  std::string optimizer = "adamw";  // adamw: 2 state tensors per parameter; sgd: 1 (momentum)
};

// Bytes, float32 throughout (the trainer's dtype).
struct MemoryEstimate {
  int64_t params = 0;       // all weights
  int64_t grads = 0;        // one gradient per trainable element
  int64_t optimizer = 0;    // optimizer state
  int64_t activations = 0;  // tensors saved for backward + the live working set of one block
  int64_t data = 0;         // the input batch and the one the loader prepares next
  int64_t total() const { return params + grads + optimizer + activations + data; }
  // "1.2 GiB (parameters 330 MiB, gradients ..., optimizer ..., activations ..., data ...)"
  std::string str() const;
};

MemoryEstimate estimate_training_memory(const MemoryInputs& in);

// The parameters a ViT of this config holds, from the config alone (before any tensor is
// allocated), as a double so that a hostile config cannot overflow it. Matches
// VisionTransformer::num_parameters() for every layout of nn/config.h (tests/fuzz/fuzz_model_config).
double config_param_count(const nn::ViTConfig& c);

// Before building a model: ValueError "memory: <what> needs about X for its parameters but only Y
// is available" when its float32 parameters alone (twice: weights being loaded sit beside them)
// cannot fit (a huge config allocated for 40 s before failing, issue 20).
void check_model_memory(const nn::ViTConfig& c, const std::string& what);

// The parameters of a whole CLIP (both towers, nn/clip.h) of this config, as a double; equals
// CLIP::num_parameters() (tests/peft/test_memory_guard.cpp).
double clip_config_param_count(const nn::CLIPConfig& c);
// check_model_memory for a CLIP config (the text tower's width is bounded at 2^20 only: 10^12
// parameters pass its validation).
void check_clip_model_memory(const nn::CLIPConfig& c, const std::string& what);

// The inputs for training `vit` as it is now (its trainable flags, prompts and config).
MemoryInputs memory_inputs(const nn::VisionTransformer& vit, int64_t batch, const std::string& optimizer);

// Memory the process can still take, in bytes: MemAvailable from `meminfo` (default
// /proc/meminfo), capped by the cgroup v2 limit (memory.max - memory.current) when there is one.
// -1 when it cannot be read (then the guard does not block).
int64_t available_memory_bytes(const std::string& meminfo = "/proc/meminfo",
                               const std::string& cgroup_dir = "/sys/fs/cgroup");

// "2.00 TiB", "1.50 GiB", "12.0 MiB", "1.5 KiB", "512 B".
std::string format_bytes(int64_t bytes);

// Throws ValueError naming the estimate, its parts and the available memory when the estimate
// exceeds `available_bytes` (nothing is checked when it is negative, i.e. unknown).
void check_memory(const MemoryEstimate& e, int64_t available_bytes);
// The same for training `vit` with this batch and optimizer, against available_memory_bytes().
void check_memory(const nn::VisionTransformer& vit, int64_t batch, const std::string& optimizer);

}  // namespace peft
