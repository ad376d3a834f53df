// Image decoding (stb_image), channel conversion and PNG writing (stb_image_write).
#include "data/image.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "data/jpeg_reduced.h"

namespace peft::data {

Image::Image(int64_t h, int64_t w, int64_t c) : H(h), W(w), C(c) {
  if (h < 0 || w < 0 || c < 0)
    throw ValueError("Image: negative size (got H=" + std::to_string(h) + ", W=" + std::to_string(w) +
                     ", C=" + std::to_string(c) + "). Hint: sizes must be >= 0");
  pixels.assign(static_cast<size_t>(h * w * c), 0.0f);
}

static void check_channels(int64_t channels, const char* op) {
  if (channels != 1 && channels != 3)
    throw ValueError(std::string(op) + ": unsupported channel count (got " + std::to_string(channels) +
                     ", expected 1 or 3). Hint: in_chans is 1 (grayscale) or 3 (RGB)");
}

Image from_uint8(const uint8_t* pixels, int64_t H, int64_t W, int64_t C) {
  Image img(H, W, C);
  const size_t n = img.pixels.size();
  for (size_t i = 0; i < n; ++i) img.pixels[i] = static_cast<float>(pixels[i]) / 255.0f;
  return img;
}

std::vector<uint8_t> to_uint8(const Image& img) {
  std::vector<uint8_t> out(img.pixels.size());
  for (size_t i = 0; i < out.size(); ++i) {
    float v = std::round(img.pixels[i] * 255.0f);
    out[i] = static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f));
  }
  return out;
}

// stb_image converts on request: gray -> RGB by replication, RGB -> gray with the integer luma
// (77 R + 150 G + 29 B) >> 8, alpha dropped.
// stb_image 2.27 (Debian's libstb) writes past its 257-entry Huffman size table when a JPEG DHT
// segment declares more than 256 codes (fixed upstream in 2.28: "bad size list"); found by
// tests/fuzz/fuzz_image. Walks the JPEG markers the way stb does and returns false for such a
// table, so the file is rejected before stb sees it. Other formats pass through.
// It also rejects a scan (SOS) that uses a Huffman table no DHT before it defined: stb 2.27 does
// not zero its decoder state, so it would decode with whatever the heap held (an out-of-bounds
// read that depends on earlier allocations; found by CI's fuzz run).
static bool jpeg_huffman_tables_ok(const uint8_t* p, size_t n) {
  if (n < 2 || p[0] != 0xFF) return true;  // stb takes FF..FF D8 as a JPEG start too (fill bytes)
  bool defined[2][4] = {};                 // [DC | AC][table id]
  size_t i = 0;
  while (i + 1 < n) {
    if (p[i] != 0xFF || p[i + 1] == 0xFF) {  // entropy-coded data or fill bytes: look for a marker
      ++i;
      continue;
    }
    const uint8_t m = p[i + 1];
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {  // stuffed 0xFF, TEM, RSTn, SOI: no length
      i += 2;
      continue;
    }
    if (m == 0xD9) return true;  // EOI
    const size_t len = i + 3 < n ? (static_cast<size_t>(p[i + 2]) << 8 | p[i + 3]) : 0;
    const size_t end = std::min(n, i + 2 + std::max<size_t>(len, 2));
    if (m == 0xC4) {  // DHT: one or more tables of 1 + 16 count bytes + the codes
      for (size_t q = i + 4; q < end;) {
        size_t codes = 0;
        for (size_t k = 1; k <= 16 && q + k < n; ++k) codes += p[q + k];  // stb reads 0 past the end
        if (codes > 256) return false;
        const uint8_t tc = p[q] >> 4, th = p[q] & 15;
        if (tc <= 1 && th <= 3) defined[tc][th] = true;
        q += 17 + codes;
      }
    }
    if (m == 0xDA && i + 4 < n) {  // SOS: Ns, then (component, DC table << 4 | AC table) pairs, Ss, Se
      const size_t ns = p[i + 4];
      if (i + 6 + 2 * ns < n) {
        const uint8_t ss = p[i + 5 + 2 * ns], se = p[i + 6 + 2 * ns];
        for (size_t k = 0; k < ns; ++k) {
          const uint8_t dc = p[i + 6 + 2 * k] >> 4, ac = p[i + 6 + 2 * k] & 15;
          if (ss == 0 && dc <= 3 && !defined[0][dc]) return false;  // a scan with DC coefficients
          if (se != 0 && ac <= 3 && !defined[1][ac]) return false;  // a scan with AC coefficients
        }
      }
    }
    i = end;
  }
  return true;
}

