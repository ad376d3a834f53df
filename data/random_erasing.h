// timm's RandomErasing (timm/data/random_erasing.py) on one normalised CHW image: with
// probability p, `count` boxes (count uniform in [1, max_count]) of area fraction uniform in
// [0.02, 1/3] / count and log-uniform aspect ratio in [0.3, 1/0.3], filled with zeros ("const"),
// one normal value per channel ("rand") or per-pixel normal noise ("pixel"). Erasing happens after
// normalisation, so 0 is the dataset mean and the noise has the data's spread.
#pragma once
#include <cstdint>
#include <string>

#include "core/random.h"

namespace peft::data {

struct RandomErasing {
  double probability = 0;
  std::string mode = "pixel";  // const | rand | pixel (timm's train.py default --remode pixel)
  int64_t max_count = 1;       // --recount
  double min_area = 0.02, max_area = 1.0 / 3.0;
  double min_aspect = 0.3;     // max_aspect = 1 / min_aspect

  // ValueError naming --reprob / --remode / --recount.
  void validate() const;
};

// Erases in place in `chw` ([C, H, W] floats). Up to 10 tries per box for one that fits
// (w < W and h < H, as timm), none when all ten miss.
void random_erase(float* chw, int64_t C, int64_t H, int64_t W, const RandomErasing& re, Generator& gen);

}  // namespace peft::data
