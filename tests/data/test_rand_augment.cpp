// RandAugment's ops against PIL (tools/reference/pil_rand_augment_reference.py writes the
// fixtures), timm's config parsing and level rules, and the per-sample draws.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/pil_ops.h"
#include "data/rand_augment.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::data;

namespace {

const std::string kDir = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/augment/";

ImageU8 load_u8(const std::string& file, int64_t channels) { return to_u8(load_image(kDir + file, channels)); }

ImageU8 rows(const ImageU8& strip, int64_t row, int64_t H) {
  ImageU8 out(H, strip.W, strip.C);
  std::copy(strip.px.begin() + row * strip.W * strip.C, strip.px.begin() + (row + H) * strip.W * strip.C, out.px.begin());
  return out;
}

ImageU8 apply_case(const std::string& op, const ImageU8& img, double arg, const RandAugmentHParams& hp) {
  if (op == "adjust_brightness") return pil::enhance_brightness(img, arg);
  if (op == "adjust_contrast") return pil::enhance_contrast(img, arg);
  if (op == "adjust_saturation") return pil::enhance_color(img, arg);
  return apply_rand_augment_op(op, img, arg, hp);
}

}  // namespace

// Every op, argument and resampling filter equals PIL 9.4 byte for byte (PIL's float and
// fixed-point arithmetic is reproduced, so no tolerance is needed).
TEST(RandAugment, OpsMatchPilExactly) {
  std::ifstream f(kDir + "cases.json");
  ASSERT_TRUE(f.good()) << "run tools/reference/pil_rand_augment_reference.py";
  const auto j = nlohmann::json::parse(f);
  std::map<std::string, std::pair<ImageU8, ImageU8>> images;
  for (const char* name : {"a", "b", "c"}) {
    const int64_t ch = std::string(name) == "c" ? 1 : 3;
    images[name] = {load_u8(std::string(name) + ".png", ch), load_u8("expected_" + std::string(name) + ".png", ch)};
  }
  const auto fill = j["fill"].get<std::array<int, 3>>();
  const int fill_gray = j["fill_gray"].get<int>();
  int cases = 0, failed = 0;
  for (const auto& c : j["cases"]) {
    const std::string image = c["image"], op = c["op"], resample = c["resample"];
    const double arg = c["arg"].get<double>();
    const auto& [in, strip] = images.at(image);
    RandAugmentHParams hp;
    hp.resample = pil::resample_by_name(resample, "test");
    for (size_t k = 0; k < 3; ++k) hp.fill[k] = static_cast<uint8_t>(in.C == 1 ? fill_gray : fill[k]);
    const ImageU8 want = rows(strip, c["row"].get<int64_t>(), in.H);
    const ImageU8 got = apply_case(op, in, arg, hp);
    ASSERT_EQ(got.px.size(), want.px.size());
    int diff = 0, worst = 0;
    for (size_t i = 0; i < got.px.size(); ++i)
      if (got.px[i] != want.px[i]) {
        ++diff;
        worst = std::max(worst, std::abs(int(got.px[i]) - int(want.px[i])));
      }
    if (diff && failed++ < 12)
      ADD_FAILURE() << image << " " << op << "(" << arg << ", " << resample << "): " << diff << " of "
                    << got.px.size() << " values differ, by up to " << worst;
    ++cases;
  }
  EXPECT_EQ(cases, 309);
  EXPECT_EQ(failed, 0);
}

TEST(RandAugment, ParsesTimmConfigStrings) {
  RandAugmentConfig c = parse_rand_augment("rand-m9-mstd0.5");
  EXPECT_EQ(c.magnitude, 9);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.prob, 0.5);
  EXPECT_EQ(c.magnitude_std, 0.5);
  EXPECT_EQ(c.magnitude_max, 10);
  EXPECT_FALSE(c.increasing);
  c = parse_rand_augment("rand-n3-m7-inc1-mmax12-p0.8");
  EXPECT_EQ(c.magnitude, 7);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.prob, 0.8);
  EXPECT_EQ(c.magnitude_max, 12);
  EXPECT_TRUE(c.increasing);
  EXPECT_TRUE(parse_rand_augment("rand-inc0").increasing);  // timm: bool("0") is True
  EXPECT_TRUE(std::isinf(parse_rand_augment("rand-mstd101").magnitude_std));
  c = parse_rand_augment("rand");
  EXPECT_EQ(c.magnitude, 10);
  EXPECT_EQ(rand_augment_ops(false).size(), 15u);
  EXPECT_EQ(rand_augment_ops(false)[4], "Posterize");
  EXPECT_EQ(rand_augment_ops(true)[4], "PosterizeIncreasing");
  EXPECT_THROW_MSG(parse_rand_augment("augmix-m5"), ValueError, "--aa", "rand");
  EXPECT_THROW_MSG(parse_rand_augment("rand-m9.5"), ValueError, "--aa", "m9.5", "integer");
  EXPECT_THROW_MSG(parse_rand_augment("rand-q3"), ValueError, "--aa", "unknown key 'q'");
  EXPECT_THROW_MSG(parse_rand_augment("rand-m9-x"), ValueError, "--aa", "'x'");
  EXPECT_THROW_MSG(parse_rand_augment("rand-tweights"), ValueError, "not supported");
  EXPECT_THROW_MSG(parse_rand_augment("rand-p1.5"), ValueError, "p must be in [0, 1]");
}

