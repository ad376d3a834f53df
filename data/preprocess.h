// A checkpoint's own preprocessing (timm's pretrained_cfg / data_config, Hugging Face's image
// processor): input size, interpolation, crop and normalisation, and the eval transform built
// from them (timm's transforms_factory eval path).
#pragma once
#include <cstdint>
#include <string>

#include "core/random.h"
#include "data/image.h"
#include "data/transforms.h"

namespace peft::data {

struct Preprocess {
  int64_t size = 0;                        // S, the model's input size (0 = not set yet)
  std::string interpolation = "bilinear";  // "bicubic" | "bilinear" | "nearest" (antialiased when shrinking, as PIL)
  double crop_pct = 1.0;                   // eval: the short side is resized to floor(S / crop_pct)
  // "center": resize the short side, then centre-crop S x S (timm, torchvision, CLIP);
  // "squash": resize straight to S x S, aspect ratio not kept (Hugging Face ViTImageProcessor,
  //           and this project's own models trained on procedural images).
  std::string crop_mode = "squash";
  Normalization norm = imagenet_normalization();
  std::string source = "default";  // where the values come from, e.g. "config.json (timm pretrained_cfg)"

  void validate() const;  // ValueError naming the field (size <= 0, crop_pct outside (0, 1], ...)
  // One line for run headers: "224 px, bicubic, center crop 0.875, mean (0.485, 0.456, 0.406), std (...) [source]"
  std::string describe() const;
};

// The eval transform on an original image (any size): resize (short side to floor(S / crop_pct)
// for "center", or S x S for "squash") with `interpolation` and antialias, then centre crop
// S x S. Pixels stay in [0, 1]; normalisation is applied later by to_tensor / to_chw.
// Equals torchvision's Resize(int(S / crop_pct), interpolation, antialias=True) + CenterCrop(S)
// on a float image (PIL's resampling filters) to about 1e-5.
// Bicubic results are clamped to [0, 1] (a PIL uint8 image cannot overshoot); an original that
// already has the resize target's size is not resampled.
Image eval_transform(const Image& original, const Preprocess& p);

// The Preprocess that reproduces the plain `image_size` datasets: S x S squash, bilinear.
Preprocess squash_preprocess(int64_t size);

// The short side eval_transform resizes an original to: floor(S / crop_pct) for "center", S for
// "squash". A decoder may reduce an image to this short side (and no further) first.
int64_t eval_resize_short_side(const Preprocess& p);

// torchvision's RandomResizedCrop(S, interpolation) on the original image: a random_resized_crop_box
// of the full image, resized to S x S with p.interpolation (antialiased, as PIL).
Image random_resized_crop_original(const Image& original, const Preprocess& p, Generator& gen);

// The DataLoader transform of a training or eval pipeline, normalised with p.norm. With a.rrc it
// takes the ORIGINAL image (Dataset::load_original; set LoaderOptions::original_images, or use
// set_pipeline in data/loader.h) and crops it with random_resized_crop_original; otherwise it
// takes the eval image (Dataset::load, already S x S). Flip, then shift, follow as in apply_augment,
// then the later stages of data/train_augment.h (RandAugment or jitter, normalisation, erasing).
Transform make_transform(const Augment& a, const Preprocess& p);

}  // namespace peft::data
