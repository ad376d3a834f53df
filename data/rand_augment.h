// timm's RandAugment (timm/data/auto_augment.py: rand_augment_transform, AugmentOp, RandAugment)
// on the uint8 picture: n ops drawn uniformly with replacement from timm's list, each applied
// with probability p at magnitude m (optionally noised), with timm's level-to-argument rules.
// The ops are PIL's (data/pil_ops.h). All randomness comes from the caller's Generator.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/random.h"
#include "data/pil_ops.h"

namespace peft::data {

// The --aa string, e.g. "rand-m9-mstd0.5-inc1": sections after "rand", separated by '-':
// m (int magnitude, default 10), n (int ops per image, default 2), p (per-op probability, 0.5),
// mstd (std of a normal noise on the magnitude; > 100 means uniform in [0, m]), mmax (int upper
// bound of the noised magnitude, default 10), inc (any value selects timm's "increasing" op set,
// as timm's bool(str) does).
struct RandAugmentConfig {
  double magnitude = 10;
  int64_t num_layers = 2;
  double prob = 0.5;
  double magnitude_std = 0;  // +inf: uniform in [0, magnitude]
  double magnitude_max = 10;
  bool increasing = false;
  std::string text;  // the string it was parsed from
};
// Throws ValueError naming --aa and the bad section.
RandAugmentConfig parse_rand_augment(const std::string& config);

// timm's hparams for the ops: fill colour of the geometric ops (img_mean: round(255 * mean) per
// channel) and their interpolation.
struct RandAugmentHParams {
  std::array<uint8_t, 3> fill{128, 128, 128};
  pil::Resample resample = pil::Resample::bicubic;
  double translate_pct = 0.45;
};
// img_mean = min(255, round(255 * mean[c])) with Python's round (half to even).
std::array<uint8_t, 3> fill_from_mean(const std::array<float, 3>& mean);

// The op names of timm's _RAND_TRANSFORMS (increasing = false) or _RAND_INCREASING_TRANSFORMS.
const std::vector<std::string>& rand_augment_ops(bool increasing);

// timm's LEVEL_TO_ARG for `name` at a magnitude in [0, mmax]; `negate` is the draw of
// _randomly_negate (used by Rotate, Shear*, Translate*Rel, *Increasing enhancements).
// Returns the op's one argument (0 for ops without one).
double rand_augment_arg(const std::string& name, double magnitude, bool negate, const RandAugmentHParams& hp);

// NAME_TO_OP: applies op `name` with its argument (degrees, bits, threshold, factor, shear or
// translate fraction).
ImageU8 apply_rand_augment_op(const std::string& name, const ImageU8& img, double arg, const RandAugmentHParams& hp);

// RandAugment.__call__: num_layers ops, each AugmentOp.__call__ (apply when u <= prob, noised and
// clipped magnitude, level argument, op).
ImageU8 rand_augment(const ImageU8& img, const RandAugmentConfig& cfg, const RandAugmentHParams& hp, Generator& gen);

}  // namespace peft::data
