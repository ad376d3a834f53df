// Colour jitter, random erasing and the later train stages (data/train_augment.h) against their
// formulas; the augmentation grid of `peft augment`.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "data/augment_grid.h"
#include "data/color_jitter.h"
#include "data/loader.h"
#include "data/random_erasing.h"
#include "data/train_augment.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::data;

namespace {

const std::string kDir = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/augment/";

Image noise_image(int64_t H, int64_t W, uint64_t seed) {
  Generator g(seed);
  Image img(H, W, 3);
  for (float& v : img.pixels) v = static_cast<float>(std::floor(g.uniform() * 256) / 255.0);
  return img;
}

}  // namespace

// ColorJitter.get_params then forward: a permutation of the four adjustments (hue left out),
// factors uniform in [1 - F, 1 + F] drawn in brightness, contrast, saturation order.
TEST(ColorJitter, FollowsTorchvisionOrderAndFactors) {
  const ImageU8 img = to_u8(load_image(kDir + "a.png", 3));
  for (uint64_t seed = 0; seed < 8; ++seed) {
    Generator g(seed), replay(seed);
    const ImageU8 got = color_jitter(img, 0.4, g);
    std::array<int, 4> order = {0, 1, 2, 3};
    for (int i = 3; i > 0; --i) std::swap(order[size_t(i)], order[replay.next_u64() % uint64_t(i + 1)]);
    std::array<double, 3> f{};
    for (double& x : f) {
      x = 0.6 + 0.8 * replay.uniform();
      EXPECT_GE(x, 0.6);
      EXPECT_LT(x, 1.4);
    }
    ImageU8 want = img;
    for (int fn : order) {
      if (fn == 0) want = pil::enhance_brightness(want, f[0]);
      if (fn == 1) want = pil::enhance_contrast(want, f[1]);
      if (fn == 2) want = pil::enhance_color(want, f[2]);
    }
    EXPECT_EQ(got.px, want.px) << "seed " << seed;
    EXPECT_NE(got.px, img.px);
    EXPECT_EQ(g.state(), replay.state());  // nothing else is drawn
  }
  // strength 0 is torchvision's None: no change and no draw
  Generator g(1);
  const auto before = g.state();
  EXPECT_EQ(color_jitter(img, 0, g).px, img.px);
  EXPECT_EQ(g.state(), before);
  EXPECT_THROW_MSG(color_jitter(img, -0.1, g), ValueError, "--color-jitter");
}

TEST(RandomErasing, BoxesFollowTimmRules) {
  const int64_t C = 3, H = 40, W = 50;
  int erased_images = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    std::vector<float> x(size_t(C * H * W), 7.0f);
    RandomErasing re;
    re.probability = 1;
    re.mode = "const";
    Generator g(seed);
    random_erase(x.data(), C, H, W, re, g);
    // one box of zeros, the same in every channel, area in [0.02, 1/3] of the image (+ rounding)
    int64_t y0 = H, y1 = -1, x0 = W, x1 = -1, zeros = 0;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t xx = 0; xx < W; ++xx) {
        const bool z = x[size_t(y * W + xx)] == 0.0f;
        for (int64_t c = 1; c < C; ++c) ASSERT_EQ(x[size_t((c * H + y) * W + xx)] == 0.0f, z);
        if (z) {
          ++zeros;
          y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, xx), x1 = std::max(x1, xx);
        }
      }
    if (zeros == 0) continue;  // all ten tries missed (possible for tall, thin boxes)
    ++erased_images;
    const int64_t h = y1 - y0 + 1, w = x1 - x0 + 1;
    EXPECT_EQ(zeros, h * w) << "a rectangle";
    EXPECT_LT(h, H);
    EXPECT_LT(w, W);
    const double frac = double(h * w) / double(H * W);
    EXPECT_GT(frac, 0.02 * 0.6);
    EXPECT_LT(frac, (1.0 / 3.0) * 1.4);
    EXPECT_GE(double(h) / w, 0.3 * 0.6);
    EXPECT_LE(double(h) / w, (1 / 0.3) * 1.6);
  }
  EXPECT_GE(erased_images, 30);
}

