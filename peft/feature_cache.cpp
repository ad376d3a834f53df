// Feature cache: one encoding pass per (model, images), kept in memory and as safetensors on disk.
#include "peft/feature_cache.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/random.h"
#include "data/transforms.h"
#include "core/io/safetensors.h"

namespace peft {

namespace {
struct Fnv {
  uint64_t h = 1469598103934665603ULL;
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ULL;
    }
  }
  void str(const std::string& s) { bytes(s.data(), s.size() + 1); }  // + the terminator: "ab","c" != "a","bc"
  void i64(int64_t v) { bytes(&v, sizeof v); }
  std::string hex() const { return fmt::format("{:016x}", h); }
};
}  // namespace

std::string weights_hash(const nn::Module& m) {
  Fnv f;
  for (auto& [name, t0] : m.state_dict()) {
    Tensor t = t0.is_contiguous() ? t0 : t0.clone();
    f.str(name);
    f.str(dtype_name(t.dtype()));
    for (int64_t s : t.sizes()) f.i64(s);
    f.bytes(t.raw_data(), t.nbytes());
  }
  return f.hex();
}

std::string FeatureCache::key(const std::string& model_hash, const data::Dataset& ds, const EncodeOptions& o) {
  // describe() names the source; the labels and (for subsets) the indices pin the exact images.
  Fnv f;
  for (int64_t y : ds.labels()) f.i64(y);
  if (const auto* sub = dynamic_cast<const data::Subset*>(&ds))
    for (int64_t i : sub->indices()) f.i64(i);
  return fmt::format("model {} | {} | {}x{}x{} | views {} seed {} | images {}", model_hash, ds.describe(),
                     ds.channels(), ds.image_size(), ds.image_size(), o.views, o.views > 1 ? o.seed : 0, f.hex());
}

FeatureSet encode_dataset(nn::CLIP& clip, const data::Dataset& ds, const EncodeOptions& o) {
  if (o.views < 1) throw ValueError(fmt::format("encode_dataset: views must be >= 1 (got {})", o.views));
  const nn::ViTConfig& vc = clip.cfg.vision;
  if (ds.image_size() != vc.image_size || ds.channels() != vc.in_chans)
    throw ShapeError(fmt::format("encode_dataset: {} has {}x{}x{} images, the model wants {}x{}x{}", ds.describe(),
                                 ds.channels(), ds.image_size(), ds.image_size(), vc.in_chans, vc.image_size,
                                 vc.image_size));
  NoGradGuard ng;
  const bool was_training = clip.is_training();
  clip.eval();
  const int64_t N = ds.size(), V = o.views, S = vc.image_size, C = vc.in_chans, E = clip.cfg.embed_dim;
  const int64_t batch = std::max<int64_t>(1, o.batch);
  const data::Normalization norm = nn::effective_preprocess(vc).norm;  // the checkpoint's (CLIP's by default)
  Tensor out = empty({N, V, E});
  float* po = out.data<float>();
  // Rows of (image, view) pairs, encoded `batch` at a time.
  for (int64_t start = 0; start < N * V; start += batch) {
    const int64_t nb = std::min(batch, N * V - start);
    Tensor images = empty({nb, C, S, S});
    for (int64_t r = 0; r < nb; ++r) {
      const int64_t i = (start + r) / V, v = (start + r) % V;
      data::Image img = ds.load(i);
      if (V > 1) {  // Tip-Adapter's cache augmentation: RandomResizedCrop(scale 0.5-1) + flip
        Generator g(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(i) * 1315423911ULL + static_cast<uint64_t>(v));
        img = data::random_resized_crop(img, S, g, {0.5, 1.0});
        if (g.uniform() < 0.5) img = data::hflip(img);
      }
      data::to_chw(img, norm, images.data<float>() + r * C * S * S);
    }
    Tensor f = clip.encode_image(images).to(DType::f32);  // [nb, E]
    std::memcpy(po + start * E, f.data<float>(), static_cast<size_t>(nb * E) * sizeof(float));
  }
  clip.train(was_training);
  FeatureSet fs;
  fs.features = V == 1 ? reshape(out, {N, E}).clone() : out;
  fs.labels = from_vector_i64(ds.labels(), {N});
  return fs;
}

FeatureSet load_images(const nn::CLIP& clip, const data::Dataset& ds, int64_t start, int64_t count) {
  const nn::ViTConfig& vc = clip.cfg.vision;
  if (ds.image_size() != vc.image_size || ds.channels() != vc.in_chans)
    throw ShapeError(fmt::format("load_images: {} has {}x{}x{} images, the model wants {}x{}x{}", ds.describe(),
                                 ds.channels(), ds.image_size(), ds.image_size(), vc.in_chans, vc.image_size,
                                 vc.image_size));
  const int64_t N = ds.size();
  if (start < 0 || start > N) throw ValueError(fmt::format("load_images: start {} outside [0, {}]", start, N));
  const int64_t n = count < 0 ? N - start : std::min(count, N - start);
  const int64_t S = vc.image_size, C = vc.in_chans;
  const data::Normalization norm = nn::effective_preprocess(vc).norm;  // as encode_dataset
  FeatureSet fs;
  fs.features = empty({n, C, S, S});
  std::vector<int64_t> labels(static_cast<size_t>(n));
  const std::vector<int64_t> all = ds.labels();
  for (int64_t r = 0; r < n; ++r) {
    data::to_chw(ds.load(start + r), norm, fs.features.data<float>() + r * C * S * S);
    labels[static_cast<size_t>(r)] = all[static_cast<size_t>(start + r)];
  }
  fs.labels = from_vector_i64(labels, {n});
  return fs;
}

FeatureCache::FeatureCache(std::string dir) : dir_(std::move(dir)) {}

FeatureSet FeatureCache::get(nn::CLIP& clip, const data::Dataset& ds, const EncodeOptions& o) {
  const std::string k = key(weights_hash(clip), ds, o);
  if (auto it = memory_.find(k); it != memory_.end()) {
    ++memory_hits;
    return it->second;
  }
  std::string path;
  if (!dir_.empty()) {
    Fnv f;
    f.str(k);
    path = (std::filesystem::path(dir_) / ("features-" + f.hex() + ".safetensors")).string();
    if (std::filesystem::exists(path)) {
      try {
        SafetensorsFile file = SafetensorsFile::open(path);
        auto md = file.metadata();
        if (md.count("key") && md["key"] == k && file.has("features") && file.has("labels")) {
          FeatureSet fs{file.get("features"), file.get("labels", DType::i64)};
          if (fs.features.size(0) == ds.size()) {
            ++disk_hits;
            memory_[k] = fs;
            return fs;
          }
        }
      } catch (const IOError&) {
        // A torn or foreign file: fall through, recompute and replace it.
      }
    }
  }
  FeatureSet fs = encode_dataset(clip, ds, o);
  ++encoded;
  if (!path.empty()) {
    std::filesystem::create_directories(dir_);
    save_safetensors(path, {{"features", fs.features}, {"labels", fs.labels}}, {{"key", k}});
  }
  memory_[k] = fs;
  return fs;
}

}  // namespace peft
