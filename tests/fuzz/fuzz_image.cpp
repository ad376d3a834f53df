// libFuzzer harness: arbitrary bytes as an image file (data::decode_image, stb_image). It may only
// throw peft::Error subclasses; a decoded image must have the asked channels and consistent size.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  // A few header bytes can claim up to decode_image's 2^26-pixel limit, and stb then fills that
  // many pixels: ~1 s per input under ASan, so the fuzzer ran at < 50 inputs/s and its RSS grew
  // past 1 GB. Claimed sizes above 2^20 pixels take the same decoder paths with larger loops;
  // the limit itself is tested in tests/data/test_image_regressions.cpp.
  int64_t h = 0, w = 0;
  if (data::probe_image_memory(data, size, &h, &w) && h * w > (int64_t{1} << 20)) return 0;
  for (int64_t channels : {int64_t{3}, int64_t{1}}) {
    try {
      data::Image img = data::decode_image(data, size, "fuzz.img", channels);
      if (img.C != channels || img.H <= 0 || img.W <= 0 ||
          img.pixels.size() != static_cast<size_t>(img.H * img.W * img.C))
        __builtin_trap();
      for (float v : img.pixels)
        if (!(v >= 0.0f && v <= 1.0f)) __builtin_trap();
    } catch (const Error&) {
    }
  }
  return 0;
}