// stb_image 2.27 reads a PNM header's width, height and maxval into an int with no overflow check
// (signed overflow: undefined behaviour, found by CI's fuzz run), and its 16-bit path (maxval >
// 255) overreads the pixel buffer of a short file (heap-buffer-overflow in stbi__convert_16_to_8,
// found by the fuzz run of session 7). A binary PNM (P5/P6) is refused before stb sees it when a
// header number has more than 9 digits or maxval exceeds 255. Returns the problem, or nullptr.
static const char* pnm_header_problem(const uint8_t* b, size_t n) {
  if (n < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return nullptr;  // not a PNM stb decodes
  size_t i = 2;
  for (int number = 0; number < 3; ++number) {
    while (i < n) {  // whitespace and # comments, as stb skips them
      if (b[i] == '#') {
        while (i < n && b[i] != '\n' && b[i] != '\r') ++i;
      } else if (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == '\v' || b[i] == '\f') {
        ++i;
      } else {
        break;
      }
    }
    size_t digits = 0;
    int64_t value = 0;
    while (i < n && b[i] >= '0' && b[i] <= '9') {
      if (digits < 18) value = value * 10 + (b[i] - '0');
      ++i, ++digits;
    }
    if (digits > 9) return "corrupt PNM: a header number has more than 9 digits";
    if (digits == 0) return nullptr;  // malformed: stb rejects it itself
    if (number == 2 && value > 255) return "16-bit PNM (maxval above 255) is not supported; convert it to 8 bits";
  }
  return nullptr;
}

// stb_image 2.27 grows its IDAT buffer to hold a chunk's *declared* length before it reads the
// bytes: a 92-byte PNG whose second IDAT claims 1.35 GB made it realloc 2 GiB (libFuzzer
// out-of-memory, CI's fuzz run after session 8). Every chunk up to IEND must fit in the bytes the
// file has, which bounds stb's buffer by twice the file size. A PNG that fails this check is one
// stb would reject too (its read runs past the end), only after the allocation. Returns the
// problem, or nullptr.
static const char* png_chunk_problem(const uint8_t* b, size_t n) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (n < 8 || std::memcmp(b, kSignature, 8) != 0) return nullptr;  // not a PNG
  size_t pos = 8;
  while (pos + 8 <= n) {
    const uint64_t length = (uint64_t{b[pos]} << 24) | (uint64_t{b[pos + 1]} << 16) | (uint64_t{b[pos + 2]} << 8) | b[pos + 3];
    if (std::memcmp(b + pos + 4, "IEND", 4) == 0) return nullptr;
    if (length > n - pos - 8) return "truncated or corrupt PNG: a chunk claims more bytes than the file has";
    pos += 12 + length;  // length, type, data, CRC
  }
  return nullptr;  // no IEND: stb reports the truncation itself
}

