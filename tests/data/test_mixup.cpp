// Mixup / CutMix: boxes and corrected lambdas, mixed images and targets for every mode against
// tools/reference/mixup_reference.py (tests/fixtures/mixup.json); the parameter draws (modes,
// probabilities, Beta moments) and the seeding.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/mixup.h"
#include "tests/json_fixture.h"
#include "tests/testing.h"

namespace peft::data {
namespace {
using json = nlohmann::json;

const json& fixture() { return testing::json_fixture("mixup.json", "tools/reference/mixup_reference.py"); }

Tensor from_json(const json& t, DType dt) {
  return from_vector(t["data"].get<std::vector<double>>(), t["shape"].get<Shape>(), dt);
}

TEST(Mixup, CutmixBoxAndCorrectedLambdaMatchReference) {
  for (const json& c : fixture()["boxes"]) {
    const int64_t H = c["H"], W = c["W"];
    const MixBox b = cutmix_box(H, W, c["lam"], c["cy"], c["cx"]);
    const auto want = c["box"].get<std::vector<int64_t>>();
    EXPECT_EQ((std::vector<int64_t>{b.y0, b.y1, b.x0, b.x1}), want) << c.dump();
    EXPECT_DOUBLE_EQ(box_lam(b, H, W), c["lam_corrected"].get<double>()) << c.dump();
  }
}

TEST(Mixup, MixedImagesAndTargetsMatchReferenceInEveryMode) {
  for (const json& c : fixture()["mixes"]) {
    MixupOptions o;
    o.mode = c["mode"];
    o.mixup_alpha = 1;
    o.label_smoothing = c["smoothing"];
    MixParams p;
    p.lam = c["lam"].get<std::vector<double>>();
    p.cutmix = c["cutmix"].get<std::vector<bool>>();
    p.cy = c["cy"].get<std::vector<int64_t>>();
    p.cx = c["cx"].get<std::vector<int64_t>>();
    Tensor x = from_json(c["images"], DType::f32);
    Tensor t = apply_mix(x, c["labels"].get<std::vector<int64_t>>(), c["K"], o, p);
    const std::string what = o.mode + " B=" + std::to_string(x.size(0)) + " cutmix " + c["cutmix"].dump();
    EXPECT_LT(max_abs_diff(x, from_json(c["mixed"], DType::f32)), 1e-6) << what;
    EXPECT_LT(max_abs_diff(t, from_json(c["targets"], DType::f32)), 1e-6) << what;
    // every target row is a distribution
    const std::vector<double> tv = t.to_vector<double>();
    const int64_t K = t.size(1);
    for (int64_t r = 0; r < t.size(0); ++r) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += tv[static_cast<size_t>(r * K + k)];
      EXPECT_NEAR(s, 1.0, 1e-6) << what;
    }
  }
}

TEST(Mixup, DrawsFollowTheModeAndProbabilities) {
  Generator g(1);
  MixupOptions o;
  o.mixup_alpha = 0.8;
  o.cutmix_alpha = 1.0;
  o.switch_prob = 0.5;
  o.mode = "batch";
  MixParams p = draw_mix_params(o, 6, 16, 16, g);
  for (size_t i = 1; i < 6; ++i) EXPECT_EQ(p.lam[i], p.lam[0]);  // one lambda for the batch
  o.mode = "pair";
  p = draw_mix_params(o, 7, 16, 16, g);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(p.lam[i], p.lam[6 - i]);
    EXPECT_EQ(p.cutmix[i], p.cutmix[6 - i]);
  }
  EXPECT_EQ(p.lam[3], 1.0);  // the middle of an odd batch has no partner
  // prob 0: nothing mixes; only cutmix: every mixed element is a box
  o.prob = 0;
  o.mode = "elem";
  for (double l : draw_mix_params(o, 8, 16, 16, g).lam) EXPECT_EQ(l, 1.0);
  o.prob = 1;
  o.mixup_alpha = 0;
  p = draw_mix_params(o, 50, 16, 16, g);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_TRUE(p.cutmix[i]);
    EXPECT_GE(p.cy[i], 0);
    EXPECT_LT(p.cy[i], 16);
  }
  // both on, switch 0.5: about half CutMix
  o.mixup_alpha = 1;
  p = draw_mix_params(o, 2000, 16, 16, g);
  int64_t cut = 0;
  for (bool b : p.cutmix) cut += b;
  EXPECT_NEAR(static_cast<double>(cut) / 2000, 0.5, 0.05);
}

TEST(Mixup, BetaHasTheRightMoments) {
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); a < 1 and a > 1 take different gamma paths
  for (double a : {0.2, 0.8, 1.0, 3.0}) {
    Generator g(7);
    const int n = 40000;
    double s = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
      const double v = sample_beta(g, a);
      ASSERT_TRUE(v >= 0 && v <= 1) << v;
      s += v;
      s2 += v * v;
    }
    const double mean = s / n, var = s2 / n - mean * mean;
    EXPECT_NEAR(mean, 0.5, 0.01) << a;
    EXPECT_NEAR(var, 1.0 / (4 * (2 * a + 1)), 0.01) << a;
  }
}

TEST(Mixup, SeededByRunEpochAndBatch) {
  MixupOptions o;
  o.mixup_alpha = 0.8;
  o.cutmix_alpha = 1.0;
  o.mode = "elem";
  Generator g(3);
  const Tensor x0 = rand({6, 3, 8, 8}, g);
  const std::vector<int64_t> y = {0, 1, 2, 0, 1, 2};
  auto run = [&](uint64_t seed, int64_t epoch, int64_t batch) {
    Tensor x = x0.clone();
    Tensor t = mix_batch(x, y, 3, o, seed, epoch, batch);
    return std::make_pair(x, t);
  };
  auto a = run(5, 1, 2), b = run(5, 1, 2), c = run(5, 1, 3), d = run(6, 1, 2);
  EXPECT_EQ(max_abs_diff(a.first, b.first), 0.0);
  EXPECT_EQ(max_abs_diff(a.second, b.second), 0.0);
  EXPECT_GT(max_abs_diff(a.first, c.first), 0.0);
  EXPECT_GT(max_abs_diff(a.first, d.first), 0.0);
}

TEST(Mixup, BadOptionsNameTheFlag) {
  MixupOptions o;
  o.mixup_alpha = -1;
  EXPECT_THROW_MSG(check_mixup_options(o), ValueError, "--mixup", ">= 0");
  o.mixup_alpha = 1;
  o.prob = 1.5;
  EXPECT_THROW_MSG(check_mixup_options(o), ValueError, "--mixup-prob", "[0, 1]");
  o.prob = 1;
  o.mode = "rows";
  EXPECT_THROW_MSG(check_mixup_options(o), ValueError, "--mixup-mode", "batch | pair | elem");
}

}  // namespace
}  // namespace peft::data
