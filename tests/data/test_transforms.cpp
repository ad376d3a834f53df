// Transforms: bilinear resize against F.interpolate (tests/fixtures/resize.json), crops, flip, shift, rrc, normalisation.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "data/transforms.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::data;

namespace {

// Pixel value = 100*y + 10*x + c: every pixel names its own position.
Image coded(int64_t H, int64_t W, int64_t C) {
  Image img(H, W, C);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < C; ++c) img.at(y, x, c) = static_cast<float>(100 * y + 10 * x + c);
  return img;
}

}  // namespace

TEST(Transforms, ResizeMatchesTorchInterpolate) {
  std::ifstream f(std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/resize.json");
  ASSERT_TRUE(f.good()) << "run tools/reference/make_image_fixtures.py";
  auto j = nlohmann::json::parse(f);
  Image x(j["H"].get<int64_t>(), j["W"].get<int64_t>(), j["C"].get<int64_t>());
  x.pixels = j["input_hwc"].get<std::vector<float>>();
  ASSERT_EQ(x.pixels.size(), static_cast<size_t>(x.H * x.W * x.C));
  int cases = 0;
  for (const auto& c : j["cases"]) {
    const int64_t oh = c["size"][0].get<int64_t>(), ow = c["size"][1].get<int64_t>();
    const auto want = c["output"].get<std::vector<float>>();
    Image y = resize_bilinear(x, oh, ow);
    ASSERT_EQ(y.H, oh);
    ASSERT_EQ(y.W, ow);
    ASSERT_EQ(y.pixels.size(), want.size());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(double(y.pixels[i]) - double(want[i])));
    EXPECT_LT(worst, 2e-7) << "size " << oh << "x" << ow;
    ++cases;
  }
  EXPECT_EQ(cases, 6);
}

TEST(Transforms, ResizeHandValues) {
  // 1x2 -> 1x4: source x = (o + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (edge)
  Image img(1, 2, 1);
  img.pixels = {0.0f, 1.0f};
  Image y = resize_bilinear(img, 1, 4);
  EXPECT_EQ(y.pixels, (std::vector<float>{0.0f, 0.25f, 0.75f, 1.0f}));
  EXPECT_THROW(resize_bilinear(img, 0, 3), ValueError);
}

TEST(Transforms, CropPadsWithBlack) {
  Image img = coded(3, 4, 2);
  Image c = crop(img, 1, 2, 2, 2);
  EXPECT_EQ(c.at(0, 0, 1), img.at(1, 2, 1));
  EXPECT_EQ(c.at(1, 1, 0), img.at(2, 3, 0));
  Image p = crop(img, -1, -1, 5, 6);  // one pixel of black all around
  EXPECT_EQ(p.at(0, 0, 0), 0.0f);
  EXPECT_EQ(p.at(4, 5, 1), 0.0f);
  EXPECT_EQ(p.at(1, 1, 1), img.at(0, 0, 1));
  EXPECT_EQ(p.at(3, 4, 0), img.at(2, 3, 0));
  Image out = crop(img, 10, 10, 2, 2);  // entirely outside
  for (float v : out.pixels) EXPECT_EQ(v, 0.0f);
}

TEST(Transforms, CenterCropLikeTorchvision) {
  // H=5 -> 2: top = round(1.5) = 2 (half to even); W=7 -> 2: left = round(2.5) = 2
  Image img = coded(5, 7, 1);
  Image c = center_crop(img, 2);
  EXPECT_EQ(c.at(0, 0, 0), img.at(2, 2, 0));
  EXPECT_EQ(c.at(1, 1, 0), img.at(3, 3, 0));
  // H=4 -> 2: top 1
  Image c2 = center_crop(coded(4, 4, 1), 2);
  EXPECT_EQ(c2.at(0, 0, 0), 110.0f);
  // a smaller image is padded: 2x3 -> 5: top pad (5-2)/2 = 1, left pad (5-3)/2 = 1
  Image small = coded(2, 3, 1);
  small.at(0, 0, 0) = 7.0f;
  Image big = center_crop(small, 5);
  EXPECT_EQ(big.H, 5);
  EXPECT_EQ(big.at(1, 1, 0), 7.0f);
  EXPECT_EQ(big.at(2, 3, 0), small.at(1, 2, 0));
  EXPECT_EQ(big.at(0, 0, 0), 0.0f);
  EXPECT_EQ(big.at(4, 4, 0), 0.0f);
}

