// RandomErasing._erase: the draws in timm's order (probability, count, then per try area,
// aspect, and for a box that fits top, left and the fill).
#include "data/random_erasing.h"

#include <cmath>

#include "core/error.h"

namespace peft::data {

namespace {

// random.randint(lo, hi): inclusive.
int64_t randint(Generator& gen, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(hi - lo + 1));
}

}  // namespace

void RandomErasing::validate() const {
  if (!(probability >= 0 && probability <= 1))
    throw ValueError("--reprob: must be in [0, 1] (got " + std::to_string(probability) + ")");
  if (mode != "const" && mode != "rand" && mode != "pixel")
    throw ValueError("--remode: unknown mode '" + mode + "' (expected const, rand or pixel)");
  if (max_count < 1) throw ValueError("--recount: must be >= 1 (got " + std::to_string(max_count) + ")");
}

void random_erase(float* chw, int64_t C, int64_t H, int64_t W, const RandomErasing& re, Generator& gen) {
  if (re.probability <= 0 || gen.uniform() > re.probability) return;
  const double area = static_cast<double>(H * W);
  const int64_t count = re.max_count == 1 ? 1 : randint(gen, 1, re.max_count);
  const double log_a0 = std::log(re.min_aspect), log_a1 = std::log(1.0 / re.min_aspect);
  for (int64_t k = 0; k < count; ++k) {
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target = (re.min_area + (re.max_area - re.min_area) * gen.uniform()) * area / static_cast<double>(count);
      const double aspect = std::exp(log_a0 + (log_a1 - log_a0) * gen.uniform());
      const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(target * aspect)));
      const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(target / aspect)));
      if (!(w < W && h < H)) continue;
      const int64_t top = randint(gen, 0, H - h), left = randint(gen, 0, W - w);
      for (int64_t c = 0; c < C; ++c) {
        // "rand": one normal value per channel; "pixel": one per pixel; "const": zero
        const float channel_value = re.mode == "rand" ? static_cast<float>(gen.normal()) : 0.0f;
        for (int64_t y = top; y < top + h; ++y)
          for (int64_t x = left; x < left + w; ++x)
            chw[(c * H + y) * W + x] = re.mode == "pixel" ? static_cast<float>(gen.normal()) : channel_value;
      }
      break;
    }
  }
}

}  // namespace peft::data
