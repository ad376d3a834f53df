// Reduced-scale JPEG decoding with libjpeg-turbo's DCT scaling (the TurboJPEG API).
#pragma once
#include <cstddef>
#include <cstdint>

#include "data/image.h"

namespace peft::data {

// Decodes a JPEG at the smallest scale M/8 < 1 that libjpeg-turbo offers (tjGetScalingFactors:
// 7/8 ... 1/8) whose short side is still >= min_short_side: the IDCT itself produces the smaller
// image, so most of the decoding and the later resize is skipped (PIL's Image.draft does the
// same). `channels` is 1 (the JPEG's luma) or 3 (RGB).
// Returns an empty Image, and decodes nothing, when no reduced scale fits, when the image exceeds
// decode_image's 2^26-pixel limit, or when libjpeg-turbo reports any error or warning (corrupt or
// truncated data, CMYK, ...): the caller then decodes with stb_image, the reference decoder, whose
// verdict (an image, or an IOError naming the file) stands.
Image decode_jpeg_reduced(const uint8_t* bytes, size_t size, int64_t channels, int64_t min_short_side);

// The JPEG start-of-image marker FF D8 FF.
bool looks_like_jpeg(const uint8_t* bytes, size_t size);

}  // namespace peft::data
