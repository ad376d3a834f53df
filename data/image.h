// Image: an H x W x C float picture in [0, 1] (HWC, row-major), decoded with stb_image.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace peft::data {

// Pixels are float in [0, 1], stored interleaved (HWC) like the decoded file, so that decoding
// is one pass; to_tensor() in transforms.h turns an Image into a CHW tensor.
struct Image {
  int64_t H = 0, W = 0, C = 0;
  std::vector<float> pixels;  // [H, W, C]

  Image() = default;
  Image(int64_t h, int64_t w, int64_t c);  // black (all zeros)

  bool empty() const { return pixels.empty(); }
  float& at(int64_t y, int64_t x, int64_t c) { return pixels[static_cast<size_t>((y * W + x) * C + c)]; }
  float at(int64_t y, int64_t x, int64_t c) const {
    return pixels[static_cast<size_t>((y * W + x) * C + c)];
  }
};

// Decodes a PNG, JPEG, BMP, (or any format stb_image knows) file into an image with `channels`
// channels: 1 (grayscale) or 3 (RGB). Grayscale files are replicated to RGB, colour files are
// reduced to luminance for 1 channel, and alpha is dropped (stb_image's own conversions).
// Throws IOError naming the file when it is missing, unreadable or corrupt.
Image load_image(const std::string& path, int64_t channels = 3);

// Same, from bytes in memory; `name` is used in error messages.
Image decode_image(const uint8_t* bytes, size_t size, const std::string& name, int64_t channels = 3);

// Same as load_image / decode_image, but a JPEG whose short side exceeds `min_short_side` is
// decoded at a reduced scale (libjpeg-turbo, data/jpeg_reduced.h): the smallest M/8 whose short
// side stays >= min_short_side. Other formats, JPEGs with no smaller scale that fits, and JPEGs
// libjpeg-turbo does not decode cleanly go to stb_image as in load_image (same errors).
Image load_image_reduced(const std::string& path, int64_t channels, int64_t min_short_side);
Image decode_image_reduced(const uint8_t* bytes, size_t size, const std::string& name, int64_t channels,
                           int64_t min_short_side);

// The most pixels an image may have (8192 x 8192): a few header bytes can claim a gigapixel
// image, which stb would allocate and decode for minutes.
constexpr int64_t kMaxImagePixels = int64_t{1} << 26;
// h x w > kMaxImagePixels, without multiplying (a PNG header may claim 2^32 - 1 both ways; found
// by tests/fuzz/fuzz_image_folder as a signed overflow).
constexpr bool too_many_pixels(int64_t h, int64_t w) { return h > 0 && w > kMaxImagePixels / h; }

// Reads only the header (the file's first 256 KiB, 16 MiB for a JPEG with much metadata): true
// when stb_image recognises the file as an image. Cheap; used to reject non-image files when a
// dataset is opened rather than in the middle of training.
bool probe_image(const std::string& path, int64_t* H = nullptr, int64_t* W = nullptr, int64_t* C = nullptr);

// Same, for bytes in memory (the header check decode_image does first).
bool probe_image_memory(const uint8_t* bytes, size_t size, int64_t* H = nullptr, int64_t* W = nullptr,
                        int64_t* C = nullptr);

// Converts between 1 and 3 channels (and drops a 4th): gray -> RGB replicates, RGB -> gray uses
// the ITU-R 601 luma weights (0.299, 0.587, 0.114), like PIL's convert("L").
Image convert_channels(const Image& img, int64_t channels);

// Pixels rounded to uint8 (clamped to [0, 255]), HWC order.
std::vector<uint8_t> to_uint8(const Image& img);
// From uint8 HWC pixels (divided by 255).
Image from_uint8(const uint8_t* pixels, int64_t H, int64_t W, int64_t C);

// Writes the image as an 8-bit PNG (stb_image_write). C must be 1, 3 or 4. Throws IOError
// naming the file if it cannot be written.
void save_png(const Image& img, const std::string& path);

}  // namespace peft::data