Image decode_image(const uint8_t* bytes, size_t size, const std::string& name, int64_t channels) {
  check_channels(channels, "decode_image");
  if (size > static_cast<size_t>(INT32_MAX))  // stb takes the length as an int
    throw IOError("load_image: '" + name + "' is too large (got " + std::to_string(size) +
                  " bytes, expected at most 2^31 - 1). Hint: the file is not an image this program can read");
  if (!jpeg_huffman_tables_ok(bytes, size))
    throw IOError("load_image: cannot decode '" + name + "' (corrupt JPEG: a Huffman table has more than 256 codes, or a "
                  "scan uses a table no DHT defined). "
                  "Hint: the file is corrupt; remove or replace it");
  const char* problem = pnm_header_problem(bytes, size);
  if (problem == nullptr) problem = png_chunk_problem(bytes, size);
  if (problem != nullptr)
    throw IOError("load_image: cannot decode '" + name + "' (" + problem + "). Hint: the file is corrupt or unsupported; "
                  "remove, convert or replace it");
  // A few header bytes can claim a gigapixel image: stb would allocate it and decode for minutes
  // (a 244-byte TGA took > 25 s in tests/fuzz/fuzz_image). 2^26 pixels is 8192 x 8192.
  constexpr int64_t kMaxPixels = kMaxImagePixels;
  int64_t ih = 0, iw = 0;
  if (probe_image_memory(bytes, size, &ih, &iw) && iw * ih > kMaxPixels)
    throw IOError("load_image: '" + name + "' is too large (got " + std::to_string(iw) + " x " + std::to_string(ih) +
                  " pixels, expected at most " + std::to_string(kMaxPixels) + "). Hint: the file is corrupt or needs "
                  "downscaling first");
  int w = 0, h = 0, file_c = 0;
  uint8_t* px = stbi_load_from_memory(bytes, static_cast<int>(size), &w, &h, &file_c, static_cast<int>(channels));
  if (px == nullptr) {
    const char* why = stbi_failure_reason();
    throw IOError("load_image: cannot decode '" + name + "' (" + (why ? why : "unknown error") +
                  "). Hint: the file is corrupt or not a PNG/JPEG/BMP image; remove or replace it");
  }
  if (w <= 0 || h <= 0) {
    // stb accepts a BMP whose header says height 0 and returns an empty buffer.
    stbi_image_free(px);
    throw IOError("load_image: cannot decode '" + name + "' (empty image: " + std::to_string(w) + " x " +
                  std::to_string(h) + " pixels). Hint: the file is corrupt; remove or replace it");
  }
  Image img = from_uint8(px, h, w, channels);
  stbi_image_free(px);
  return img;
}

Image decode_image_reduced(const uint8_t* bytes, size_t size, const std::string& name, int64_t channels,
                           int64_t min_short_side) {
  check_channels(channels, "decode_image");
  // stb's Huffman-table overflow check runs first, so a file stb rejects is rejected here too
  if (min_short_side > 0 && looks_like_jpeg(bytes, size) && jpeg_huffman_tables_ok(bytes, size)) {
    Image img = decode_jpeg_reduced(bytes, size, channels, min_short_side);
    if (!img.empty()) return img;
  }
  return decode_image(bytes, size, name, channels);
}

static std::vector<uint8_t> read_image_file(const std::string& path, int64_t channels) {
  check_channels(channels, "load_image");
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw IOError("load_image: cannot open '" + path + "' (missing or unreadable). Hint: check the path");
  // one read of the whole file (an istreambuf_iterator copy goes byte by byte: slow for MB-sized JPEGs)
  f.seekg(0, std::ios::end);
  const std::streamoff n = f.tellg();
  f.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(n > 0 ? static_cast<size_t>(n) : 0);
  if (n > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), n))
    throw IOError("load_image: cannot read '" + path + "' (read error). Hint: check the file");
  if (bytes.empty())
    throw IOError("load_image: '" + path + "' is empty (got 0 bytes). Hint: the file is truncated; replace it");
  return bytes;
}

Image load_image(const std::string& path, int64_t channels) {
  const std::vector<uint8_t> bytes = read_image_file(path, channels);
  return decode_image(bytes.data(), bytes.size(), path, channels);
}

Image load_image_reduced(const std::string& path, int64_t channels, int64_t min_short_side) {
  const std::vector<uint8_t> bytes = read_image_file(path, channels);
  return decode_image_reduced(bytes.data(), bytes.size(), path, channels, min_short_side);
}

bool probe_image_memory(const uint8_t* bytes, size_t size, int64_t* H, int64_t* W, int64_t* C) {
  if (size > static_cast<size_t>(INT32_MAX) || !jpeg_huffman_tables_ok(bytes, size) || pnm_header_problem(bytes, size))
    return false;
  int w = 0, h = 0, c = 0;
  if (!stbi_info_from_memory(bytes, static_cast<int>(size), &w, &h, &c)) return false;
  // stb_image 2.27 reports a top-down BMP's height as stored: negative. Its decoder takes the
  // absolute value, so the probe must too: a 37-byte BMP of 4194304 x -71 pixels passed the
  // pixel limit as "no size" and stb then decoded 297 million pixels (fuzz_image, session 9).
  const int64_t w64 = std::abs(static_cast<int64_t>(w)), h64 = std::abs(static_cast<int64_t>(h));
  if (w64 == 0 || h64 == 0) return false;
  if (H) *H = h64;
  if (W) *W = w64;
  if (C) *C = c;
  return true;
}

