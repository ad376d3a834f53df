// ColorJitter.forward / get_params (torchvision 0.14) without hue: fn_idx = randperm(4), then
// the brightness, contrast and saturation factors, then the adjustments in fn_idx order.
#include "data/color_jitter.h"

#include <array>
#include <cmath>
#include <string>
#include <utility>

#include "core/error.h"

namespace peft::data {

ImageU8 color_jitter(const ImageU8& img, double strength, Generator& gen) {
  if (!std::isfinite(strength) || strength < 0)
    throw ValueError("--color-jitter: must be a finite number >= 0 (got " + std::to_string(strength) + ")");
  if (strength == 0) return img;
  std::array<int, 4> order = {0, 1, 2, 3};  // 3 = hue, which timm's scalar form leaves off
  for (int i = 3; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[gen.next_u64() % static_cast<uint64_t>(i + 1)]);
  const double lo = std::max(0.0, 1.0 - strength), hi = 1.0 + strength;
  std::array<double, 3> factor{};
  for (double& f : factor) f = lo + (hi - lo) * gen.uniform();
  ImageU8 out = img;
  for (int fn : order) {
    if (fn == 0) out = pil::enhance_brightness(out, factor[0]);
    if (fn == 1) out = pil::enhance_contrast(out, factor[1]);
    if (fn == 2) out = pil::enhance_color(out, factor[2]);
  }
  return out;
}

}  // namespace peft::data
