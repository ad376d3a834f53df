// Dropout with an explicit generator (seeded runs repeat exactly); identity when not training.
#pragma once
#include "core/random.h"
#include "core/tensor.h"

namespace peft {

// Zeroes each element with probability p and scales the rest by 1/(1-p) (inverted dropout).
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

}  // namespace peft
