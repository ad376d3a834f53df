// Datasets: ImageFolder on a temporary tree (sorting, conversion, every error case), CIFAR binaries, subsets, --data parsing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/dataset.h"
#include "data/procedural.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using namespace peft;
using namespace peft::data;

namespace {

const std::string kImages = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/images/";

// A fresh, empty folder under the test temp dir.
std::string fresh_dir(const std::string& name) {
  const fs::path p = fs::path(::testing::TempDir()) / ("peft_dataset_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

Image solid(int64_t H, int64_t W, float r, float g, float b) {
  Image img(H, W, 3);
  for (int64_t p = 0; p < H * W; ++p) {
    img.pixels[static_cast<size_t>(p * 3 + 0)] = r;
    img.pixels[static_cast<size_t>(p * 3 + 1)] = g;
    img.pixels[static_cast<size_t>(p * 3 + 2)] = b;
  }
  return img;
}

// root/cat/{b.png, a.PNG, notes.txt}, root/ant/{z.bmp (copied fixture), y.jpg}, root/dog/c.png
std::string make_tree(const std::string& name) {
  const std::string root = fresh_dir(name);
  for (const char* c : {"cat", "ant", "dog"}) fs::create_directories(fs::path(root) / c);
  save_png(solid(6, 6, 1.0f, 0.0f, 0.0f), root + "/cat/b.png");
  save_png(solid(10, 8, 0.0f, 1.0f, 0.0f), root + "/cat/a.PNG");
  { std::ofstream(root + "/cat/notes.txt") << "not an image, ignored"; }
  fs::copy_file(kImages + "rgb.bmp", root + "/ant/z.bmp");
  fs::copy_file(kImages + "smooth.jpg", root + "/ant/y.jpg");
  save_png(solid(4, 4, 0.2f, 0.4f, 0.6f), root + "/dog/c.png");
  return root;
}

// CIFAR records: label byte(s) then R, G, B planes of 32x32.
void write_cifar(const std::string& path, const std::vector<std::vector<uint8_t>>& labels, uint8_t base) {
  std::ofstream f(path, std::ios::binary);
  for (size_t r = 0; r < labels.size(); ++r) {
    for (uint8_t l : labels[r]) f.put(static_cast<char>(l));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) f.put(static_cast<char>((base + r * 7 + c * 50 + p % 13) & 0xff));
  }
}

}  // namespace

TEST(ImageFolder, SortsClassesAndFiles) {
  const std::string root = make_tree("sorted");
  ImageFolder ds(root, 8, 3);
  EXPECT_EQ(ds.class_names(), (std::vector<std::string>{"ant", "cat", "dog"}));
  EXPECT_EQ(ds.num_classes(), 3);
  ASSERT_EQ(ds.size(), 5);
  EXPECT_EQ(ds.labels(), (std::vector<int64_t>{0, 0, 1, 1, 2}));
  EXPECT_EQ(fs::path(ds.path(0)).filename(), "y.jpg");
  EXPECT_EQ(fs::path(ds.path(1)).filename(), "z.bmp");
  EXPECT_EQ(fs::path(ds.path(2)).filename(), "a.PNG");
  EXPECT_EQ(fs::path(ds.path(3)).filename(), "b.png");
  for (int64_t i = 0; i < ds.size(); ++i) {
    Example e = ds.get(i);
    EXPECT_EQ(e.image.sizes(), (Shape{3, 8, 8}));
    EXPECT_EQ(e.image.dtype(), DType::f32);
    EXPECT_EQ(e.label, ds.label(i));
  }
  // a solid image stays solid through the 10x8 -> 8x8 resize
  Example green = ds.get(2);
  EXPECT_EQ(green.image.at({0, 3, 3}), 0.0f);
  EXPECT_EQ(green.image.at({1, 7, 0}), 1.0f);
  Example dog = ds.get(4);
  EXPECT_NEAR(dog.image.at({2, 5, 5}), 0.6, 0.5 / 255);
  EXPECT_NE(ds.describe().find("3 classes"), std::string::npos);
}

TEST(ImageFolder, ConvertsToOneChannel) {
  const std::string root = make_tree("gray");
  ImageFolder ds(root, 5, 1);
  Example e = ds.get(3);  // pure red
  EXPECT_EQ(e.image.sizes(), (Shape{1, 5, 5}));
  EXPECT_NEAR(e.image.at({0, 2, 2}), 0.299, 1.0 / 255);  // luma of pure red
}

TEST(ImageFolder, ErrorsNameTheCulprit) {
  const std::string missing = fresh_dir("missing") + "/nope";
  EXPECT_THROW_MSG(ImageFolder(missing, 8), IOError, missing, std::string("missing"));

  const std::string empty_root = fresh_dir("no_classes");
  EXPECT_THROW_MSG(ImageFolder(empty_root, 8), IOError, empty_root, std::string("no class"));

  const std::string root = make_tree("empty_class");
  fs::create_directories(fs::path(root) / "eel");
  { std::ofstream(root + "/eel/readme.txt") << "nothing"; }
  EXPECT_THROW_MSG(ImageFolder(root, 8), IOError, (fs::path(root) / "eel").string(), std::string("no images"));

  const std::string root2 = make_tree("corrupt");
  const std::string bad = root2 + "/dog/broken.png";
  { std::ofstream(bad, std::ios::binary) << "garbage bytes, not a PNG"; }
  EXPECT_THROW_MSG(ImageFolder(root2, 8), IOError, bad);

  // a valid header with broken data gets past opening and fails when loaded
  const std::string root3 = make_tree("truncated");
  const std::string trunc = root3 + "/dog/d.png";
  fs::copy_file(kImages + "truncated.png", trunc);
  ImageFolder ds(root3, 8);
  ASSERT_EQ(ds.size(), 6);
  EXPECT_EQ(fs::path(ds.path(5)).filename(), "d.png");
  EXPECT_THROW_MSG(ds.load(5), IOError, trunc);
  EXPECT_THROW(ds.load(6), ValueError);
  EXPECT_THROW(ImageFolder(root3, 8, 2), ValueError);
}

TEST(Cifar, ReadsCifar10Binaries) {
  const std::string dir = fresh_dir("cifar10");
  const std::string bin = dir + "/cifar-10-batches-bin";  // the parent folder is accepted too
  fs::create_directories(bin);
  write_cifar(bin + "/data_batch_1.bin", {{3}, {9}, {0}}, 10);
  write_cifar(bin + "/data_batch_2.bin", {{5}, {1}}, 100);
  write_cifar(bin + "/test_batch.bin", {{7}}, 200);
  Cifar train(Cifar::Kind::cifar10, dir, Split::train);
  ASSERT_EQ(train.size(), 5);
  EXPECT_EQ(train.labels(), (std::vector<int64_t>{3, 9, 0, 5, 1}));
  EXPECT_EQ(train.class_names()[3], "cat");
  EXPECT_EQ(train.num_classes(), 10);
  // record 1 of file 1: plane c, pixel p = (10 + 7 + 50c + p % 13) / 255
  Image img = train.load(1);
  ASSERT_EQ(img.H, 32);
  EXPECT_FLOAT_EQ(img.at(0, 0, 0), 17.0f / 255);
  EXPECT_FLOAT_EQ(img.at(0, 1, 1), 68.0f / 255);
  EXPECT_FLOAT_EQ(img.at(1, 0, 2), (10 + 7 + 100 + 32 % 13) / 255.0f);
  EXPECT_FLOAT_EQ(train.load(3).at(0, 0, 0), 100.0f / 255);
  Cifar test(Cifar::Kind::cifar10, bin, Split::test, 16, 1);
  ASSERT_EQ(test.size(), 1);
  EXPECT_EQ(test.label(0), 7);
  EXPECT_EQ(test.get(0).image.sizes(), (Shape{1, 16, 16}));
}

TEST(Cifar, ReadsCifar100FineAndCoarse) {
  const std::string dir = fresh_dir("cifar100");
  write_cifar(dir + "/train.bin", {{4, 99}, {19, 0}}, 0);
  write_cifar(dir + "/test.bin", {{1, 50}}, 0);
  Cifar fine(Cifar::Kind::cifar100, dir, Split::train);
  EXPECT_EQ(fine.num_classes(), 100);
  EXPECT_EQ(fine.labels(), (std::vector<int64_t>{99, 0}));
  EXPECT_EQ(fine.class_names()[99], "worm");
  EXPECT_EQ(fine.class_names()[0], "apple");
  Cifar coarse(Cifar::Kind::cifar100_coarse, dir, Split::train);
  EXPECT_EQ(coarse.num_classes(), 20);
  EXPECT_EQ(coarse.labels(), (std::vector<int64_t>{4, 19}));
  EXPECT_EQ(coarse.class_names()[19], "vehicles_2");
  Cifar test(Cifar::Kind::cifar100, dir, Split::test);
  EXPECT_EQ(test.label(0), 50);
}

TEST(Cifar, FollowsAPreprocess) {
  const std::string dir = fresh_dir("cifar10_pre");
  write_cifar(dir + "/test_batch.bin", {{7}, {2}}, 30);
  Preprocess p;
  p.size = 24;
  p.interpolation = "bicubic";
  p.crop_pct = 0.875;  // 32 -> short side floor(24 / 0.875) = 27, centre crop 24
  p.crop_mode = "center";
  Cifar ds(Cifar::Kind::cifar10, dir, Split::test, p, 3);
  EXPECT_EQ(ds.image_size(), 24);
  const Image original = ds.load_original(1);
  ASSERT_EQ(original.H, 32);
  EXPECT_FLOAT_EQ(original.at(0, 0, 0), (30 + 7) / 255.0f);
  EXPECT_EQ(ds.load(1).pixels, eval_transform(original, p).pixels);
  EXPECT_EQ(ds.get(1).image.sizes(), (Shape{3, 24, 24}));
  EXPECT_EQ(open_dataset("cifar10:" + dir, Split::val, p, 1)->load_original(0).C, 1);
  // at 32 px squash the raw pixels come back unchanged
  Cifar raw(Cifar::Kind::cifar10, dir, Split::test, squash_preprocess(32), 3);
  EXPECT_EQ(raw.load(0).pixels, raw.load_original(0).pixels);
  // a Subset hands on the original
  Subset sub(std::make_shared<Cifar>(Cifar::Kind::cifar10, dir, Split::test, p, 3), {1});
  EXPECT_EQ(sub.load_original(0).pixels, original.pixels);
}

TEST(Cifar, ErrorsForWrongFiles) {
  const std::string dir = fresh_dir("cifar_bad");
  write_cifar(dir + "/data_batch_1.bin", {{1}, {2}}, 0);
  { std::ofstream(dir + "/data_batch_2.bin", std::ios::binary) << "short"; }
  EXPECT_THROW_MSG(Cifar(Cifar::Kind::cifar10, dir, Split::train), IOError, dir + "/data_batch_2.bin",
                   std::string("3073"));
  EXPECT_THROW_MSG(Cifar(Cifar::Kind::cifar10, dir, Split::test), IOError, std::string("test_batch.bin"));
  // CIFAR-10 data read as CIFAR-100: 3073-byte records are not 3074-byte records
  const std::string dir2 = fresh_dir("cifar_mix");
  write_cifar(dir2 + "/train.bin", {{1}, {2}}, 0);
  EXPECT_THROW_MSG(Cifar(Cifar::Kind::cifar100, dir2, Split::train), IOError, std::string("3074"));
  // a label beyond the class count
  const std::string dir3 = fresh_dir("cifar_label");
  write_cifar(dir3 + "/test_batch.bin", {{10}}, 0);
  EXPECT_THROW_MSG(Cifar(Cifar::Kind::cifar10, dir3, Split::test), IOError, std::string("label 10"));
  EXPECT_THROW(Cifar(Cifar::Kind::cifar10, dir3 + "/nope", Split::test), IOError);
}

TEST(Subset, MapsIndices) {
  auto base = std::make_shared<ProceduralDataset>("shapes", 12, 8, 0, Split::train);
  Subset s(base, {5, 0, 7});
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s.labels(), (std::vector<int64_t>{base->label(5), base->label(0), base->label(7)}));
  EXPECT_EQ(s.load(2).pixels, base->load(7).pixels);
  EXPECT_EQ(s.num_classes(), base->num_classes());
  EXPECT_THROW(Subset(base, {12}), ValueError);
  EXPECT_THROW(s.load(3), ValueError);
}

TEST(OpenDataset, ParsesDataSpecs) {
  DatasetPtr p = open_dataset("procedural:colors", Split::train, 16, 3, 40, 1);
  EXPECT_EQ(p->size(), 40);
  EXPECT_EQ(p->num_classes(), 8);
  EXPECT_EQ(p->image_size(), 16);
  const std::string root = make_tree("open");
  DatasetPtr f = open_dataset(root, Split::train, 8, 1);
  EXPECT_EQ(f->size(), 5);
  EXPECT_EQ(f->channels(), 1);
  const std::string dir = fresh_dir("open_cifar");
  write_cifar(dir + "/test_batch.bin", {{2}}, 0);
  EXPECT_EQ(open_dataset("cifar10:" + dir, Split::val, 32, 3)->label(0), 2);
  EXPECT_THROW_MSG(open_dataset("procedural:nope", Split::train, 8, 3), ValueError, std::string("shapes-textured"));
  EXPECT_THROW(open_dataset("procedural:", Split::train, 8, 3), ValueError);
  EXPECT_THROW(open_dataset("cifar100:", Split::train, 8, 3), ValueError);
  EXPECT_THROW_MSG(open_dataset("/no/such/folder", Split::train, 8, 3), IOError, std::string("/no/such/folder"));
}
