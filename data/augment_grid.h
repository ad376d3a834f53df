// A picture of what training sees (`peft augment`): rows of examples, each the eval image
// followed by augmented views, where view v is exactly what the training loader hands the model
// for that example in epoch v + 1 with the same seed (the loader's own per-example streams).
#pragma once
#include <cstdint>

#include "data/dataset.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "data/transforms.h"

namespace peft::data {

struct AugmentGridOptions {
  int64_t samples = 16;   // augmented views in all
  int64_t per_row = 4;    // views per example (one row each; the eval image comes first; at most `samples`)
  uint64_t seed = 0;      // the training run's --seed
  int64_t gap = 2;        // white pixels between tiles
};

// The rows' examples are spread evenly over the dataset (datasets are often sorted by class).
// Normalised views are mapped back to [0, 1] with p.norm (random-erasing noise is clipped).
// Throws ValueError naming --n or --per-image when they are not positive.
Image augment_grid(const DatasetPtr& ds, const Augment& a, const Preprocess& p, const AugmentGridOptions& o);

// The inverse of to_chw: [C, H, W] normalised floats -> an H x W x C image clipped to [0, 1].
Image from_chw(const float* chw, int64_t C, int64_t H, int64_t W, const Normalization& norm);

}  // namespace peft::data