TEST(Transforms, HorizontalFlip) {
  Image img = coded(2, 3, 3);
  Image f = hflip(img);
  for (int64_t y = 0; y < 2; ++y)
    for (int64_t x = 0; x < 3; ++x)
      for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(f.at(y, x, c), img.at(y, 2 - x, c));
  EXPECT_EQ(hflip(f).pixels, img.pixels);
}

TEST(Transforms, PadRandomCropIsABoundedShift) {
  Image img = coded(6, 6, 1);
  for (int64_t y = 0; y < 6; ++y)
    for (int64_t x = 0; x < 6; ++x) img.at(y, x, 0) += 1.0f;  // no zero pixels inside the image
  std::set<std::pair<int64_t, int64_t>> shifts;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Generator g(seed);
    Image out = pad_random_crop(img, 2, g);
    ASSERT_EQ(out.H, 6);
    // recover the shift from any pixel that came from the image
    int64_t dy = 99, dx = 99;
    for (int64_t y = 0; y < 6 && dy == 99; ++y)
      for (int64_t x = 0; x < 6; ++x)
        if (out.at(y, x, 0) != 0.0f) {
          const auto v = static_cast<int64_t>(out.at(y, x, 0) - 1.0f);
          dy = v / 100 - y, dx = (v % 100) / 10 - x;
          break;
        }
    ASSERT_LE(std::abs(dy), 2);
    ASSERT_LE(std::abs(dx), 2);
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 6; ++x) {
        const int64_t sy = y + dy, sx = x + dx;
        const float want = (sy >= 0 && sy < 6 && sx >= 0 && sx < 6) ? img.at(sy, sx, 0) : 0.0f;
        ASSERT_EQ(out.at(y, x, 0), want);
      }
    shifts.insert({dy, dx});
  }
  EXPECT_EQ(shifts.size(), 25u);  // every shift in [-2, 2]^2 happens
  Generator a(5), b(5);
  EXPECT_EQ(pad_random_crop(img, 3, a).pixels, pad_random_crop(img, 3, b).pixels);
}

TEST(Transforms, RandomResizedCropBoxes) {
  Generator g(1);
  bool saw_small = false, saw_large = false;
  for (int i = 0; i < 500; ++i) {
    CropBox b = random_resized_crop_box(40, 60, g);
    ASSERT_GE(b.top, 0);
    ASSERT_GE(b.left, 0);
    ASSERT_LE(b.top + b.h, 40);
    ASSERT_LE(b.left + b.w, 60);
    const double frac = double(b.h * b.w) / (40.0 * 60.0);
    ASSERT_GE(frac, 0.06);  // 0.08 less the rounding of w and h
    const double ratio = double(b.w) / double(b.h);
    ASSERT_GT(ratio, 0.6);
    ASSERT_LT(ratio, 1.6);
    saw_small |= frac < 0.3;
    saw_large |= frac > 0.7;
  }
  EXPECT_TRUE(saw_small);
  EXPECT_TRUE(saw_large);
  // every draw too large: torchvision's fallback, the centred crop at the clamped ratio
  CropBox f = random_resized_crop_box(4, 10, g, {2.0, 3.0});
  EXPECT_EQ(f.h, 4);
  EXPECT_EQ(f.w, 5);  // round(4 * 4/3)
  EXPECT_EQ(f.top, 0);
  EXPECT_EQ(f.left, 2);
  Generator g1(3), g2(3);
  Image img = coded(8, 8, 3);
  Image r1 = random_resized_crop(img, 5, g1), r2 = random_resized_crop(img, 5, g2);
  EXPECT_EQ(r1.H, 5);
  EXPECT_EQ(r1.W, 5);
  EXPECT_EQ(r1.pixels, r2.pixels);
}

