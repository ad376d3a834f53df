// TurboJPEG scaled decoding: header, choice of the scale factor, decode; any failure -> empty.
#include "data/jpeg_reduced.h"

#include <turbojpeg.h>

#include <algorithm>
#include <memory>
#include <vector>

namespace peft::data {

namespace {

struct TjDestroy {
  void operator()(void* h) const { tjDestroy(h); }
};

// One decompressor per thread: the loader decodes on its prefetch thread and the caller's.
tjhandle thread_decompressor() {
  thread_local std::unique_ptr<void, TjDestroy> handle(tjInitDecompress());
  return handle.get();
}

constexpr int64_t kMaxPixels = int64_t{1} << 26;  // decode_image's limit (image.cpp)

}  // namespace

bool looks_like_jpeg(const uint8_t* bytes, size_t size) {
  return size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
}

Image decode_jpeg_reduced(const uint8_t* bytes, size_t size, int64_t channels, int64_t min_short_side) {
  if ((channels != 1 && channels != 3) || min_short_side <= 0 || !looks_like_jpeg(bytes, size)) return {};
  if (size > static_cast<size_t>(UINT32_MAX)) return {};
  tjhandle tj = thread_decompressor();
  if (tj == nullptr) return {};
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, bytes, static_cast<unsigned long>(size), &w, &h, &subsamp, &colorspace) != 0) return {};
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > kMaxPixels) return {};

  int n = 0;
  const tjscalingfactor* sf = tjGetScalingFactors(&n);
  if (sf == nullptr) return {};
  int best_w = w, best_h = h;
  for (int k = 0; k < n; ++k) {
    if (sf[k].num >= sf[k].denom) continue;  // only reductions
    const int sw = TJSCALED(w, sf[k]), sh = TJSCALED(h, sf[k]);
    if (std::min(sw, sh) >= min_short_side && static_cast<int64_t>(sw) * sh < static_cast<int64_t>(best_w) * best_h) {
      best_w = sw;
      best_h = sh;
    }
  }
  if (best_w == w && best_h == h) return {};  // full size: stb_image decodes it, as before

  const int pf = channels == 3 ? TJPF_RGB : TJPF_GRAY;
  std::vector<uint8_t> px(static_cast<size_t>(best_w) * static_cast<size_t>(best_h) * static_cast<size_t>(channels));
  // width/height select the scale factor that yields exactly best_w x best_h; a warning (e.g.
  // premature end of data) is an error here, so that stb_image decides about imperfect files
  if (tjDecompress2(tj, bytes, static_cast<unsigned long>(size), px.data(), best_w, 0, best_h, pf,
                    TJFLAG_STOPONWARNING) != 0)
    return {};
  return from_uint8(px.data(), best_h, best_w, channels);
}

}  // namespace peft::data
