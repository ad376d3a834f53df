// Procedural tasks: determinism per seed/split, class balance, attribute/label/caption consistency, rendering, speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <sstream>

#include "core/error.h"
#include "data/procedural.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::data;

namespace {

bool contains(const std::string& s, const std::string& word) { return s.find(word) != std::string::npos; }

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

}  // namespace

TEST(Procedural, TaskList) {
  std::vector<std::string> names;
  for (const auto& t : procedural_tasks()) {
    names.push_back(t.name);
    EXPECT_GE(t.classes.size(), 2u) << t.name;
    EXPECT_FALSE(t.description.empty());
  }
  for (const char* need : {"shapes", "shapes-textured", "colors", "count", "size-position", "textures", "mixed"})
    EXPECT_NE(std::find(names.begin(), names.end(), need), names.end()) << need;
  EXPECT_EQ(procedural_task("shapes").classes, procedural_shapes());
  EXPECT_EQ(procedural_task("shapes-textured").classes, procedural_shapes());
  EXPECT_EQ(procedural_task("count").classes, (std::vector<std::string>{"one", "two", "three", "four"}));
  EXPECT_EQ(procedural_task("size-position").classes.size(), 8u);
  EXPECT_THROW_MSG(procedural_task("digits"), ValueError, std::string("digits"), std::string("shapes"));
}

TEST(Procedural, DeterministicPerSeedAndSplit) {
  ProceduralDataset a("shapes", 30, 16, 7, Split::train), b("shapes", 30, 16, 7, Split::train);
  ProceduralDataset other_seed("shapes", 30, 16, 8, Split::train), val("shapes", 30, 16, 7, Split::val);
  int same_seed_diffs = 0, seed_diffs = 0, split_diffs = 0;
  for (int64_t i = 0; i < 30; ++i) {
    const Image x = a.load(i);
    same_seed_diffs += x.pixels != b.load(i).pixels;
    seed_diffs += x.pixels != other_seed.load(i).pixels;
    split_diffs += x.pixels != val.load(i).pixels;
    EXPECT_EQ(a.caption(i), b.caption(i));
  }
  EXPECT_EQ(same_seed_diffs, 0);
  EXPECT_EQ(seed_diffs, 30);
  EXPECT_EQ(split_diffs, 30);
  // random access: example 17 does not depend on what was drawn before
  ProceduralDataset c("shapes", 30, 16, 7, Split::train);
  EXPECT_EQ(c.load(17).pixels, a.load(17).pixels);
}

TEST(Procedural, ClassesBalancedAndImagesVary) {
  for (const auto& t : procedural_tasks()) {
    const int64_t K = static_cast<int64_t>(t.classes.size()), n = 10 * K + 3;
    ProceduralDataset ds(t.name, n, 16, 1, Split::train);
    std::vector<int64_t> counts(static_cast<size_t>(K), 0);
    for (int64_t y : ds.labels()) counts[static_cast<size_t>(y)]++;
    for (int64_t c = 0; c < K; ++c) {
      EXPECT_GE(counts[static_cast<size_t>(c)], 10) << t.name << " class " << c;
      EXPECT_LE(counts[static_cast<size_t>(c)], 11) << t.name << " class " << c;
    }
    std::set<std::vector<float>> distinct;
    for (int64_t i = 0; i < 20; ++i) {
      Image img = ds.load(i);
      ASSERT_EQ(img.H, 16);
      ASSERT_EQ(img.C, 3);
      for (float v : img.pixels) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
      distinct.insert(img.pixels);
    }
    EXPECT_EQ(distinct.size(), 20u) << t.name;
  }
}

TEST(Procedural, LabelsControlTheirAttribute) {
  const int64_t n = 64;
  ProceduralDataset shapes("shapes", n, 32, 2, Split::train), textured("shapes-textured", n, 32, 2, Split::train);
  ProceduralDataset colors("colors", n, 32, 2, Split::train), count("count", n, 32, 2, Split::train);
  ProceduralDataset sp("size-position", n, 32, 2, Split::train), tex("textures", n, 32, 2, Split::train);
  std::set<int> colors_seen, bgs_seen, sizes_seen;
  for (int64_t i = 0; i < n; ++i) {
    Scene s = shapes.scene(i);
    EXPECT_EQ(s.shape, shapes.label(i));
    EXPECT_EQ(s.background, 0);  // plain
    EXPECT_EQ(s.objects.size(), 1u);
    colors_seen.insert(s.color);
    sizes_seen.insert(s.size);
    Scene st = textured.scene(i);
    EXPECT_EQ(st.shape, textured.label(i));
    EXPECT_NE(st.background, 0);  // always textured: the shifted domain
    bgs_seen.insert(st.background);
    EXPECT_EQ(colors.scene(i).color, colors.label(i));
    EXPECT_EQ(static_cast<int64_t>(count.scene(i).objects.size()), count.label(i) + 1);
    Scene p = sp.scene(i);
    EXPECT_EQ(p.size * 4 + p.position, sp.label(i));
    const auto& o = p.objects.at(0);
    EXPECT_EQ(o.cx > 0.5f, p.position % 2 == 1);
    EXPECT_EQ(o.cy > 0.5f, p.position / 2 == 1);
    EXPECT_EQ(tex.scene(i).background, tex.label(i));
  }
  // the attributes a task does not control are random
  EXPECT_GE(colors_seen.size(), 6u);
  EXPECT_EQ(sizes_seen.size(), 2u);
  EXPECT_EQ(bgs_seen.size(), 4u);
}

