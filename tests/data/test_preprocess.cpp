// Preprocess: the eval transform against torchvision and PIL (tools/reference/make_preprocess_fixture.py),
// PIL's resampling, validation, rrc on originals, datasets and loader following a Preprocess, reduced JPEG decoding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/jpeg_reduced.h"
#include "data/loader.h"
#include "data/preprocess.h"
#include "data/resample.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using namespace peft;
using namespace peft::data;

namespace {

const std::string kDir = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/preprocess/";

// The F32 tensors of a safetensors file ([C, H, W] here) and its "cases" metadata.
struct Fixture {
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> tensors;
  nlohmann::json cases;
};

Fixture read_fixture() {
  std::ifstream f(kDir + "expected.safetensors", std::ios::binary);
  EXPECT_TRUE(f.good()) << "run tools/reference/make_preprocess_fixture.py";
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, ' ');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const std::vector<char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Fixture fx;
  const nlohmann::json h = nlohmann::json::parse(header);
  for (const auto& [name, e] : h.items()) {
    if (name == "__metadata__") {
      fx.cases = nlohmann::json::parse(e["cases"].get<std::string>());
      continue;
    }
    EXPECT_EQ(e["dtype"], "F32");
    const size_t a = e["data_offsets"][0], b = e["data_offsets"][1];
    std::vector<float> v((b - a) / sizeof(float));
    std::memcpy(v.data(), data.data() + a, b - a);
    fx.tensors[name] = {e["shape"].get<std::vector<int64_t>>(), std::move(v)};
  }
  return fx;
}

// Max |img - t| with img HWC and t [C, H, W] (times `scale`); the shapes must agree.
double max_diff(const Image& img, const std::pair<std::vector<int64_t>, std::vector<float>>& t, double scale = 1.0) {
  const auto& [shape, v] = t;
  EXPECT_EQ(shape, (std::vector<int64_t>{img.C, img.H, img.W}));
  if (shape != std::vector<int64_t>{img.C, img.H, img.W}) return 1e9;
  double worst = 0;
  for (int64_t c = 0; c < img.C; ++c)
    for (int64_t y = 0; y < img.H; ++y)
      for (int64_t x = 0; x < img.W; ++x)
        worst = std::max(worst, std::abs(static_cast<double>(img.at(y, x, c)) * scale -
                                         v[static_cast<size_t>((c * img.H + y) * img.W + x)]));
  return worst;
}

Preprocess make_pre(int64_t size, const std::string& interp, double crop_pct, const std::string& mode) {
  Preprocess p;
  p.size = size;
  p.interpolation = interp;
  p.crop_pct = crop_pct;
  p.crop_mode = mode;
  p.source = "test";
  return p;
}