TEST(Transforms, NormalizeToChw) {
  Image img(1, 2, 3);
  img.pixels = {0.5f, 0.25f, 1.0f, 0.0f, 0.75f, 0.125f};  // HWC
  Tensor t = to_tensor(img, imagenet_normalization());
  ASSERT_EQ(t.sizes(), (Shape{3, 1, 2}));
  ASSERT_EQ(t.dtype(), DType::f32);
  auto v = t.to_vector<float>();  // CHW
  EXPECT_EQ(v[0], (0.5f - 0.485f) / 0.229f);
  EXPECT_EQ(v[1], (0.0f - 0.485f) / 0.229f);
  EXPECT_EQ(v[2], (0.25f - 0.456f) / 0.224f);
  EXPECT_EQ(v[3], (0.75f - 0.456f) / 0.224f);
  EXPECT_EQ(v[4], (1.0f - 0.406f) / 0.225f);
  EXPECT_EQ(v[5], (0.125f - 0.406f) / 0.225f);
  Tensor c = to_tensor(img, clip_normalization());
  EXPECT_EQ(c.to_vector<float>()[2], (0.25f - 0.4578275f) / 0.26130258f);
  EXPECT_EQ(to_tensor(img).to_vector<float>(), (std::vector<float>{0.5f, 0.0f, 0.25f, 0.75f, 1.0f, 0.125f}));
  Image gray(1, 1, 1);
  gray.pixels = {0.5f};
  const float m = (0.485f + 0.456f + 0.406f) / 3.0f, s = (0.229f + 0.224f + 0.225f) / 3.0f;
  EXPECT_EQ(to_tensor(gray, imagenet_normalization()).to_vector<float>()[0], (0.5f - m) / s);
  EXPECT_THROW(normalization_by_name("imagenet21k"), ValueError);
  EXPECT_EQ(normalization_by_name("clip").std[2], 0.27577711f);
}

TEST(Transforms, ParseAugment) {
  Augment none = parse_augment("none");
  EXPECT_FALSE(none.flip || none.rrc || none.shift);
  Augment a = parse_augment("flip,shift:4,rrc");
  EXPECT_TRUE(a.flip);
  EXPECT_TRUE(a.rrc);
  EXPECT_EQ(a.shift, 4);
  EXPECT_EQ(augment_str(a), "rrc,flip,shift:4");
  EXPECT_EQ(augment_str(none), "none");
  EXPECT_THROW_MSG(parse_augment("shift:x"), ValueError, std::string("shift:x"));
  EXPECT_THROW_MSG(parse_augment("shift:0"), ValueError, std::string("shift:0"));
  EXPECT_THROW_MSG(parse_augment("flip,rotate"), ValueError, std::string("rotate"));
  EXPECT_THROW(parse_augment(""), ValueError);
}

TEST(Transforms, AugmentIsSeededAndFlipsHalfTheTime) {
  Image img = coded(4, 4, 3);
  Augment a = parse_augment("flip");
  int flips = 0;
  for (uint64_t s = 0; s < 400; ++s) {
    Generator g(s);
    Image out = apply_augment(img, a, g);
    if (out.pixels != img.pixels) {
      ASSERT_EQ(out.pixels, hflip(img).pixels);
      ++flips;
    }
  }
  EXPECT_GT(flips, 150);
  EXPECT_LT(flips, 250);
  Transform t = make_transform(parse_augment("rrc,flip,shift:1"), imagenet_normalization());
  Generator g1(9), g2(9);
  Tensor x1 = t(img, g1), x2 = t(img, g2);
  EXPECT_EQ(x1.sizes(), (Shape{3, 4, 4}));
  EXPECT_EQ(x1.to_vector<float>(), x2.to_vector<float>());
}
