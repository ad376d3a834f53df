// Datasets: ImageFolder (files on disk), CIFAR binaries (in memory), subsets, and `--data` parsing.
#include "data/dataset.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/preprocess.h"
#include "data/procedural.h"
#include "data/transforms.h"

namespace fs = std::filesystem;

namespace peft::data {

const char* split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::val: return "val";
    case Split::test: return "test";
  }
  return "?";
}

// ---- Dataset

void Dataset::check_index(int64_t i, const char* op) const {
  if (i < 0 || i >= size())
    throw ValueError(std::string(op) + ": example index out of range (got " + std::to_string(i) + ", expected [0, " +
                     std::to_string(size()) + "))");
}

Example Dataset::get(int64_t i) const { return {to_tensor(load(i)), label(i)}; }

std::vector<int64_t> Dataset::labels() const {
  std::vector<int64_t> out(static_cast<size_t>(size()));
  for (int64_t i = 0; i < size(); ++i) out[static_cast<size_t>(i)] = label(i);
  return out;
}

static void check_geometry(int64_t image_size, int64_t in_chans, const char* op) {
  if (image_size <= 0)
    throw ValueError(std::string(op) + ": image_size must be positive (got " + std::to_string(image_size) + ")");
  if (in_chans != 1 && in_chans != 3)
    throw ValueError(std::string(op) + ": in_chans must be 1 or 3 (got " + std::to_string(in_chans) + ")");
}

// ---- ImageFolder

static bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

ImageFolder::ImageFolder(const std::string& root, int64_t image_size, int64_t in_chans)
    : ImageFolder(root, squash_preprocess(image_size), in_chans) {}

ImageFolder::ImageFolder(const std::string& root, const Preprocess& preprocess, int64_t in_chans)
    : root_(root), pre_(preprocess), in_chans_(in_chans) {
  check_geometry(pre_.size, in_chans, "image_folder");
  pre_.validate();
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    throw IOError("image_folder: '" + root + "' is not a folder (" + (fs::exists(root, ec) ? "a file" : "missing") +
                  "). Hint: --data expects ROOT/<class>/<image>.png, cifar10:PATH or procedural:TASK");
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) classes_.push_back(e.path().filename().string());
  std::sort(classes_.begin(), classes_.end());
  if (classes_.empty())
    throw IOError("image_folder: '" + root + "' has no class sub-folders (got 0, expected >= 1). Hint: put images in ROOT/<class>/");
  for (size_t c = 0; c < classes_.size(); ++c) {
    const fs::path dir = fs::path(root) / classes_[c];
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().string());
    if (files.empty())
      throw IOError("image_folder: class folder '" + dir.string() +
                    "' has no images (expected *.png, *.jpg, *.jpeg or *.bmp). Hint: remove the folder or add images");
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      // header only: catches non-images now instead of mid-training
      int64_t h = 0, w = 0;
      if (!probe_image(f, &h, &w)) {
        std::ifstream can_open(f, std::ios::binary);  // a file we may not read is not a corrupt one
        if (!can_open)
          throw IOError("image_folder: '" + f + "' cannot be read (" + std::strerror(errno) + "). Hint: check its permissions");
        throw IOError("image_folder: '" + f + "' is not a readable image (corrupt or wrong format). Hint: remove or replace it");
      }
      if (too_many_pixels(h, w))
        throw IOError("image_folder: '" + f + "': image too large: " + std::to_string(w) + " x " + std::to_string(h) +
                      " pixels (at most " + std::to_string(kMaxImagePixels) + ", 8192 x 8192). Hint: downscale it");
      files_.push_back(std::move(f));
      labels_.push_back(static_cast<int64_t>(c));
    }
  }
}

int64_t ImageFolder::label(int64_t i) const {
  check_index(i, "image_folder");
  return labels_[static_cast<size_t>(i)];
}

const std::string& ImageFolder::path(int64_t i) const {
  check_index(i, "image_folder");
  return files_[static_cast<size_t>(i)];
}

Image ImageFolder::load(int64_t i) const {
  return eval_transform(load_image_reduced(path(i), in_chans_, eval_resize_short_side(pre_)), pre_);
}

Image ImageFolder::load_original(int64_t i) const {
  return load_image_reduced(path(i), in_chans_, kOriginalShortSide * pre_.size);
}

std::string ImageFolder::describe() const {
  return "imagefolder:" + root_ + " (" + std::to_string(num_classes()) + " classes, " + std::to_string(size()) + " images)";
}

// ---- CIFAR