TEST(RandomErasing, ModesCountsAndProbability) {
  const int64_t C = 3, H = 64, W = 64;
  RandomErasing re;
  re.probability = 1;
  // pixel: per-pixel N(0, 1) noise
  re.mode = "pixel";
  std::vector<float> x(size_t(C * H * W), 100.0f);
  Generator g(11);
  random_erase(x.data(), C, H, W, re, g);
  double s = 0, s2 = 0;
  int64_t n = 0;
  for (float v : x)
    if (v != 100.0f) s += v, s2 += double(v) * v, ++n;
  ASSERT_GT(n, 200);
  EXPECT_NEAR(s / n, 0.0, 0.15);
  EXPECT_NEAR(std::sqrt(s2 / n - (s / n) * (s / n)), 1.0, 0.15);
  // rand: one value per channel inside the box
  re.mode = "rand";
  std::fill(x.begin(), x.end(), 100.0f);
  Generator g2(12);
  random_erase(x.data(), C, H, W, re, g2);
  for (int64_t c = 0; c < C; ++c) {
    std::set<float> vals;
    for (int64_t p = 0; p < H * W; ++p)
      if (x[size_t(c * H * W + p)] != 100.0f) vals.insert(x[size_t(c * H * W + p)]);
    EXPECT_EQ(vals.size(), 1u) << "channel " << c;
  }
  // recount 4: never more than four boxes' worth, area scaled by 1/count; probability 0: untouched
  re.mode = "const";
  re.max_count = 4;
  std::fill(x.begin(), x.end(), 1.0f);
  Generator g3(13);
  random_erase(x.data(), C, H, W, re, g3);
  int64_t zeros = 0;
  for (int64_t p = 0; p < H * W; ++p) zeros += x[size_t(p)] == 0.0f;
  EXPECT_GT(zeros, 0);
  EXPECT_LT(zeros, int64_t(0.45 * H * W));
  re.probability = 0;
  std::fill(x.begin(), x.end(), 1.0f);
  Generator g4(14);
  const auto before = g4.state();
  random_erase(x.data(), C, H, W, re, g4);
  EXPECT_EQ(g4.state(), before);
  for (float v : x) ASSERT_EQ(v, 1.0f);
  re.mode = "noise";
  EXPECT_THROW_MSG(re.validate(), ValueError, "--remode", "const, rand or pixel");
  re.mode = "const";
  re.max_count = 0;
  EXPECT_THROW_MSG(re.validate(), ValueError, "--recount");
  re.max_count = 1;
  re.probability = 1.5;
  EXPECT_THROW_MSG(re.validate(), ValueError, "--reprob");
}

TEST(TrainAugment, StagesOnlyWhenAsked) {
  const Image img = noise_image(20, 24, 3);
  const Normalization norm = imagenet_normalization();
  // nothing on: exactly to_tensor, and no draws (runs without the options are unchanged)
  Augment none;
  Generator g(5);
  const auto before = g.state();
  const Tensor t = TrainAugment(none, norm, "bicubic")(img, g);
  EXPECT_EQ(g.state(), before);
  const Tensor ref = to_tensor(img, norm);
  for (int64_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.data<float>()[i], ref.data<float>()[i]);
  // with --aa, --color-jitter is not used (timm's disable_color_jitter)
  Augment aa;
  aa.aa = "rand-m9-mstd0.5";
  Augment both = aa;
  both.color_jitter = 0.4;
  for (uint64_t s = 0; s < 6; ++s) {
    Generator g1(s), g2(s);
    EXPECT_EQ(to_u8(TrainAugment(aa, norm, "bilinear").secondary(img, g1)).px,
              to_u8(TrainAugment(both, norm, "bilinear").secondary(img, g2)).px);
  }
  EXPECT_EQ(augment_str(both), "aa:rand-m9-mstd0.5");  // the jitter that does not apply is not shown
  // the secondary stage equals rand_augment on the uint8 picture with timm's img_mean fill
  RandAugmentHParams hp;
  hp.fill = {124, 116, 104};
  hp.resample = pil::Resample::bilinear;
  Generator g1(9), g2(9);
  EXPECT_EQ(to_u8(TrainAugment(aa, norm, "bilinear").secondary(img, g1)).px,
            rand_augment(to_u8(img), parse_rand_augment(aa.aa), hp, g2).px);
  // erasing runs on the normalised tensor, after the secondary stage
  Augment er;
  er.reprob = 1;
  er.remode = "const";
  Generator g3(4);
  const Tensor e = TrainAugment(er, norm, "bicubic")(img, g3);
  int64_t zeros = 0;
  for (int64_t i = 0; i < e.numel(); ++i) zeros += e.data<float>()[i] == 0.0f;
  EXPECT_GT(zeros, 0);
  Augment bad;
  bad.aa = "rand-m9-zz";
  EXPECT_THROW_MSG(TrainAugment(bad, norm, "bicubic"), ValueError, "--aa");
  EXPECT_THROW_MSG(TrainAugment(aa, norm, "lanczos"), ValueError, "--aa", "interpolation");
}

