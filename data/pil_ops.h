// PIL's uint8 picture operations that timm's RandAugment and torchvision's ColorJitter call
// (ImageOps, ImageEnhance, Image.blend, Image.transform AFFINE, Image.rotate), re-done bit for
// bit on an 8-bit HWC buffer: the augmentations are defined on PIL images, whose rounding and
// clipping after every op are part of their result.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace peft::data {

// A uint8 picture, HWC, C = 1 ("L") or 3 ("RGB"): what a PIL image holds.
struct ImageU8 {
  int64_t H = 0, W = 0, C = 0;
  std::vector<uint8_t> px;  // [H, W, C]

  ImageU8() = default;
  ImageU8(int64_t h, int64_t w, int64_t c) : H(h), W(w), C(c), px(static_cast<size_t>(h * w * c), 0) {}
  uint8_t& at(int64_t y, int64_t x, int64_t c) { return px[static_cast<size_t>((y * W + x) * C + c)]; }
  uint8_t at(int64_t y, int64_t x, int64_t c) const { return px[static_cast<size_t>((y * W + x) * C + c)]; }
};

// Rounded and clamped to 0..255 (to_uint8), and back (x / 255).
ImageU8 to_u8(const Image& img);
Image to_float(const ImageU8& img);

namespace pil {

// PIL's resampling filters for transform/rotate (Image.Resampling names).
enum class Resample { nearest, bilinear, bicubic };
// "nearest" | "bilinear" | "bicubic"; ValueError naming `what` otherwise.
Resample resample_by_name(const std::string& name, const std::string& what);

// ImageOps (cutoff 0, no mask): per channel.
ImageU8 autocontrast(const ImageU8& img);
ImageU8 equalize(const ImageU8& img);
ImageU8 invert(const ImageU8& img);
ImageU8 posterize(const ImageU8& img, int bits);      // keeps the top `bits` bits (0..8)
ImageU8 solarize(const ImageU8& img, int threshold);  // v >= threshold -> 255 - v
// timm's solarize_add: v < threshold -> min(255, v + add).
ImageU8 solarize_add(const ImageU8& img, int add, int threshold = 128);

// Image.blend(a, b, alpha) = a + alpha * (b - a) in float, truncated (clipped when alpha is
// outside [0, 1]).
ImageU8 blend(const ImageU8& a, const ImageU8& b, double alpha);
// ImageEnhance: the blend of a degenerate picture and the image with `factor`.
ImageU8 enhance_brightness(const ImageU8& img, double factor);  // degenerate: black
ImageU8 enhance_contrast(const ImageU8& img, double factor);    // degenerate: the mean grey level
ImageU8 enhance_color(const ImageU8& img, double factor);       // degenerate: convert("L") (saturation)
ImageU8 enhance_sharpness(const ImageU8& img, double factor);   // degenerate: ImageFilter.SMOOTH
// convert("L"): (19595 R + 38470 G + 7471 B + 0x8000) >> 16; a 1-channel image is returned as is.
ImageU8 to_luma(const ImageU8& img);

// Image.transform(size, AFFINE, m, resample, fillcolor=fill): output pixel (x, y) samples the
// input at (m0 (x+.5) + m1 (y+.5) + m2, m3 (x+.5) + m4 (y+.5) + m5); pixels that map outside the
// input keep `fill` (one value per channel; a 1-channel image uses fill[0]).
ImageU8 affine(const ImageU8& img, const std::array<double, 6>& m, Resample resample,
               const std::array<uint8_t, 3>& fill);
// Image.rotate(degrees, resample, fillcolor=fill): counter-clockwise about the centre, same size;
// 0, 180 (and 90, 270 on a square image) are exact transposes, as in PIL.
ImageU8 rotate(const ImageU8& img, double degrees, Resample resample, const std::array<uint8_t, 3>& fill);

}  // namespace pil
}  // namespace peft::data
