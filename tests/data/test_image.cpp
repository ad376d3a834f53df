// Image decoding (PNG, BMP, JPEG from tools/reference/make_image_fixtures.py), channel conversion, PNG writing.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/image.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using namespace peft;
using namespace peft::data;

namespace {

const std::string kDir = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/images/";

nlohmann::json expected() {
  std::ifstream f(kDir + "expected.json");
  EXPECT_TRUE(f.good()) << "run tools/reference/make_image_fixtures.py";
  return nlohmann::json::parse(f);
}

// Max |decoded - expected/255| over an [H, W, C] nested list (or [H, W] for gray) restricted to C channels.
double max_diff(const Image& img, const nlohmann::json& e, int64_t channels) {
  double worst = 0;
  EXPECT_EQ(img.H, static_cast<int64_t>(e.size()));
  EXPECT_EQ(img.W, static_cast<int64_t>(e[0].size()));
  for (int64_t y = 0; y < img.H; ++y)
    for (int64_t x = 0; x < img.W; ++x)
      for (int64_t c = 0; c < channels; ++c) {
        const auto& px = e[static_cast<size_t>(y)][static_cast<size_t>(x)];
        const double want = (px.is_array() ? px[static_cast<size_t>(c)].get<double>() : px.get<double>()) / 255.0;
        worst = std::max(worst, std::abs(static_cast<double>(img.at(y, x, c)) - want));
      }
  return worst;
}

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "peft_image_" + name; }

}  // namespace

TEST(Image, DecodesPngAndBmpExactly) {
  auto e = expected();
  for (const char* name : {"rgb.png", "rgb.bmp"}) {
    Image img = load_image(kDir + name, 3);
    EXPECT_EQ(img.C, 3);
    EXPECT_EQ(img.H, 4);
    EXPECT_EQ(img.W, 5);
    EXPECT_LT(max_diff(img, e[name], 3), 1e-7) << name;
  }
}

TEST(Image, GrayIsReplicatedToRgb) {
  auto e = expected();
  Image g1 = load_image(kDir + "gray.png", 1);
  EXPECT_EQ(g1.C, 1);
  EXPECT_LT(max_diff(g1, e["gray.png"], 1), 1e-7);
  Image g3 = load_image(kDir + "gray.png", 3);
  ASSERT_EQ(g3.C, 3);
  for (int64_t y = 0; y < g3.H; ++y)
    for (int64_t x = 0; x < g3.W; ++x)
      for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(g3.at(y, x, c), g1.at(y, x, 0));
}

TEST(Image, AlphaIsDropped) {
  auto e = expected();
  Image img = load_image(kDir + "rgba.png", 3);
  EXPECT_EQ(img.C, 3);
  EXPECT_EQ(img.H, 2);
  EXPECT_EQ(img.W, 3);
  EXPECT_LT(max_diff(img, e["rgba.png"], 3), 1e-7);
}

TEST(Image, DecodesJpegClosely) {
  auto e = expected();
  Image img = load_image(kDir + "smooth.jpg", 3);
  EXPECT_EQ(img.H, 8);
  EXPECT_EQ(img.W, 8);
  // lossy: quality 95, 4:4:4 on a smooth ramp stays within a few levels
  EXPECT_LT(max_diff(img, e["smooth.jpg"], 3), 4.5 / 255.0);
}

TEST(Image, RgbToGrayUsesLuma) {
  auto e = expected()["rgb.png"];
  Image g = load_image(kDir + "rgb.png", 1);
  ASSERT_EQ(g.C, 1);
  for (int64_t y = 0; y < g.H; ++y)
    for (int64_t x = 0; x < g.W; ++x) {
      const auto& px = e[static_cast<size_t>(y)][static_cast<size_t>(x)];
      const double luma = (0.299 * px[0].get<double>() + 0.587 * px[1].get<double>() + 0.114 * px[2].get<double>()) / 255;
      EXPECT_NEAR(g.at(y, x, 0), luma, 1.5 / 255.0);  // stb uses an integer approximation
    }
}

