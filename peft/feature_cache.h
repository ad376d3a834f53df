// Encode a dataset's images with a frozen CLIP once, and keep the features in memory and on disk.
//
// Most few-shot CLIP methods never change the image tower, so every epoch would encode the same
// images again: the cache turns that into one pass. Methods that change it (maple; clip-lora unless
// --encoder text) take the images (load_images) and never go through the cache: their tower's
// features would be stored under the plain model's key. Entries are keyed by a hash of the
// model weights and a description of the images (dataset, indices, labels, views, seed), so a
// changed model or dataset can never be served stale features. Disk entries are safetensors files
// written atomically (temp file + rename); a corrupt or mismatching file is recomputed.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "core/tensor.h"
#include "data/dataset.h"
#include "nn/clip.h"

namespace peft {

// FNV-1a (64 bit) over every parameter and buffer of a module: names, dtypes, shapes and bytes.
std::string weights_hash(const nn::Module& m);

struct EncodeOptions {
  int64_t batch = 128;
  // 1: each image as is. V > 1: V augmented views per image (random resized crop with scale
  // 0.5-1 plus a horizontal flip, Tip-Adapter's cache augmentation), features [N, V, E].
  int64_t views = 1;
  uint64_t seed = 0;  // seeds the augmentation (per view and image)
};

struct FeatureSet {
  Tensor features;  // raw encode_image output: [N, E], or [N, V, E] when views > 1 (float32)
  Tensor labels;    // [N] int64
};

class FeatureCache {
 public:
  explicit FeatureCache(std::string dir = "");  // "" keeps entries in memory only
  // The features of every image of `ds` (in order), from memory, disk or a fresh encoding pass.
  FeatureSet get(nn::CLIP& clip, const data::Dataset& ds, const EncodeOptions& o = {});
  // The key string of an entry (for tests and logs).
  static std::string key(const std::string& model_hash, const data::Dataset& ds, const EncodeOptions& o);

  int64_t memory_hits = 0, disk_hits = 0, encoded = 0;

 private:
  std::string dir_;
  std::map<std::string, FeatureSet> memory_;
};

// Encodes without a cache (no autograd, eval mode, CLIP normalisation).
FeatureSet encode_dataset(nn::CLIP& clip, const data::Dataset& ds, const EncodeOptions& o = {});

// Images [n, C, S, S] (float32, normalised as encode_dataset does) and labels [n] of images
// start..start+n-1 of `ds` (count < 0: to the end). For a method that changes the image tower
// (maple, clip-lora unless --encoder text): its features cannot be cached, so it takes the images.
FeatureSet load_images(const nn::CLIP& clip, const data::Dataset& ds, int64_t start = 0, int64_t count = -1);

}  // namespace peft
