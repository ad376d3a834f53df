// timm's secondary and final train stages: which of RandAugment / colour jitter runs (jitter is
// off when --aa is given, transforms_factory's disable_color_jitter), then normalise, then erase.
#include "data/train_augment.h"

#include <cmath>

#include "core/error.h"
#include "data/color_jitter.h"

namespace peft::data {

TrainAugment::TrainAugment(const Augment& a, const Normalization& norm, const std::string& interpolation)
    : norm_(norm) {
  if (!a.aa.empty()) {
    rand_augment_ = true;
    aa_ = parse_rand_augment(a.aa);
    hp_.fill = fill_from_mean(norm.mean);
    hp_.resample = pil::resample_by_name(interpolation, "--aa");
  }
  if (!std::isfinite(a.color_jitter) || a.color_jitter < 0)
    throw ValueError("--color-jitter: must be a finite number >= 0 (got " + std::to_string(a.color_jitter) + ")");
  if (!rand_augment_) jitter_ = a.color_jitter;
  erasing_.probability = a.reprob;
  erasing_.mode = a.remode;
  erasing_.max_count = a.recount;
  erasing_.validate();
}

Image TrainAugment::secondary(const Image& img, Generator& gen) const {
  if (!rand_augment_ && jitter_ == 0) return img;
  ImageU8 u = to_u8(img);
  if (img.C == 1) {
    // a grey picture has one fill value: the mean of the three (PIL's "L" images take one)
    const int m = (hp_.fill[0] + hp_.fill[1] + hp_.fill[2] + 1) / 3;
    RandAugmentHParams hp = hp_;
    hp.fill = {static_cast<uint8_t>(m), static_cast<uint8_t>(m), static_cast<uint8_t>(m)};
    u = rand_augment_ ? rand_augment(u, aa_, hp, gen) : color_jitter(u, jitter_, gen);
  } else {
    u = rand_augment_ ? rand_augment(u, aa_, hp_, gen) : color_jitter(u, jitter_, gen);
  }
  return to_float(u);
}

Tensor TrainAugment::operator()(const Image& img, Generator& gen) const {
  Tensor t = to_tensor(secondary(img, gen), norm_);
  if (erasing_.probability > 0) random_erase(t.data<float>(), img.C, img.H, img.W, erasing_, gen);
  return t;
}

}  // namespace peft::data