TEST(TrainAugment, DescribesTheWholePipeline) {
  Augment a = parse_augment("rrc,flip");
  EXPECT_FALSE(augments(parse_augment("none")));
  EXPECT_TRUE(augments(a));
  a.color_jitter = 0.4;
  EXPECT_EQ(augment_str(a), "rrc,flip,jitter:0.4");
  a.aa = "rand-m9-mstd0.5";
  a.reprob = 0.25;
  EXPECT_EQ(augment_str(a), "rrc,flip,aa:rand-m9-mstd0.5,reprob:0.25:pixel:1");
  Augment only_erase;
  only_erase.reprob = 0.5;
  EXPECT_TRUE(augments(only_erase));
}

// The grid's tiles: eval image, then the loader's views; sizes and the white gaps.
TEST(AugmentGrid, TilesTheLoadersViews) {
  const Preprocess p = squash_preprocess(16);
  auto ds = open_dataset("procedural:shapes", Split::train, p, 3, 12, 1);
  Augment a = parse_augment("flip");
  a.aa = "rand-m9-mstd0.5";
  AugmentGridOptions o;
  o.samples = 6;
  o.per_row = 3;
  o.seed = 2;
  const Image img = augment_grid(ds, a, p, o);
  EXPECT_EQ(img.W, 4 * 16 + 5 * 2);
  EXPECT_EQ(img.H, 2 * 16 + 3 * 2);
  EXPECT_EQ(img.C, 3);
  for (int64_t x = 0; x < img.W; ++x) EXPECT_EQ(img.at(0, x, 1), 1.0f);
  // the first tile is the eval image of example 0
  const Image first = ds->load(0);
  for (int64_t y = 0; y < 16; ++y)
    for (int64_t x = 0; x < 16; ++x) ASSERT_EQ(img.at(2 + y, 2 + x, 0), first.at(y, x, 0));
  // same seed, same picture; another seed, another
  EXPECT_EQ(augment_grid(ds, a, p, o).pixels, img.pixels);
  o.seed = 3;
  EXPECT_NE(augment_grid(ds, a, p, o).pixels, img.pixels);
  o.per_row = 0;
  EXPECT_THROW_MSG(augment_grid(ds, a, p, o), ValueError, "--per-image");
  // from_chw inverts to_chw (up to float rounding)
  const Tensor t = to_tensor(first, p.norm);
  const Image back = from_chw(t.data<float>(), 3, 16, 16, p.norm);
  for (size_t i = 0; i < back.pixels.size(); ++i) ASSERT_NEAR(back.pixels[i], first.pixels[i], 1e-6);
}

// View v of an image in the grid is the input training gets for it in epoch v + 1: the loader's
// per-example stream depends on (seed, epoch, index), not on the shuffled position or batch.
TEST(AugmentGrid, ViewsAreTheTrainingInputs) {
  const Preprocess p = squash_preprocess(16);
  auto ds = open_dataset("procedural:shapes", Split::train, p, 3, 10, 1);
  Augment a = parse_augment("rrc,flip");
  a.aa = "rand-m9-mstd0.5";
  a.reprob = 0.5;
  AugmentGridOptions o;
  o.samples = 2;
  o.per_row = 2;
  o.seed = 5;
  const Image grid = augment_grid(ds, a, p, o);  // one row: example 0
  LoaderOptions lo;
  lo.batch_size = 3;
  lo.shuffle = true;
  lo.seed = 5;
  set_pipeline(lo, a, p);
  DataLoader loader(ds, lo);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    bool found = false;
    for (int64_t b = 0; b < loader.num_batches() && !found; ++b) {
      const Batch batch = loader.make_batch(epoch, b);
      for (size_t r = 0; r < batch.indices.size(); ++r) {
        if (batch.indices[r] != 0) continue;
        found = true;
        const Image view = from_chw(batch.images.data<float>() + r * 3 * 16 * 16, 3, 16, 16, p.norm);
        const int64_t left = 2 + (epoch + 1) * 18;
        for (int64_t y = 0; y < 16; ++y)
          for (int64_t x = 0; x < 16; ++x)
            for (int64_t c = 0; c < 3; ++c) ASSERT_EQ(grid.at(2 + y, left + x, c), view.at(y, x, c)) << "epoch " << epoch;
      }
    }
    EXPECT_TRUE(found);
  }
}
