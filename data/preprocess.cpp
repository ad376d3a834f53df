// A checkpoint's preprocessing: validation, the one-line description, the eval transform (timm's
// transforms_factory eval path on PIL images) and the loader transform built on it.
#include "data/preprocess.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "data/resample.h"
#include "data/train_augment.h"

namespace peft::data {

void Preprocess::validate() const {
  const std::string where = " [" + source + "]";
  if (size <= 0)
    throw ValueError(fmt::format("preprocess: size must be positive (got {}){}. Hint: the model's image_size", size, where));
  check_interpolation(interpolation, "preprocess: interpolation" + where);
  if (!(crop_pct > 0.0 && crop_pct <= 1.0))
    throw ValueError(fmt::format("preprocess: crop_pct must be in (0, 1] (got {}){}. Hint: timm uses 0.875 or 0.9",
                                 crop_pct, where));
  if (crop_mode != "center" && crop_mode != "squash")
    throw ValueError("preprocess: unknown crop_mode '" + crop_mode + "'" + where + " (expected center or squash)");
  for (size_t c = 0; c < 3; ++c)
    if (!(norm.std[c] > 0.0f) || !std::isfinite(norm.mean[c]))
      throw ValueError(fmt::format("preprocess: norm channel {} has mean {} and std {}{} (expected a finite mean and "
                                   "std > 0)",
                                   c, norm.mean[c], norm.std[c], where));
}

std::string Preprocess::describe() const {
  const std::string crop = crop_mode == "center" ? fmt::format("center crop {:g}", crop_pct) : std::string("squash");
  return fmt::format("{} px, {}, {}, mean ({:g}, {:g}, {:g}), std ({:g}, {:g}, {:g}) [{}]", size, interpolation, crop,
                     norm.mean[0], norm.mean[1], norm.mean[2], norm.std[0], norm.std[1], norm.std[2], source);
}

Preprocess squash_preprocess(int64_t size) {
  Preprocess p;
  p.size = size;
  p.interpolation = "bilinear";
  p.crop_pct = 1.0;
  p.crop_mode = "squash";
  p.source = "image_size " + std::to_string(size);
  return p;
}

int64_t eval_resize_short_side(const Preprocess& p) {
  p.validate();
  if (p.crop_mode == "squash") return p.size;
  // timm: scale_size = math.floor(img_size / crop_pct)
  return static_cast<int64_t>(std::floor(static_cast<double>(p.size) / p.crop_pct));
}

namespace {

void clamp01(Image& img) {
  for (float& v : img.pixels) v = std::clamp(v, 0.0f, 1.0f);
}

}  // namespace

Image eval_transform(const Image& original, const Preprocess& p) {
  p.validate();
  if (original.H <= 0 || original.W <= 0)
    throw ValueError("eval_transform: empty image (got " + std::to_string(original.H) + "x" +
                     std::to_string(original.W) + ")");
  const int64_t S = p.size;
  int64_t oh = S, ow = S;
  if (p.crop_mode == "center") {
    // torchvision's Resize(int): the short side becomes R, the long side int(R * long / short)
    const int64_t R = eval_resize_short_side(p);
    const int64_t shorter = std::min(original.H, original.W), longer = std::max(original.H, original.W);
    const auto new_long =
        static_cast<int64_t>(static_cast<double>(R * longer) / static_cast<double>(shorter));
    if (original.W <= original.H) {
      ow = R;
      oh = new_long;
    } else {
      oh = R;
      ow = new_long;
    }
  }
  if (oh == original.H && ow == original.W) return p.crop_mode == "center" ? center_crop(original, S) : original;
  Image out = resize(original, oh, ow, p.interpolation);
  // a PIL image (what timm resizes) is uint8 and cannot overshoot; float bicubic can, near edges
  if (p.interpolation == "bicubic") clamp01(out);
  return p.crop_mode == "center" ? center_crop(out, S) : out;
}

Image random_resized_crop_original(const Image& original, const Preprocess& p, Generator& gen) {
  p.validate();
  const CropBox b = random_resized_crop_box(original.H, original.W, gen);
  Image out = resize(crop(original, b.top, b.left, b.h, b.w), p.size, p.size, p.interpolation);
  if (p.interpolation == "bicubic") clamp01(out);
  return out;
}

Transform make_transform(const Augment& a, const Preprocess& p) {
  p.validate();
  Augment rest = a;
  rest.rrc = false;  // done here, on the original; flip and shift follow as in apply_augment
  // then RandAugment or jitter, normalisation and erasing (data/train_augment.h)
  const TrainAugment later(a, p.norm, p.interpolation);
  if (!a.rrc)
    return [rest, later](const Image& img, Generator& gen) { return later(apply_augment(img, rest, gen), gen); };
  return [rest, p, later](const Image& original, Generator& gen) {
    return later(apply_augment(random_resized_crop_original(original, p, gen), rest, gen), gen);
  };
}

}  // namespace peft::data
