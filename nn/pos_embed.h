// Position-embedding resampling for a new image size (timm's resample_abs_pos_embed).
#pragma once
#include "core/tensor.h"

namespace peft::nn {

// Resizes the patch grid of a position embedding [1, P+g*g, D] (or [P+g*g, D]) to new_grid x
// new_grid with antialiased bicubic interpolation (PyTorch's interpolate(mode='bicubic',
// antialias=True, align_corners=False), timm's default); the P prefix rows (CLS) are kept.
// Throws ShapeError when the rows after the prefix are not a square grid.
Tensor resample_pos_embed(const Tensor& pos, int64_t new_grid, int64_t num_prefix = 1);

}  // namespace peft::nn
