// Resizing with PIL's resampling filters (Image.resize), the filters timm's eval transform uses.
#pragma once
#include <cstdint>
#include <string>

#include "data/image.h"

namespace peft::data {

// Resizes to out_h x out_w the way PIL's Image.resize does, which is also what torchvision's
// F.resize(antialias=True) computes on float tensors (PyTorch's *_aa kernels copy PIL): a
// separable filter (horizontal pass first, then vertical) whose support is widened by the shrink
// factor when shrinking (antialias), with weights normalised over the taps inside the image.
//   "bicubic":  Keys cubic, a = -0.5, support 2
//   "bilinear": triangle, support 1 (upscaling equals F.interpolate(align_corners=False))
//   "nearest":  PIL's nearest: source pixel floor((dst + 0.5) * in / out) as PIL accumulates it,
//               no antialias (PyTorch's "nearest-exact" but for exact ties; torchvision's tensor
//               "nearest" picks floor(dst * in / out))
// An axis whose size does not change is copied. Values are not clamped: bicubic can overshoot
// [0, 1] near edges, as on a float tensor. Throws ValueError for an unknown interpolation or an
// empty image / size.
Image resize(const Image& img, int64_t out_h, int64_t out_w, const std::string& interpolation);

// Throws ValueError naming `what` unless `interpolation` is bicubic, bilinear or nearest.
void check_interpolation(const std::string& interpolation, const std::string& what);

}  // namespace peft::data
