// Helpers the method tests share: every trainable tensor away from its identity init.
#pragma once
#include <set>
#include <string>

#include "autograd/grad_mode.h"
#include "core/random.h"
#include "nn/module.h"
#include "peft/method.h"

namespace peft::testing {

// Non-trivial values for every trainable tensor (LoRA B and adapter up-projections non-zero, SSF
// scales away from 1), so that each one matters for the output. With all = true the frozen
// tensors too (LayerNorm weights, layer scale and SSF scales around 1, the rest around 0).
inline void randomize_trainable(nn::Module& m, uint64_t seed, bool all = false) {
  NoGradGuard ng;
  Generator g(seed);
  for (auto& [n, p] : m.named_parameters()) {
    if (!all && !p.requires_grad()) continue;
    const bool around_one = n.find("ssf_scale") != std::string::npos ||
                            (all && (n.find("gamma") != std::string::npos || n.find("norm") != std::string::npos));
    Tensor(p).copy_(randn(p.sizes(), g, p.dtype(), around_one ? 1.0 : 0.0, 0.3));
  }
}

inline std::set<std::string> trainable_set(const nn::Module& m) {
  auto v = trainable_names(m);
  return {v.begin(), v.end()};
}

}  // namespace peft::testing
