// Position-embedding resampling for a new image size (timm's resample_abs_pos_embed).
#pragma once
#include "core/tensor.h"

namespace peft::nn {

// Resizes the patch grid of a position embedding [1, P+g*g, D] (or [P+g*g, D]) to new_grid x
// new_grid with antialiased bicubic interpolation (PyTorch's interpolate(mode='bicubic',
// antialias=True, align_corners=False), timm's default); the P prefix rows (CLS) are kept.
// Throws ShapeError when the rows after the prefix are not a square grid.
Tensor resample_pos_embed(const Tensor& pos, int64_t new_grid, int64_t num_prefix = 1);

// DINOv2's interpolate_pos_encoding (facebookresearch/dinov2 vision_transformer.py): bicubic
// WITHOUT antialias (PyTorch's cubic convolution, A = -0.75, edge taps clamped), driven by the
// scale factor (new_grid + offset) / g with offset 0.1, so source coordinates are
// (dst + 0.5) * g / (new_grid + offset) - 0.5. Prefix rows are kept.
Tensor resample_pos_embed_dinov2(const Tensor& pos, int64_t new_grid, int64_t num_prefix = 1, double offset = 0.1);

}  // namespace peft::nn
