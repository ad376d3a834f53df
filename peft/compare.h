// `peft compare` as a library call: the cost of several methods on the same backbone, side by
// side (trainable parameters, GEMM FLOPs, step time, peak memory; peft/cost.h measures each).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/config.h"
#include "peft/cost.h"
#include "peft/method.h"

namespace peft {

// The model every method is attached to: config, base weights (empty: seeded random init) and
// the seed of the init and the method tensors (build_model).
struct BaseModel {
  nn::ViTConfig config;
  std::string weights;
  uint64_t seed = 0;
  bool checkpoint_activations = false;  // each model checkpoints its blocks (--checkpoint-activations)
};

// A fresh model with `method` attached over the base backbone, a head of `classes` classes.
// Throws MethodError for bad method options.
std::unique_ptr<nn::VisionTransformer> build_on_base(const BaseModel& base, const std::string& method,
                                                     const MethodOptions& o, int64_t classes);

// The head size the experiments use: the config's, or 10 for a features-only config.
int64_t classes_of(const nn::ViTConfig& c);

// One CostReport per method, in order (M = the --prompts value for methods that read it, else 0):
// each method on a fresh model, `steps` timed steps of `batch` images. Throws MethodError for bad
// method options, ValueError for batch or steps < 1.
std::vector<CostReport> compare_methods(const BaseModel& base, const std::vector<std::string>& methods,
                                        const MethodOptions& o, int64_t batch, int steps);

// One report as JSON (the keys of `peft compare --json` and `peft sweep --json` rows).
nlohmann::json cost_json(const CostReport& r);

}  // namespace peft