static const std::vector<std::string> kCifar10Names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                       "dog",      "frog",       "horse", "ship", "truck"};
static const std::vector<std::string> kCifar100Fine = {
    "apple",      "aquarium_fish", "baby",       "bear",       "beaver",      "bed",          "bee",       "beetle",
    "bicycle",    "bottle",        "bowl",       "boy",        "bridge",      "bus",          "butterfly", "camel",
    "can",        "castle",        "caterpillar", "cattle",    "chair",       "chimpanzee",   "clock",     "cloud",
    "cockroach",  "couch",         "crab",       "crocodile",  "cup",         "dinosaur",     "dolphin",   "elephant",
    "flatfish",   "forest",        "fox",        "girl",       "hamster",     "house",        "kangaroo",  "keyboard",
    "lamp",       "lawn_mower",    "leopard",    "lion",       "lizard",      "lobster",      "man",       "maple_tree",
    "motorcycle", "mountain",      "mouse",      "mushroom",   "oak_tree",    "orange",       "orchid",    "otter",
    "palm_tree",  "pear",          "pickup_truck", "pine_tree", "plain",      "plate",        "poppy",     "porcupine",
    "possum",     "rabbit",        "raccoon",    "ray",        "road",        "rocket",       "rose",      "sea",
    "seal",       "shark",         "shrew",      "skunk",      "skyscraper",  "snail",        "snake",     "spider",
    "squirrel",   "streetcar",     "sunflower",  "sweet_pepper", "table",     "tank",         "telephone", "television",
    "tiger",      "tractor",       "train",      "trout",      "tulip",       "turtle",       "wardrobe",  "whale",
    "willow_tree", "wolf",         "woman",      "worm"};