namespace {

// The size a PNG (IHDR) or JPEG (SOFn) header states, read without stb.
bool claimed_size(const uint8_t* p, size_t n, int64_t* H, int64_t* W) {
  auto be16 = [&](size_t i) { return static_cast<int64_t>(p[i]) << 8 | p[i + 1]; };
  auto be32 = [&](size_t i) { return be16(i) << 16 | be16(i + 2); };
  if (n >= 24 && std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0 && std::memcmp(p + 12, "IHDR", 4) == 0) {
    *W = be32(16), *H = be32(20);
    return *W > 0 && *H > 0;
  }
  if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return false;
  for (size_t i = 2; i + 9 < n;) {
    if (p[i] != 0xFF) return false;
    const uint8_t m = p[i + 1];
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      *H = be16(i + 5), *W = be16(i + 7);
      return *W > 0 && *H > 0;
    }
    i += 2 + static_cast<size_t>(be16(i + 2));
  }
  return false;
}

}  // namespace

bool probe_image(const std::string& path, int64_t* H, int64_t* W, int64_t* C) {
  // Only the head of the file, through the same checks as decode_image: the probe read whole
  // files (a folder of large JPEGs was read twice, issue 20). Headers (PNG IHDR, JPEG markers up
  // to SOF, BMP/PNM/TGA/GIF headers) fit in 256 KiB; a JPEG with more metadata than that before
  // its frame header gets a second look at 16 MiB.
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::vector<uint8_t> head;
  for (const size_t cap : {size_t{256} << 10, size_t{16} << 20}) {
    head.resize(cap);
    f.clear();
    f.seekg(0);
    f.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(cap));
    head.resize(static_cast<size_t>(f.gcount()));
    if (probe_image_memory(head.data(), head.size(), H, W, C)) return true;
    // stb refuses a header of more than 2^30 bytes of pixels without its size: read it here, so
    // the caller can say "too large" instead of "corrupt".
    int64_t h = 0, w = 0;
    if (claimed_size(head.data(), head.size(), &h, &w) && too_many_pixels(h, w)) {
      if (H) *H = h;
      if (W) *W = w;
      if (C) *C = 3;
      return true;
    }
    if (head.size() < cap) return false;  // that was the whole file
  }
  return false;
}

Image convert_channels(const Image& img, int64_t channels) {
  check_channels(channels, "convert_channels");
  if (img.C == channels) return img;
  if (img.C < 1 || img.C > 4)
    throw ValueError("convert_channels: unsupported input channel count (got " + std::to_string(img.C) +
                     ", expected 1 to 4)");
  Image out(img.H, img.W, channels);
  const int64_t n = img.H * img.W;
  for (int64_t p = 0; p < n; ++p) {
    const float* src = &img.pixels[static_cast<size_t>(p * img.C)];
    float* dst = &out.pixels[static_cast<size_t>(p * channels)];
    if (channels == 3) {
      if (img.C <= 2) {  // gray (+ alpha): replicate
        dst[0] = dst[1] = dst[2] = src[0];
      } else {  // RGB(A): drop alpha
        dst[0] = src[0], dst[1] = src[1], dst[2] = src[2];
      }
    } else {  // channels == 1
      dst[0] = img.C <= 2 ? src[0] : 0.299f * src[0] + 0.587f * src[1] + 0.114f * src[2];
    }
  }
  return out;
}

void save_png(const Image& img, const std::string& path) {
  if (img.C != 1 && img.C != 3 && img.C != 4)
    throw ValueError("save_png: unsupported channel count (got " + std::to_string(img.C) +
                     ", expected 1, 3 or 4)");
  if (img.H <= 0 || img.W <= 0)
    throw ValueError("save_png: empty image (got " + std::to_string(img.H) + "x" + std::to_string(img.W) + ")");
  std::vector<uint8_t> px = to_uint8(img);
  int ok = stbi_write_png(path.c_str(), static_cast<int>(img.W), static_cast<int>(img.H), static_cast<int>(img.C),
                          px.data(), static_cast<int>(img.W * img.C));
  if (!ok) throw IOError("save_png: cannot write '" + path + "'. Hint: check that the folder exists and is writable");
}

}  // namespace peft::data