TEST(Image, ConvertChannels) {
  Image rgb(1, 2, 3);
  rgb.pixels = {1.0f, 0.0f, 0.0f, 0.2f, 0.4f, 0.6f};
  Image g = convert_channels(rgb, 1);
  ASSERT_EQ(g.C, 1);
  EXPECT_FLOAT_EQ(g.at(0, 0, 0), 0.299f);
  EXPECT_FLOAT_EQ(g.at(0, 1, 0), 0.299f * 0.2f + 0.587f * 0.4f + 0.114f * 0.6f);
  Image back = convert_channels(g, 3);
  EXPECT_EQ(back.C, 3);
  EXPECT_EQ(back.at(0, 1, 2), g.at(0, 1, 0));
  Image rgba(1, 1, 4);
  rgba.pixels = {0.1f, 0.2f, 0.3f, 0.9f};
  Image dropped = convert_channels(rgba, 3);
  EXPECT_EQ(dropped.pixels, (std::vector<float>{0.1f, 0.2f, 0.3f}));
  EXPECT_THROW(convert_channels(rgb, 2), ValueError);
}

TEST(Image, CorruptTruncatedAndMissingFilesNameTheFile) {
  const std::string bad = temp_path("garbage.png");
  {
    std::ofstream f(bad, std::ios::binary);
    f << "this is not an image at all, just some text";
  }
  EXPECT_THROW_MSG(load_image(bad), IOError, std::string("load_image"), bad, std::string("Hint"));
  EXPECT_FALSE(probe_image(bad));

  const std::string trunc = kDir + "truncated.png";
  EXPECT_TRUE(probe_image(trunc));  // the header is intact...
  EXPECT_THROW_MSG(load_image(trunc), IOError, trunc);  // ...the data is not

  const std::string missing = temp_path("does_not_exist.png");
  EXPECT_THROW_MSG(load_image(missing), IOError, missing, std::string("missing"));

  const std::string empty = temp_path("empty.png");
  { std::ofstream f(empty, std::ios::binary); }
  EXPECT_THROW_MSG(load_image(empty), IOError, empty);

  EXPECT_THROW_MSG(load_image(kDir + "rgb.png", 2), ValueError, "1 or 3");
}

TEST(Image, ProbeReadsTheHeader) {
  int64_t H = 0, W = 0, C = 0;
  ASSERT_TRUE(probe_image(kDir + "rgba.png", &H, &W, &C));
  EXPECT_EQ(H, 2);
  EXPECT_EQ(W, 3);
  EXPECT_EQ(C, 4);
}

TEST(Image, SavePngRoundTrips) {
  Image img(3, 4, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<float>((i * 37) % 256) / 255.0f;
  const std::string p = temp_path("roundtrip.png");
  save_png(img, p);
  Image back = load_image(p, 3);
  ASSERT_EQ(back.H, 3);
  ASSERT_EQ(back.W, 4);
  EXPECT_EQ(back.pixels, img.pixels);  // exact: the values are multiples of 1/255

  Image g(2, 2, 1);
  g.pixels = {0.0f, 1.0f, 2.0f, -1.0f};  // out of range values are clamped
  save_png(g, p);
  Image gb = load_image(p, 1);
  EXPECT_EQ(gb.pixels, (std::vector<float>{0.0f, 1.0f, 1.0f, 0.0f}));

  EXPECT_THROW_MSG(save_png(img, temp_path("no_such_dir/x.png")), IOError, "no_such_dir");
  EXPECT_THROW(save_png(Image(2, 2, 2), p), ValueError);
}

TEST(Image, Uint8Conversion) {
  const uint8_t px[] = {0, 128, 255};
  Image img = from_uint8(px, 1, 1, 3);
  EXPECT_FLOAT_EQ(img.pixels[1], 128.0f / 255.0f);
  EXPECT_EQ(to_uint8(img), (std::vector<uint8_t>{0, 128, 255}));
}