static const std::vector<std::string> kCifar100Coarse = {
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores", "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes", "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2"};

// Class names from the *.txt file shipped with the binaries when present, else the built-in list.
static std::vector<std::string> read_names(const fs::path& file, const std::vector<std::string>& fallback) {
  std::ifstream f(file);
  if (!f) return fallback;
  std::vector<std::string> names;
  std::string line;
  while (std::getline(f, line)) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names.size() == fallback.size() ? names : fallback;
}

Cifar::Cifar(Kind kind, const std::string& root, Split split, int64_t image_size, int64_t in_chans)
    : Cifar(kind, root, split, squash_preprocess(image_size), in_chans) {}

Cifar::Cifar(Kind kind, const std::string& root, Split split, const Preprocess& preprocess, int64_t in_chans)
    : kind_(kind), root_(root), split_(split), pre_(preprocess), image_size_(preprocess.size), in_chans_(in_chans) {
  check_geometry(image_size_, in_chans, "cifar");
  pre_.validate();
  const bool c10 = kind == Kind::cifar10;
  const char* op = c10 ? "cifar10" : "cifar100";
  const int64_t label_bytes = c10 ? 1 : 2;
  const int64_t record = label_bytes + kPixels;
  const std::string marker = c10 ? "test_batch.bin" : "test.bin";

  std::error_code ec;
  fs::path dir = root;
  const fs::path sub = dir / (c10 ? "cifar-10-batches-bin" : "cifar-100-binary");
  if (!fs::exists(dir / marker, ec) && fs::is_directory(sub, ec)) dir = sub;
  if (!fs::is_directory(dir, ec))
    throw IOError(std::string(op) + ": '" + root + "' is not a folder. Hint: point it at the extracted binary version");

  std::vector<fs::path> files;
  if (split == Split::train) {
    if (c10) {
      for (const auto& e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("data_batch_", 0) == 0 && e.path().extension() == ".bin") files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
    } else if (fs::exists(dir / "train.bin", ec)) {
      files.push_back(dir / "train.bin");
    }
  } else if (fs::exists(dir / marker, ec)) {
    files.push_back(dir / marker);
  }
  if (files.empty())
    throw IOError(std::string(op) + ": no " + split_name(split) + " files in '" + dir.string() + "' (expected " +
                  (split == Split::train ? (c10 ? "data_batch_1.bin .. data_batch_5.bin" : "train.bin") : marker) +
                  "). Hint: use the binary version of the dataset, not the python pickles");

  if (c10)
    classes_ = read_names(dir / "batches.meta.txt", kCifar10Names);
  else if (kind == Kind::cifar100)
    classes_ = read_names(dir / "fine_label_names.txt", kCifar100Fine);
  else
    classes_ = read_names(dir / "coarse_label_names.txt", kCifar100Coarse);

  for (const auto& file : files) {
    const auto bytes = static_cast<int64_t>(fs::file_size(file, ec));
    if (ec || bytes == 0 || bytes % record != 0)
      throw IOError(std::string(op) + ": '" + file.string() + "' has a wrong size (got " + std::to_string(bytes) +
                    " bytes, expected a multiple of the " + std::to_string(record) + "-byte record, e.g. " +
                    std::to_string(record * 10000) + " for 10000 images). Hint: the file is truncated or not " +
                    (c10 ? "CIFAR-10" : "CIFAR-100") + " binary");
    std::ifstream f(file, std::ios::binary);
    std::vector<uint8_t> raw(static_cast<size_t>(bytes));
    if (!f.read(reinterpret_cast<char*>(raw.data()), bytes))
      throw IOError(std::string(op) + ": cannot read '" + file.string() + "'");
    const int64_t n = bytes / record;
    for (int64_t r = 0; r < n; ++r) {
      const uint8_t* rec = raw.data() + r * record;
      // CIFAR-100 records hold <coarse, fine>; CIFAR-10 holds one label
      const int64_t lab = c10 ? rec[0] : (kind == Kind::cifar100 ? rec[1] : rec[0]);
      if (lab >= static_cast<int64_t>(classes_.size()))
        throw IOError(std::string(op) + ": '" + file.string() + "' record " + std::to_string(r) + " has label " +
                      std::to_string(lab) + " (expected < " + std::to_string(classes_.size()) +
                      "). Hint: is this " + (c10 ? "CIFAR-100 data read as cifar10?" : "CIFAR-10 data read as cifar100?"));
      labels_.push_back(lab);
      pixels_.insert(pixels_.end(), rec + label_bytes, rec + record);
    }
    n_ += n;
  }
}

int64_t Cifar::label(int64_t i) const {
  check_index(i, kind_ == Kind::cifar10 ? "cifar10" : "cifar100");
  return labels_[static_cast<size_t>(i)];
}

Image Cifar::load(int64_t i) const { return eval_transform(load_original(i), pre_); }

Image Cifar::load_original(int64_t i) const {
  check_index(i, kind_ == Kind::cifar10 ? "cifar10" : "cifar100");
  const uint8_t* src = pixels_.data() + i * kPixels;  // [3, 32, 32] planes
  Image img(32, 32, 3);
  for (int64_t p = 0; p < 32 * 32; ++p)
    for (int64_t c = 0; c < 3; ++c)
      img.pixels[static_cast<size_t>(p * 3 + c)] = static_cast<float>(src[c * 1024 + p]) / 255.0f;
  return in_chans_ == 3 ? img : convert_channels(img, in_chans_);
}

std::string Cifar::describe() const {
  const char* name = kind_ == Kind::cifar10 ? "cifar10" : (kind_ == Kind::cifar100 ? "cifar100" : "cifar100-coarse");
  return std::string(name) + ":" + root_ + " (" + std::to_string(num_classes()) + " classes, " + std::to_string(n_) +
         " " + split_name(split_) + " images)";
}

// ---- Subset

Subset::Subset(DatasetPtr base, std::vector<int64_t> indices) : base_(std::move(base)), indices_(std::move(indices)) {
  if (!base_) throw ValueError("subset: base dataset is null");
  for (int64_t i : indices_)
    if (i < 0 || i >= base_->size())
      throw ValueError("subset: index out of range (got " + std::to_string(i) + ", expected [0, " +
                       std::to_string(base_->size()) + "))");
}

int64_t Subset::label(int64_t i) const {
  check_index(i, "subset");
  return base_->label(indices_[static_cast<size_t>(i)]);
}

Image Subset::load(int64_t i) const {
  check_index(i, "subset");
  return base_->load(indices_[static_cast<size_t>(i)]);
}

Image Subset::load_original(int64_t i) const {
  check_index(i, "subset");
  return base_->load_original(indices_[static_cast<size_t>(i)]);
}

std::string Subset::describe() const {
  return std::to_string(size()) + " of " + base_->describe();
}

// ---- `--data` parsing

DatasetPtr open_dataset(const std::string& spec, Split split, int64_t image_size, int64_t in_chans, int64_t n,
                        uint64_t seed) {
  return open_dataset(spec, split, squash_preprocess(image_size), in_chans, n, seed);
}

DatasetPtr open_dataset(const std::string& spec, Split split, const Preprocess& p, int64_t in_chans, int64_t n,
                        uint64_t seed) {
  auto after = [&spec](const std::string& prefix) -> std::string {
    std::string rest = spec.substr(prefix.size());
    if (rest.empty())
      throw ValueError("--data: '" + spec + "' names no " + (prefix == "procedural:" ? "task" : "path") +
                       ". Hint: " + prefix + (prefix == "procedural:" ? "shapes" : "/path/to/data"));
    return rest;
  };
  if (spec.rfind("cifar10:", 0) == 0)
    return std::make_shared<Cifar>(Cifar::Kind::cifar10, after("cifar10:"), split, p, in_chans);
  if (spec.rfind("cifar100:", 0) == 0)
    return std::make_shared<Cifar>(Cifar::Kind::cifar100, after("cifar100:"), split, p, in_chans);
  if (spec.rfind("procedural:", 0) == 0)
    return std::make_shared<ProceduralDataset>(after("procedural:"), n, p.size, seed, split, in_chans);
  return std::make_shared<ImageFolder>(spec, p, in_chans);
}

}  // namespace peft::data