Image ramp(int64_t H, int64_t W, int64_t C) {
  Image img(H, W, C);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<float>((i * 37) % 101) / 100.0f;
  return img;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string fresh_dir(const std::string& name) {
  const fs::path p = fs::path(::testing::TempDir()) / ("peft_preprocess_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace

TEST(Preprocess, EvalTransformMatchesTorchvisionAndPil) {
  const Fixture fx = read_fixture();
  ASSERT_EQ(fx.cases.size(), 13u);
  for (const auto& c : fx.cases) {
    const std::string k = std::to_string(c["case"].get<int>());
    const Preprocess p = make_pre(c["size"], c["interpolation"], c["crop_pct"], c["crop_mode"]);
    SCOPED_TRACE("case " + k + ": " + c["image"].get<std::string>() + ", " + p.describe());
    const Image original = load_image(kDir + c["image"].get<std::string>(), c["channels"]);
    // the resize alone, unclamped: torchvision's F.resize(antialias=True) on the float tensor
    const Image resized = resize(original, c["resized"][0], c["resized"][1], p.interpolation);
    EXPECT_LT(max_diff(resized, fx.tensors.at(k + ".resized")), 1e-5);
    // the eval transform: resize, clamp, centre crop
    const Image out = eval_transform(original, p);
    EXPECT_LT(max_diff(out, fx.tensors.at(k + ".eval")), 1e-5);
    // PIL's own float path (mode "F") computes the same sums
    EXPECT_LT(max_diff(out, fx.tensors.at(k + ".pilf")), 1e-5);
    // PIL on the uint8 image (timm's input) rounds the result: within one level. For bicubic it
    // also rounds and clips the horizontal pass, so overshoot at hard edges leaves larger local
    // differences (up to ~15 levels on these noisy, edgy fixtures); on average it stays close.
    const double pil_max = max_diff(out, fx.tensors.at(k + ".pil"), 255.0);
    if (p.interpolation != "bicubic") {
      EXPECT_LE(pil_max, 1.0 + 1e-3);
    } else {
      const auto& [shape, v] = fx.tensors.at(k + ".pil");
      double sum = 0;
      for (int64_t ch = 0; ch < out.C; ++ch)
        for (int64_t y = 0; y < out.H; ++y)
          for (int64_t x = 0; x < out.W; ++x)
            sum += std::abs(out.at(y, x, ch) * 255.0 - v[static_cast<size_t>((ch * out.H + y) * out.W + x)]);
      EXPECT_LT(sum / static_cast<double>(out.pixels.size()), 0.5);
      EXPECT_LT(pil_max, 16.0);
    }
  }
}

TEST(Preprocess, ResizeIsPilsFilterNotPlainInterpolation) {
  // shrinking 8 -> 2 with antialias averages whole blocks; F.interpolate without it would read
  // two pixels only. A one-pixel-wide line must leave a trace in every output.
  Image img(1, 8, 1);
  img.at(0, 3, 0) = 1.0f;
  Image out = resize(img, 1, 2, "bilinear");
  ASSERT_EQ(out.W, 2);
  // PIL: centre 2, support 4 -> taps x = 0..5 with weights 1 - |x + 0.5 - 2| / 4 =
  // (0.625, 0.875, 0.875, 0.625, 0.375, 0.125), normalised by their sum 3.5
  EXPECT_NEAR(out.at(0, 0, 0), 0.625 / 3.5, 1e-6);
  // the old, aliasing resize reads pixels 1, 2 and 5, 6 only and misses the line
  EXPECT_EQ(resize_bilinear(img, 1, 2).at(0, 0, 0), 0.0f);
  EXPECT_EQ(resize_bilinear(img, 1, 2).at(0, 1, 0), 0.0f);
  // nearest takes pixel centres: floor((x + 0.5) * 4) = 2 and 6
  Image ramp8(1, 8, 1);
  for (int64_t x = 0; x < 8; ++x) ramp8.at(0, x, 0) = static_cast<float>(x);
  Image nn = resize(ramp8, 1, 2, "nearest");
  EXPECT_EQ(nn.at(0, 0, 0), 2.0f);
  EXPECT_EQ(nn.at(0, 1, 0), 6.0f);
  EXPECT_THROW_MSG(resize(img, 2, 2, "lanczos"), ValueError, "lanczos", "bicubic");
  EXPECT_THROW(resize(img, 0, 2, "bicubic"), ValueError);
}

TEST(Preprocess, SameSizeChangesNothingAndSolidStaysSolid) {
  const Image img = ramp(12, 12, 3);
  for (const char* interp : {"bicubic", "bilinear", "nearest"}) {
    EXPECT_EQ(eval_transform(img, make_pre(12, interp, 1.0, "squash")).pixels, img.pixels);
    EXPECT_EQ(eval_transform(img, make_pre(12, interp, 1.0, "center")).pixels, img.pixels);
    EXPECT_EQ(resize(img, 12, 12, interp).pixels, img.pixels);
  }
  // a centre crop of a short side that is already floor(S / crop_pct): no resampling either
  const Image wide = ramp(12, 20, 3);
  EXPECT_EQ(eval_transform(wide, make_pre(12, "bicubic", 1.0, "center")).pixels, center_crop(wide, 12).pixels);
  Image solid(37, 53, 3);
  std::fill(solid.pixels.begin(), solid.pixels.end(), 0.75f);
  for (const char* interp : {"bicubic", "bilinear"})
    for (const Image& out : {eval_transform(solid, make_pre(16, interp, 0.875, "center")),
                             eval_transform(solid, make_pre(70, interp, 0.9, "center"))})
      for (float v : out.pixels) ASSERT_EQ(v, 0.75f) << interp;
  // bicubic overshoot at a hard edge is clamped, as in a PIL uint8 image
  Image edge(1, 9, 1);
  for (int64_t x = 4; x < 9; ++x) edge.at(0, x, 0) = 1.0f;
  const Image up = resize(edge, 1, 27, "bicubic");
  EXPECT_LT(*std::min_element(up.pixels.begin(), up.pixels.end()), 0.0f);
  const Image ev = eval_transform(edge, make_pre(27, "bicubic", 1.0, "squash"));
  EXPECT_EQ(*std::min_element(ev.pixels.begin(), ev.pixels.end()), 0.0f);
  EXPECT_EQ(*std::max_element(ev.pixels.begin(), ev.pixels.end()), 1.0f);
}

TEST(Preprocess, ShortSideFollowsTimm) {
  EXPECT_EQ(eval_resize_short_side(make_pre(224, "bicubic", 0.875, "center")), 256);
  EXPECT_EQ(eval_resize_short_side(make_pre(224, "bicubic", 0.9, "center")), 248);  // floor(248.89)
  EXPECT_EQ(eval_resize_short_side(make_pre(224, "bilinear", 0.875, "squash")), 224);
  // a 300x200 image at 224 / 0.875: short side 256, long side int(256 * 300 / 200) = 384
  const Image wide = ramp(200, 300, 1);
  const Preprocess p = make_pre(224, "bilinear", 0.875, "center");
  const Image out = eval_transform(wide, p);
  EXPECT_EQ(out.H, 224);
  EXPECT_EQ(out.W, 224);
  EXPECT_EQ(out.pixels, center_crop(resize(wide, 256, 384, "bilinear"), 224).pixels);
}

TEST(Preprocess, ValidateNamesTheFieldAndDescribeSaysItAll) {
  Preprocess p = make_pre(224, "bicubic", 0.875, "center");
  p.source = "config.json (timm pretrained_cfg)";
  EXPECT_NO_THROW(p.validate());
  EXPECT_EQ(p.describe(),
            "224 px, bicubic, center crop 0.875, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) "
            "[config.json (timm pretrained_cfg)]");
  EXPECT_EQ(squash_preprocess(32).describe().substr(0, 21), "32 px, bilinear, squa");
  Preprocess bad = p;
  bad.size = 0;
  EXPECT_THROW_MSG(bad.validate(), ValueError, "size", "config.json");
  bad = p;
  bad.crop_pct = 1.5;
  EXPECT_THROW_MSG(bad.validate(), ValueError, "crop_pct", "1.5");
  bad.crop_pct = 0.0;
  EXPECT_THROW_MSG(bad.validate(), ValueError, "crop_pct");
  bad = p;
  bad.interpolation = "area";
  EXPECT_THROW_MSG(bad.validate(), ValueError, "interpolation", "area");
  bad = p;
  bad.crop_mode = "pad";
  EXPECT_THROW_MSG(bad.validate(), ValueError, "crop_mode", "pad");
  bad = p;
  bad.norm.std[1] = 0.0f;
  EXPECT_THROW_MSG(bad.validate(), ValueError, "std");
  EXPECT_THROW(eval_transform(ramp(4, 4, 3), bad), ValueError);
  EXPECT_THROW(make_transform(Augment{}, bad), ValueError);
}

TEST(Preprocess, RrcCropsTheOriginal) {
  const Image original = ramp(90, 150, 3);
  const Preprocess p = make_pre(24, "bicubic", 0.875, "center");
  const Transform t = make_transform(parse_augment("rrc"), p);
  for (uint64_t seed = 0; seed < 5; ++seed) {
    Generator g1(seed), g2(seed);
    const Tensor x = t(original, g1);
    ASSERT_EQ(x.sizes(), (Shape{3, 24, 24}));
    // the same draws by hand: the box is on the 90x150 original, not on a 24x24 image
    const CropBox b = random_resized_crop_box(90, 150, g2);
    Image want = resize(crop(original, b.top, b.left, b.h, b.w), 24, 24, "bicubic");
    for (float& v : want.pixels) v = std::clamp(v, 0.0f, 1.0f);
    EXPECT_EQ(x.to_vector<float>(), to_tensor(want, p.norm).to_vector<float>());
  }
  // without rrc: the eval image, flipped / shifted as apply_augment does, normalised with p.norm
  const Image small = ramp(24, 24, 3);
  const Augment fs = parse_augment("flip,shift:2");
  const Transform plain = make_transform(fs, p);
  Generator g1(3), g2(3);
  EXPECT_EQ(plain(small, g1).to_vector<float>(), to_tensor(apply_augment(small, fs, g2), p.norm).to_vector<float>());
}

TEST(Preprocess, ImageFolderFollowsThePreprocess) {
  const std::string root = fresh_dir("folder");
  fs::create_directories(fs::path(root) / "a");
  fs::create_directories(fs::path(root) / "b");
  fs::copy_file(kDir + "a.png", root + "/a/a.png");
  fs::copy_file(kDir + "b.png", root + "/b/b.png");
  const Preprocess p = make_pre(16, "bicubic", 0.875, "center");
  ImageFolder ds(root, p, 3);
  EXPECT_EQ(ds.image_size(), 16);
  const Image original = load_image(kDir + "a.png", 3);
  EXPECT_EQ(ds.load(0).pixels, eval_transform(original, p).pixels);
  EXPECT_EQ(ds.load_original(0).pixels, original.pixels);  // a PNG: no reduced decode
  EXPECT_EQ(ds.load_original(1).H, 28);
  // open_dataset with a Preprocess: the same; the plain form is the antialiased S x S squash
  const DatasetPtr opened = open_dataset(root, Split::train, p, 3);
  EXPECT_EQ(opened->load(1).pixels, ds.load(1).pixels);
  const DatasetPtr plain = open_dataset(root, Split::train, 16, 3);
  EXPECT_EQ(plain->load(0).pixels, resize(original, 16, 16, "bilinear").pixels);
  EXPECT_THROW_MSG(ImageFolder(root, make_pre(16, "bicubic", 2.0, "center")), ValueError, "crop_pct");
  // procedural images are drawn at p.size directly, as with the plain form
  const DatasetPtr proc = open_dataset("procedural:shapes", Split::train, p, 3, 10, 1);
  const DatasetPtr proc_plain = open_dataset("procedural:shapes", Split::train, 16, 3, 10, 1);
  EXPECT_EQ(proc->load(3).pixels, proc_plain->load(3).pixels);
  EXPECT_EQ(proc->load_original(3).pixels, proc->load(3).pixels);
}

TEST(Preprocess, LoaderCropsOriginalsWithRrc) {
  const std::string root = fresh_dir("loader");
  for (const char* c : {"a", "b", "c"}) fs::create_directories(fs::path(root) / c);
  fs::copy_file(kDir + "a.png", root + "/a/a.png");
  fs::copy_file(kDir + "b.png", root + "/b/b.png");
  fs::copy_file(kDir + "c.png", root + "/c/c.png");
  const Preprocess p = make_pre(20, "bilinear", 0.9, "center");
  auto ds = std::make_shared<ImageFolder>(root, p, 3);
  LoaderOptions o;
  o.batch_size = 3;
  o.seed = 5;
  set_pipeline(o, parse_augment("rrc,flip"), p);
  EXPECT_TRUE(o.original_images);
  DataLoader loader(ds, o), again(ds, o);
  const Batch b = loader.make_batch(1, 0);
  EXPECT_EQ(b.images.sizes(), (Shape{3, 3, 20, 20}));
  EXPECT_EQ(b.images.to_vector<float>(), again.make_batch(1, 0).images.to_vector<float>());
  EXPECT_NE(b.images.to_vector<float>(), loader.make_batch(2, 0).images.to_vector<float>());
  // eval pipeline: exactly the dataset's eval images, normalised
  LoaderOptions e;
  e.batch_size = 3;
  e.shuffle = false;
  set_pipeline(e, parse_augment("none"), p);
  EXPECT_FALSE(e.original_images);
  const Batch eb = DataLoader(ds, e).make_batch(0, 0);
  const std::vector<float> all = eb.images.to_vector<float>(), one = to_tensor(ds->load(1), p.norm).to_vector<float>();
  EXPECT_EQ(std::vector<float>(all.begin() + 3 * 20 * 20, all.begin() + 6 * 20 * 20), one);
  LoaderOptions bad;
  bad.original_images = true;
  EXPECT_THROW_MSG(DataLoader(ds, bad), ValueError, "original_images");
}

TEST(JpegReduced, PicksTheSmallestScaleThatKeepsTheShortSide) {
  const std::vector<uint8_t> jpg = read_bytes(kDir + "small.jpg");  // 64x48
  ASSERT_FALSE(jpg.empty());
  const Image full = decode_image(jpg.data(), jpg.size(), "small.jpg", 3);
  ASSERT_EQ(full.W, 64);
  ASSERT_EQ(full.H, 48);
  struct Want {
    int64_t min_side, H, W;
  };
  for (const Want& w : {Want{1, 6, 8}, Want{6, 6, 8}, Want{7, 12, 16}, Want{12, 12, 16}, Want{13, 18, 24},
                        Want{30, 30, 40}, Want{42, 42, 56}}) {
    const Image r = decode_image_reduced(jpg.data(), jpg.size(), "small.jpg", 3, w.min_side);
    EXPECT_EQ(r.H, w.H) << w.min_side;
    EXPECT_EQ(r.W, w.W) << w.min_side;
  }
  // no reduction fits: stb_image decodes it, exactly as decode_image
  for (int64_t m : {43, 48, 1000})
    EXPECT_EQ(decode_image_reduced(jpg.data(), jpg.size(), "small.jpg", 3, m).pixels, full.pixels);
  // the reduced image is the full one, smaller: the 1/4-scale IDCT is close to a 4x4 block mean
  const Image quarter = decode_image_reduced(jpg.data(), jpg.size(), "small.jpg", 3, 12);
  double mean = 0;
  for (int64_t y = 0; y < 12; ++y)
    for (int64_t x = 0; x < 16; ++x)
      for (int64_t c = 0; c < 3; ++c) {
        double block = 0;
        for (int64_t dy = 0; dy < 4; ++dy)
          for (int64_t dx = 0; dx < 4; ++dx) block += full.at(4 * y + dy, 4 * x + dx, c) / 16.0;
        mean += std::abs(block - quarter.at(y, x, c)) / (12.0 * 16.0 * 3.0);
      }
  EXPECT_LT(mean, 0.025);  // 0.017: the IDCT is not a box filter, and chroma is subsampled (4:2:0)
  // one channel: the JPEG's luma, close to stb's conversion
  const Image gray = decode_image_reduced(jpg.data(), jpg.size(), "small.jpg", 1, 24);
  const Image gray_ref = resize(decode_image(jpg.data(), jpg.size(), "small.jpg", 1), 24, 32, "bilinear");
  ASSERT_EQ(gray.C, 1);
  double gmean = 0;
  for (size_t i = 0; i < gray.pixels.size(); ++i) gmean += std::abs(gray.pixels[i] - gray_ref.pixels[i]);
  EXPECT_LT(gmean / static_cast<double>(gray.pixels.size()), 0.03);
  // not a JPEG, or nothing to gain: empty (the caller decodes with stb)
  const std::vector<uint8_t> png = read_bytes(kDir + "b.png");
  EXPECT_TRUE(decode_jpeg_reduced(png.data(), png.size(), 3, 4).empty());
  EXPECT_TRUE(decode_jpeg_reduced(jpg.data(), jpg.size(), 3, 48).empty());
  EXPECT_EQ(decode_image_reduced(png.data(), png.size(), "b.png", 3, 4).pixels, load_image(kDir + "b.png").pixels);
}

TEST(JpegReduced, BrokenJpegsGetStbsVerdictNamingTheFile) {
  const std::vector<uint8_t> jpg = read_bytes(kDir + "small.jpg");
  // header only: libjpeg-turbo fails, stb fails too -> one IOError naming the file
  const std::vector<uint8_t> head(jpg.begin(), jpg.begin() + 200);
  EXPECT_THROW_MSG(decode_image_reduced(head.data(), head.size(), "head.jpg", 3, 8), IOError, "head.jpg");
  // a truncated scan: libjpeg-turbo only warns (premature end), which sends it to stb; the
  // result is stb's, whatever it is
  const std::vector<uint8_t> cut(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(jpg.size() * 2 / 3));
  EXPECT_TRUE(decode_jpeg_reduced(cut.data(), cut.size(), 3, 8).empty());
  std::string stb_error, reduced_error;
  Image a, b;
  try {
    a = decode_image(cut.data(), cut.size(), "cut.jpg", 3);
  } catch (const IOError& e) {
    stb_error = e.what();
  }
  try {
    b = decode_image_reduced(cut.data(), cut.size(), "cut.jpg", 3, 8);
  } catch (const IOError& e) {
    reduced_error = e.what();
  }
  EXPECT_EQ(stb_error, reduced_error);
  EXPECT_EQ(a.pixels, b.pixels);
  // and from a file: the path is in the message
  const std::string dir = fresh_dir("broken");
  std::ofstream(dir + "/head.jpg", std::ios::binary).write(reinterpret_cast<const char*>(head.data()), 200);
  EXPECT_THROW_MSG(load_image_reduced(dir + "/head.jpg", 3, 8), IOError, dir + "/head.jpg");
  EXPECT_THROW_MSG(load_image_reduced(dir + "/missing.jpg", 3, 8), IOError, "missing.jpg");
}
