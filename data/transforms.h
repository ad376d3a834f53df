// Image transforms: bilinear resize, crops, flips, shifts, augmentation lists, and normalised CHW tensors.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "core/random.h"
#include "core/tensor.h"
#include "data/image.h"

namespace peft::data {

// Bilinear resize with PyTorch's F.interpolate(mode='bilinear', align_corners=False,
// antialias=False) formula: source coordinate (dst + 0.5) * in/out - 0.5, clamped at 0.
Image resize_bilinear(const Image& img, int64_t out_h, int64_t out_w);

// The window [top, top+h) x [left, left+w); pixels outside the image are black (zero). Negative
// or overhanging windows are allowed, which is how pad-and-crop and small-image crops work.
Image crop(const Image& img, int64_t top, int64_t left, int64_t h, int64_t w);

// torchvision's center_crop: top = round((H - size) / 2) (round half to even), zero padding
// when the image is smaller than the crop.
Image center_crop(const Image& img, int64_t size);

// Mirror left <-> right.
Image hflip(const Image& img);

// Pads `pad` black pixels on every side and crops back to H x W at a random offset in
// [0, 2*pad] per axis: a random shift of up to `pad` pixels (the CIFAR augmentation).
Image pad_random_crop(const Image& img, int64_t pad, Generator& gen);

// torchvision RandomResizedCrop.get_params: up to 10 draws of area fraction in `scale` and
// log-uniform aspect ratio in `ratio`, falling back to a centred crop clamped to the ratio range;
// the window is then resized (bilinear) to size x size.
struct CropBox {
  int64_t top = 0, left = 0, h = 0, w = 0;
};
CropBox random_resized_crop_box(int64_t H, int64_t W, Generator& gen, std::array<double, 2> scale = {0.08, 1.0},
                                std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0});
Image random_resized_crop(const Image& img, int64_t size, Generator& gen, std::array<double, 2> scale = {0.08, 1.0},
                          std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0});

// Per-channel mean and std applied by to_tensor: out = (x - mean[c]) / std[c].
struct Normalization {
  std::array<float, 3> mean{0.0f, 0.0f, 0.0f};
  std::array<float, 3> std{1.0f, 1.0f, 1.0f};
};
Normalization no_normalization();    // identity: pixels stay in [0, 1]
Normalization imagenet_normalization();  // (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)
Normalization clip_normalization();      // (0.48145466, 0.4578275, 0.40821073) / (0.26862954, 0.26130258, 0.27577711)
// "none", "imagenet" or "clip"; throws ValueError otherwise.
Normalization normalization_by_name(const std::string& name);

// Image [H, W, C] -> float32 tensor [C, H, W], normalised. A 1-channel image uses the mean of
// the three channel means and stds (grayscale has no per-colour statistics).
Tensor to_tensor(const Image& img, const Normalization& norm = no_normalization());
// Writes the same values into `out`, which points at C*H*W floats (one slot of a batch).
void to_chw(const Image& img, const Normalization& norm, float* out);

// The `--augment` list of the CLI: "none", "flip", "shift:N", "rrc", comma-separated.
struct Augment {
  bool flip = false;   // horizontal flip with probability 1/2
  int64_t shift = 0;   // pad-and-random-crop by this many pixels (0 = off)
  bool rrc = false;    // random resized crop back to the image size
  // timm's later stages (data/train_augment.h), from --aa, --color-jitter, --reprob/--remode/--recount:
  std::string aa;              // RandAugment config such as rand-m9-mstd0.5 ("" = off)
  double color_jitter = 0;     // brightness = contrast = saturation strength (0 = off; unused with aa, as timm)
  double reprob = 0;           // random erasing probability (0 = off)
  std::string remode = "pixel";  // const | rand | pixel
  int64_t recount = 1;         // at most this many erased boxes
};
// Throws ValueError naming the bad item, e.g. "shift:x" or "rotate".
Augment parse_augment(const std::string& list);
// "none" or e.g. "rrc,flip,shift:4"; the later stages follow, e.g. ",aa:rand-m9-mstd0.5,reprob:0.25:pixel:1"
// (jitter:F only when it applies, i.e. without aa). A description for run headers, not a list
// that parse_augment reads back.
std::string augment_str(const Augment& a);
// true when the augmentation changes the images from epoch to epoch.
bool augments(const Augment& a);

// Applies the geometric augmentations in a fixed order: rrc, then flip, then shift (the later
// stages are data/train_augment.h's). All randomness comes from `gen`, so a seeded generator
// per sample makes the result reproducible.
Image apply_augment(const Image& img, const Augment& a, Generator& gen);

// A per-sample transform for the DataLoader: image (already at the dataset's size) -> [C, S, S]:
// apply_augment, then TrainAugment (RandAugment or jitter, normalisation, erasing; bicubic ops).
// This form's rrc crops the S x S image; make_transform(Augment, Preprocess) in data/preprocess.h
// crops the original image instead, as torchvision does (what training uses).
using Transform = std::function<Tensor(const Image&, Generator&)>;
Transform make_transform(const Augment& a, const Normalization& norm);

}  // namespace peft::data