// timm's LEVEL_TO_ARG at magnitude 9 (and 10), worked out by hand from auto_augment.py.
TEST(RandAugment, LevelToArgumentRules) {
  RandAugmentHParams hp;
  EXPECT_DOUBLE_EQ(rand_augment_arg("Rotate", 9, false, hp), 27.0);
  EXPECT_DOUBLE_EQ(rand_augment_arg("Rotate", 9, true, hp), -27.0);
  EXPECT_EQ(rand_augment_arg("Posterize", 9, false, hp), 3);            // int(3.6)
  EXPECT_EQ(rand_augment_arg("PosterizeIncreasing", 9, false, hp), 1);  // 4 - 3
  EXPECT_EQ(rand_augment_arg("Solarize", 9, false, hp), 230);           // int(230.4)
  EXPECT_EQ(rand_augment_arg("Solarize", 10, false, hp), 256);
  EXPECT_EQ(rand_augment_arg("SolarizeIncreasing", 9, false, hp), 26);
  EXPECT_EQ(rand_augment_arg("SolarizeAdd", 9, false, hp), 99);
  EXPECT_EQ(rand_augment_arg("SolarizeAdd", 20, false, hp), 128);  // min(128, 220)
  EXPECT_DOUBLE_EQ(rand_augment_arg("Color", 9, false, hp), 0.9 * 1.8 + 0.1);
  EXPECT_DOUBLE_EQ(rand_augment_arg("SharpnessIncreasing", 9, false, hp), 1.81);
  EXPECT_DOUBLE_EQ(rand_augment_arg("SharpnessIncreasing", 9, true, hp), 1.0 - 0.9 * 0.9);
  EXPECT_DOUBLE_EQ(rand_augment_arg("BrightnessIncreasing", 20, true, hp), 0.1);  // kept >= 0.1
  EXPECT_DOUBLE_EQ(rand_augment_arg("ShearY", 9, true, hp), -0.27);
  EXPECT_DOUBLE_EQ(rand_augment_arg("TranslateXRel", 9, false, hp), 0.9 * 0.45);
  EXPECT_EQ(rand_augment_arg("Equalize", 9, false, hp), 0);
  EXPECT_EQ(fill_from_mean({0.485f, 0.456f, 0.406f}), (std::array<uint8_t, 3>{124, 116, 104}));
  EXPECT_EQ(fill_from_mean({0.48145466f, 0.4578275f, 0.40821073f}), (std::array<uint8_t, 3>{123, 117, 104}));
  // posterize keeps 8 bits untouched and treats negative bits (m > 10 with inc) as 0
  const ImageU8 img = load_u8("b.png", 3);
  EXPECT_EQ(apply_rand_augment_op("Posterize", img, 8, hp).px, img.px);
  EXPECT_EQ(apply_rand_augment_op("PosterizeIncreasing", img, -1, hp).px, pil::posterize(img, 0).px);
}

TEST(RandAugment, DrawsAreSeededAndOptional) {
  const ImageU8 img = load_u8("a.png", 3);
  RandAugmentHParams hp;
  const RandAugmentConfig cfg = parse_rand_augment("rand-m9-mstd0.5");
  Generator g1(7), g2(7);
  const ImageU8 x = rand_augment(img, cfg, hp, g1), y = rand_augment(img, cfg, hp, g2);
  EXPECT_EQ(x.px, y.px);
  // over many seeds most pictures change (p = 0.5 per op, two ops: about 3 in 4)
  int changed = 0;
  for (uint64_t s = 0; s < 64; ++s) {
    Generator g(s);
    changed += rand_augment(img, cfg, hp, g).px != img.px;
  }
  EXPECT_GE(changed, 32);
  EXPECT_LT(changed, 64);
  // n0 and p0 leave the picture alone
  for (const char* off : {"rand-n0", "rand-p0"}) {
    Generator g(3);
    EXPECT_EQ(rand_augment(img, parse_rand_augment(off), hp, g).px, img.px) << off;
  }
  // p1-n1-m0: one op at magnitude 0 always runs; with mstd the magnitude is clipped to [0, 10]
  Generator g(5);
  const ImageU8 once = rand_augment(img, parse_rand_augment("rand-p1-n1-m0"), hp, g);
  EXPECT_EQ(once.px.size(), img.px.size());
}