TEST(Procedural, ObjectsAreDrawnWhereTheSceneSays) {
  ProceduralDataset ds("colors", 40, 32, 3, Split::train);
  int checked = 0;
  for (int64_t i = 0; i < 40; ++i) {
    Scene s = ds.scene(i);
    if (s.shape == 4) continue;  // a ring's centre is background
    Image img = ds.load(i);
    const auto& o = s.objects[0];
    const auto x = static_cast<int64_t>(o.cx * 32), y = static_cast<int64_t>(o.cy * 32);
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(img.at(y, x, c), s.object_rgb[static_cast<size_t>(c)], 0.12) << i;
    ++checked;
  }
  EXPECT_GT(checked, 20);
  // the shape changes the picture and nothing else does
  Scene s = ds.scene(0);
  Image base = render_scene(s, 32);
  EXPECT_EQ(render_scene(s, 32).pixels, base.pixels);
  for (int shape = 0; shape < 6; ++shape) {
    if (shape == s.shape) continue;
    Scene t = s;
    t.shape = shape;
    EXPECT_NE(render_scene(t, 32).pixels, base.pixels) << shape;
  }
  // larger objects cover more pixels that differ from the background
  ProceduralDataset sizes("size-position", 16, 32, 4, Split::train);
  double small_area = 0, large_area = 0;
  for (int64_t i = 0; i < 16; ++i) {
    Scene sc = sizes.scene(i);
    sc.pixel_noise = 0;
    Scene bg = sc;
    bg.objects.clear();
    Image with = render_scene(sc, 32), without = render_scene(bg, 32);
    double area = 0;
    for (size_t k = 0; k < with.pixels.size(); ++k) area += std::abs(with.pixels[k] - without.pixels[k]) > 0.05;
    (sc.size == 0 ? small_area : large_area) += area;
  }
  EXPECT_GT(large_area, 2.0 * small_area);
}

TEST(Procedural, CaptionsNameTheAttributes) {
  const auto vocab = procedural_vocabulary();
  EXPECT_TRUE(std::is_sorted(vocab.begin(), vocab.end()));
  ProceduralDataset ds("mixed", 60, 16, 5, Split::train);
  const std::vector<std::string> bg_words = {"plain", "striped", "checkered", "noisy", "gradient"};
  const std::vector<std::string> counts = {"a", "two", "three", "four"};
  int multi = 0;
  for (int64_t i = 0; i < 60; ++i) {
    const Scene s = ds.scene(i);
    const std::string cap = ds.caption(i);
    EXPECT_EQ(cap.rfind("a photo of ", 0), 0u) << cap;
    EXPECT_TRUE(contains(cap, procedural_shapes()[static_cast<size_t>(s.shape)])) << cap;
    EXPECT_TRUE(contains(cap, " " + procedural_colors()[static_cast<size_t>(s.color)] + " ")) << cap;
    EXPECT_TRUE(contains(cap, " " + procedural_sizes()[static_cast<size_t>(s.size)] + " ")) << cap;
    EXPECT_TRUE(contains(cap, "on a " + bg_words[static_cast<size_t>(s.background)] + " background")) << cap;
    EXPECT_TRUE(contains(cap, "of " + counts[s.objects.size() - 1] + " ")) << cap;
    if (s.objects.size() == 1)
      EXPECT_TRUE(contains(cap, "in the " + procedural_positions()[static_cast<size_t>(s.position)])) << cap;
    else
      ++multi;
    for (const auto& w : words(cap)) EXPECT_TRUE(std::binary_search(vocab.begin(), vocab.end(), w)) << w;
  }
  EXPECT_GT(multi, 10);
  EXPECT_EQ(ProceduralDataset("count", 4, 16, 0, Split::train).caption(2).rfind("a photo of three small ", 0), 0u);
}

TEST(Procedural, GrayscaleAndErrors) {
  ProceduralDataset g("shapes", 4, 16, 0, Split::train, 1);
  EXPECT_EQ(g.get(0).image.sizes(), (Shape{1, 16, 16}));
  EXPECT_THROW(ProceduralDataset("shapes", 0, 16, 0, Split::train), ValueError);
  EXPECT_THROW(ProceduralDataset("shapes", 4, 4, 0, Split::train), ValueError);
  EXPECT_THROW(ProceduralDataset("shapes", 4, 16, 0, Split::train, 2), ValueError);
  EXPECT_THROW(g.load(4), ValueError);
  EXPECT_NE(g.describe().find("procedural:shapes"), std::string::npos);
}

TEST(Procedural, ThousandImagesAreFast) {
  ProceduralDataset ds("mixed", 1000, 32, 0, Split::train);
  const auto t0 = std::chrono::steady_clock::now();
  double checksum = 0;
  for (int64_t i = 0; i < ds.size(); ++i) checksum += ds.load(i).pixels[0];
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(checksum, 0);
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(s, 0.5) << "1000 procedural 32x32 images took " << s << " s";
#else
  (void)s;  // sanitizer and debug builds are too slow for a timing bound
#endif
}
