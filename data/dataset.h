// Datasets: an indexable set of (image, label) pairs; ImageFolder, CIFAR-10/100 binaries, subsets.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/image.h"
#include "data/preprocess.h"

namespace peft::data {

enum class Split { train, val, test };
const char* split_name(Split s);

// One example: image [C, S, S] float32 in [0, 1] (not normalised; the loader's transform
// augments and normalises), label in [0, num_classes).
struct Example {
  Tensor image;
  int64_t label = 0;
};

// Every dataset yields square images of one size and channel count, so batches stack.
// load() and label() must be safe to call from several threads at once (the loader prefetches
// on a background thread): implementations keep no mutable state.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual std::vector<std::string> class_names() const = 0;
  virtual int64_t image_size() const = 0;  // S
  virtual int64_t channels() const = 0;    // C
  // Label of example i without decoding its image (few-shot sampling reads every label).
  virtual int64_t label(int64_t i) const = 0;
  // Image of example i at S x S with C channels, pixels in [0, 1].
  virtual Image load(int64_t i) const = 0;
  // Example i before the eval transform (any size, C channels), for augmentations that crop the
  // original as torchvision's RandomResizedCrop does. Default: load(i) (datasets that are born
  // at S x S, e.g. procedural images).
  virtual Image load_original(int64_t i) const { return load(i); }
  // A short description for logs, e.g. "imagefolder:/data/pets (37 classes, 3680 images)".
  virtual std::string describe() const = 0;

  Example get(int64_t i) const;  // {to_tensor(load(i)), label(i)}
  std::vector<int64_t> labels() const;

 protected:
  void check_index(int64_t i, const char* op) const;  // throws ValueError when out of range
};

using DatasetPtr = std::shared_ptr<const Dataset>;

// ROOT/<class>/<image>.{png,jpg,jpeg,bmp} (extension case-insensitive). Classes are the
// sub-folders in sorted order; files within a class are sorted by name. Images are decoded on
// demand and converted to `in_chans`; load() applies eval_transform(·, preprocess) (the plain
// `image_size` constructor: squash_preprocess, an antialiased bilinear resize to S x S).
// A JPEG is decoded at a reduced scale when that still leaves the short side the transform needs
// (load: eval_resize_short_side; load_original: kOriginalShortSide * S, see there).
// Opening checks every file's header, so a non-image fails now and names the file; a file whose
// header is valid but whose data is corrupt fails in load() and also names the file.
class ImageFolder : public Dataset {
 public:
  ImageFolder(const std::string& root, int64_t image_size, int64_t in_chans = 3);
  ImageFolder(const std::string& root, const Preprocess& preprocess, int64_t in_chans = 3);
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  int64_t num_classes() const override { return static_cast<int64_t>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  int64_t image_size() const override { return pre_.size; }
  int64_t channels() const override { return in_chans_; }
  int64_t label(int64_t i) const override;
  Image load(int64_t i) const override;
  // The decoded file, converted to in_chans. A large JPEG comes at a reduced scale whose short
  // side is still >= kOriginalShortSide * S: a random resized crop of at least 1/4 of the area
  // (most of RandomResizedCrop's draws with scale (0.08, 1)) is then still shrunk to S, not
  // enlarged, and decoding a 12-megapixel photo costs a fraction of the full decode.
  Image load_original(int64_t i) const override;
  std::string describe() const override;
  const std::string& path(int64_t i) const;
  const Preprocess& preprocess() const { return pre_; }

  static constexpr int64_t kOriginalShortSide = 2;

 private:
  std::string root_;
  Preprocess pre_;
  int64_t in_chans_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
};

// The CIFAR binary format: records of <label byte(s)> + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
// each row-major 32x32). CIFAR-10: data_batch_1..5.bin (train) and test_batch.bin (test), one
// label byte. CIFAR-100: train.bin and test.bin, a coarse then a fine label byte. `root` is the
// folder holding the .bin files or its parent (cifar-10-batches-bin/, cifar-100-binary/).
// Split::val reads the test files too. The whole split is held in memory as uint8.
class Cifar : public Dataset {
 public:
  enum class Kind { cifar10, cifar100, cifar100_coarse };
  // Images are the 32 x 32 originals through eval_transform(·, preprocess) (the `image_size`
  // constructor: squash_preprocess); at preprocess.size 32 with squash they are the raw pixels.
  Cifar(Kind kind, const std::string& root, Split split, int64_t image_size = 32, int64_t in_chans = 3);
  Cifar(Kind kind, const std::string& root, Split split, const Preprocess& preprocess, int64_t in_chans = 3);
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return static_cast<int64_t>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  int64_t image_size() const override { return image_size_; }
  int64_t channels() const override { return in_chans_; }
  int64_t label(int64_t i) const override;
  Image load(int64_t i) const override;
  Image load_original(int64_t i) const override;  // 32 x 32, in_chans
  std::string describe() const override;

  static constexpr int64_t kPixels = 3 * 32 * 32;

 private:
  Kind kind_;
  std::string root_;
  Split split_;
  Preprocess pre_;
  int64_t image_size_, in_chans_;
  int64_t n_ = 0;
  std::vector<std::string> classes_;
  std::vector<uint8_t> pixels_;  // [n, 3, 32, 32]
  std::vector<int64_t> labels_;
};

// A view of some examples of another dataset, in the given order (few-shot sets, splits).
class Subset : public Dataset {
 public:
  Subset(DatasetPtr base, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  int64_t num_classes() const override { return base_->num_classes(); }
  std::vector<std::string> class_names() const override { return base_->class_names(); }
  int64_t image_size() const override { return base_->image_size(); }
  int64_t channels() const override { return base_->channels(); }
  int64_t label(int64_t i) const override;
  Image load(int64_t i) const override;
  Image load_original(int64_t i) const override;
  std::string describe() const override;
  const std::vector<int64_t>& indices() const { return indices_; }

 private:
  DatasetPtr base_;
  std::vector<int64_t> indices_;
};

// Opens a `--data` / `--val` argument (cli.md): "cifar10:PATH", "cifar100:PATH",
// "procedural:TASK" or a folder path (ImageFolder). `n` is the number of procedural examples
// (ignored otherwise); `seed` seeds the procedural generator. Throws IOError / ValueError.
// The plain form means squash_preprocess(image_size).
DatasetPtr open_dataset(const std::string& spec, Split split, int64_t image_size, int64_t in_chans, int64_t n = 1000,
                        uint64_t seed = 0);
// Datasets that follow a checkpoint's preprocessing (data/preprocess.h): ImageFolder and CIFAR
// apply eval_transform(original, p) in load(); procedural images are drawn at p.size directly
// (they have no larger original to resize or crop).
DatasetPtr open_dataset(const std::string& spec, Split split, const Preprocess& p, int64_t in_chans, int64_t n = 1000,
                        uint64_t seed = 0);

}  // namespace peft::data
