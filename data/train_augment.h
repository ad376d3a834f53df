// The stages of timm's transforms_imagenet_train after the crop and flips (data/transforms.h's
// apply_augment): the secondary stage, RandAugment (--aa) or else colour jitter, on the picture
// as uint8 (timm works on PIL images there), then the final stage: to_tensor with the
// normalisation, then random erasing on the normalised tensor.
#pragma once
#include <string>

#include "core/random.h"
#include "core/tensor.h"
#include "data/image.h"
#include "data/rand_augment.h"
#include "data/random_erasing.h"
#include "data/transforms.h"

namespace peft::data {

class TrainAugment {
 public:
  // Parses and checks a's later stages once (ValueError naming --aa, --color-jitter, --reprob,
  // --remode or --recount). `interpolation` is the geometric RandAugment ops' resampling (timm
  // passes the model's interpolation); the fill colour is round(255 * norm.mean), timm's img_mean.
  TrainAugment(const Augment& a, const Normalization& norm, const std::string& interpolation);

  // Image -> normalised [C, H, W] with the later stages applied; draws only for the stages that
  // are on, so a run without them gets exactly to_tensor(img, norm).
  Tensor operator()(const Image& img, Generator& gen) const;
  // The secondary stage alone (RandAugment or jitter); the image itself when neither is on.
  Image secondary(const Image& img, Generator& gen) const;

 private:
  Normalization norm_;
  bool rand_augment_ = false;
  RandAugmentConfig aa_;
  RandAugmentHParams hp_;
  double jitter_ = 0;
  RandomErasing erasing_;
};

}  // namespace peft::data
