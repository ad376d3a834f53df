// data/plot.h: tick positions and labels, and that line plots and heatmaps come out as PNGs that
// decode to the requested size with the series colours, text and colour bar actually drawn.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "core/error.h"
#include "data/image.h"
#include "data/plot.h"

namespace peft::data {
namespace {

namespace fs = std::filesystem;

std::string temp_png(const std::string& name) {
  return (fs::temp_directory_path() / ("peft_plot_" + std::to_string(::getpid()) + "_" + name + ".png")).string();
}

// Pixels within 0.02 of colour (r, g, b) (save_png rounds to 8 bits).
int64_t count_colour(const Image& img, float r, float g, float b) {
  int64_t n = 0;
  for (int64_t y = 0; y < img.H; ++y)
    for (int64_t x = 0; x < img.W; ++x)
      if (std::abs(img.at(y, x, 0) - r) < 0.02f && std::abs(img.at(y, x, 1) - g) < 0.02f && std::abs(img.at(y, x, 2) - b) < 0.02f) ++n;
  return n;
}

int64_t non_white(const Image& img) { return img.H * img.W - count_colour(img, 1, 1, 1); }

TEST(Plot, NiceTicks) {
  const std::vector<double> s = nice_ticks(0, 1);
  ASSERT_EQ(s.size(), 6u);
  for (size_t i = 0; i < s.size(); ++i) EXPECT_NEAR(s[i], 0.2 * static_cast<double>(i), 1e-12);
  const std::vector<double> t = nice_ticks(0, 200);
  EXPECT_EQ(t.front(), 0);
  EXPECT_EQ(t.back(), 200);
  EXPECT_EQ(t[1] - t[0], 50);
  const std::vector<double> u = nice_ticks(3, 17);  // widened to whole steps
  EXPECT_LE(u.front(), 3);
  EXPECT_GE(u.back(), 17);
  EXPECT_EQ(nice_ticks(5, 5).size() >= 2, true);  // a degenerate range still gets an axis
  EXPECT_THROW(nice_ticks(0, INFINITY), ValueError);
}

TEST(Plot, TickLabels) {
  EXPECT_EQ(tick_label(0), "0");
  EXPECT_EQ(tick_label(1e-17), "0");
  EXPECT_EQ(tick_label(200), "200");
  EXPECT_EQ(tick_label(-3), "-3");
  EXPECT_EQ(tick_label(0.30000000000000004), "0.3");
  EXPECT_EQ(tick_label(0.025), "0.025");
  EXPECT_EQ(tick_label(2.5e9), "2.5e+09");
}

TEST(Plot, LinePlotPng) {
  LinePlot p;
  p.title = "FLOPs vs prompts";
  p.xlabel = "prompts M";
  p.ylabel = "GFLOPs";
  p.width = 320;
  p.height = 240;
  p.series = {{"vpt-deep", {0, 10, 50, 100}, {1, 2, 6, 14}}, {"cvpt", {0, 10, 50, 100}, {1, 1.2, 1.6, 2.1}}};
  const std::string path = temp_png("line");
  save_line_plot(p, path);
  const Image img = load_image(path, 3);
  fs::remove(path);
  EXPECT_EQ(img.W, 320);
  EXPECT_EQ(img.H, 240);
  // Both series are drawn in their palette colours (tab10 blue, orange), text in black.
  EXPECT_GT(count_colour(img, 0.122f, 0.467f, 0.706f), 100);
  EXPECT_GT(count_colour(img, 1.0f, 0.498f, 0.055f), 100);
  EXPECT_GT(count_colour(img, 0, 0, 0), 200);
  EXPECT_GT(non_white(img), 1000);
  // The background stays white: most of the picture.
  EXPECT_GT(count_colour(img, 1, 1, 1), img.W * img.H / 2);
}

TEST(Plot, HigherValuesAreDrawnHigher) {
  // One series rising to the right: its pixels in the right half sit above those in the left half.
  LinePlot p;
  p.series = {{"up", {0, 1}, {0, 1}}};
  const Image img = render_line_plot(p);
  double yl = 0, yr = 0;
  int64_t nl = 0, nr = 0;
  for (int64_t y = 0; y < img.H; ++y)
    for (int64_t x = 0; x < img.W; ++x)
      if (std::abs(img.at(y, x, 0) - 0.122f) < 0.01f && std::abs(img.at(y, x, 2) - 0.706f) < 0.01f) {
        if (x < img.W / 3) yl += static_cast<double>(y), ++nl;
        else if (x > img.W / 2 && x < 2 * img.W / 3) yr += static_cast<double>(y), ++nr;
      }
  ASSERT_GT(nl, 0);
  ASSERT_GT(nr, 0);
  EXPECT_LT(yr / static_cast<double>(nr), yl / static_cast<double>(nl));
}

TEST(Plot, HeatmapPng) {
  Heatmap h;
  h.title = "attention";
  h.row_labels = {"0", "1", "2"};
  h.col_labels = {"0", "10", "50"};
  h.values = {{0, 0.5, 1}, {0, 0.25, 0.75}, {0, 0.1, 0.9}};
  const std::string path = temp_png("heat");
  save_heatmap(h, path);
  const Image img = load_image(path, 3);
  fs::remove(path);
  const Image direct = render_heatmap(h);
  EXPECT_EQ(img.W, direct.W);
  EXPECT_EQ(img.H, direct.H);
  EXPECT_GT(img.W, 3 * h.cell);
  EXPECT_GT(img.H, 3 * h.cell);
  // The cells with 0 are viridis' dark purple, the cell with 1 its yellow (and the colour bar has both).
  EXPECT_GT(count_colour(img, 0.267f, 0.005f, 0.329f), 3 * 30 * 30);
  EXPECT_GT(count_colour(img, 0.993f, 0.906f, 0.144f), 30 * 30);
  EXPECT_GT(non_white(img), 9 * 40 * 40);
}

TEST(Plot, BadInput) {
  LinePlot p;
  EXPECT_THROW(render_line_plot(p), ValueError);
  p.series = {{"a", {0, 1}, {1}}};
  EXPECT_THROW(render_line_plot(p), ValueError);
  p.series = {{"a", {NAN}, {NAN}}};
  EXPECT_THROW(render_line_plot(p), ValueError);
  Heatmap h;
  EXPECT_THROW(render_heatmap(h), ValueError);
  h.values = {{0, 1}, {0}};
  EXPECT_THROW(render_heatmap(h), ValueError);
  h.values = {{0, 1}};
  h.vmin = h.vmax = 1;
  EXPECT_THROW(render_heatmap(h), ValueError);
  h.vmin = 0;
  h.row_labels = {"a", "b"};
  EXPECT_THROW(render_heatmap(h), ValueError);
  h.row_labels = {};
  EXPECT_THROW(save_heatmap(h, "/nonexistent_dir_peft/x.png"), IOError);
}

}  // namespace
}  // namespace peft::data
