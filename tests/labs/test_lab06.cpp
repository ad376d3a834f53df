// Lab 6 checks (docs/labs/06-clip.md): the zero-shot classifier (one and several templates), TaskRes
// with its unnormalised base and Tip-Adapter's affinity term, each against the library heads of
// peft/clip_methods.h (forward values and gradients) and a float64 gradcheck.
#include <gtest/gtest.h>

#include <cmath>

#include "apps/examples/labs/lab06_clip.h"
#include "data/procedural.h"
#include "peft/clip_methods.h"
#include "peft/feature_cache.h"
#include "tests/testing.h"

using namespace peft;

namespace {
struct Lab06 : ::testing::Test {
  std::unique_ptr<nn::CLIP> clip = lab06::make_clip(3);
  std::vector<std::string> classes = data::procedural_task("shapes").classes;
  int64_t K = static_cast<int64_t>(classes.size()), E = clip->cfg.embed_dim;
  Generator gen{6};

  Tensor trainable(ClipHead& h, const std::string& name) {
    for (auto& [n, t] : h.named_parameters())
      if (n == name) return t;
    ADD_FAILURE() << "no tensor " << name;
    return Tensor();
  }
};

Tensor mean_ce(const Tensor& logits, const Tensor& labels) { return cross_entropy(logits, labels); }
}  // namespace

// Exercise 1: with one template the classifier is the library's zero-shot head.
TEST_F(Lab06, ZeroShotOneTemplateMatchesTheLibrary) {
  const std::string t = lab06::templates()[0];
  Tensor c = lab06::zero_shot_classifier(*clip, classes, {t});
  ASSERT_EQ(c.sizes(), (Shape{K, E}));
  auto head = make_clip_head(*clip, "zeroshot", {}, lab06::class_tokens(*clip, classes, t), gen);
  Tensor f = randn({4, E}, gen, DType::f32, 0.0, 3.0);  // raw features: any norm
  EXPECT_LT(max_abs_diff(lab06::zero_shot_logits(*clip, f, c), head->forward(f)), 1e-4);
  // On real image features too.
  data::ProceduralDataset ds("shapes", 6, clip->cfg.vision.image_size, 1, data::Split::test);
  Tensor fi = encode_dataset(*clip, ds).features;
  EXPECT_LT(max_abs_diff(lab06::zero_shot_logits(*clip, fi, c), head->forward(fi)), 1e-4);
}

// ... with several templates each prompt is normalised before the mean, and the mean again after.
TEST_F(Lab06, ZeroShotEnsembleNormalisesEachPromptThenTheMean) {
  const std::vector<std::string> ts = lab06::templates();
  Tensor c = lab06::zero_shot_classifier(*clip, classes, ts);
  std::vector<std::vector<double>> u;  // u[t] = raw text features of template t, [K*E]
  {
    NoGradGuard ng;
    for (const auto& t : ts) u.push_back(clip->encode_text(lab06::class_tokens(*clip, classes, t)).to_vector<double>());
  }
  std::vector<double> raw_mean(static_cast<size_t>(E));
  for (int64_t k = 0; k < K; ++k) {
    std::vector<double> m(static_cast<size_t>(E), 0.0);
    std::fill(raw_mean.begin(), raw_mean.end(), 0.0);
    for (const auto& ut : u) {
      double n2 = 0;
      for (int64_t e = 0; e < E; ++e) n2 += ut[k * E + e] * ut[k * E + e];
      for (int64_t e = 0; e < E; ++e) {
        m[e] += ut[k * E + e] / std::sqrt(n2);
        raw_mean[e] += ut[k * E + e];
      }
    }
    double nm = 0, nr = 0, dot_raw = 0;
    for (int64_t e = 0; e < E; ++e) nm += m[e] * m[e];
    for (int64_t e = 0; e < E; ++e) nr += raw_mean[e] * raw_mean[e];
    for (int64_t e = 0; e < E; ++e) {
      EXPECT_NEAR(c.at({k, e}), m[e] / std::sqrt(nm), 1e-5) << "class " << k << " dim " << e;
      dot_raw += c.at({k, e}) * raw_mean[e] / std::sqrt(nr);
    }
    EXPECT_LT(dot_raw, 1.0 - 1e-7) << "without the inner normalisation the classifier would differ";
  }
}

// Exercise 2: TaskRes with a non-zero residual equals the library head, and R = 0 is zero-shot
// with one template.
TEST_F(Lab06, TaskResMatchesTheLibrary) {
  Tensor tokens = lab06::class_tokens(*clip, classes, lab06::templates()[0]);
  ClipMethodOptions o;
  o.alpha = 0.7;
  auto head = make_clip_head(*clip, "taskres", o, tokens, gen);
  Tensor base;
  {
    NoGradGuard ng;
    base = clip->encode_text(tokens);  // raw: not normalised
  }
  Tensor f = randn({5, E}, gen);
  Tensor zero = zeros({K, E});
  EXPECT_LT(max_abs_diff(lab06::taskres_logits(*clip, f, base, zero, 0.7),
                         lab06::zero_shot_logits(*clip, f, lab06::zero_shot_classifier(*clip, classes, {lab06::templates()[0]}))),
            1e-4);
  Tensor R = randn({K, E}, gen, DType::f32, 0.0, 0.5);
  trainable(*head, "taskres.residual").set_data(R);
  Tensor lib = head->forward(f);
  EXPECT_LT(max_abs_diff(lab06::taskres_logits(*clip, f, base, R, 0.7), lib), 1e-4);
  // Normalising the base first (a common slip) gives different logits.
  EXPECT_GT(max_abs_diff(lab06::taskres_logits(*clip, f, l2_normalize(base), R, 0.7), lib), 1e-3);
}

TEST_F(Lab06, TaskResResidualGradient) {
  clip->to(DType::f64);
  Tensor tokens = lab06::class_tokens(*clip, classes, lab06::templates()[1]);
  auto head = make_clip_head(*clip, "taskres", {}, tokens, gen);  // alpha 0.5
  Tensor base;
  {
    NoGradGuard ng;
    base = clip->encode_text(tokens);
  }
  Tensor f = randn({3, E}, gen, DType::f64);
  Tensor labels = from_vector_i64({0, 4, 2}, {3});
  Tensor R = randn({K, E}, gen, DType::f64, 0.0, 0.3);
  R.requires_grad_(true);
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return mean_ce(lab06::taskres_logits(*clip, f, base, in[0], 0.5), labels); },
                   std::vector<Tensor>{R});
  // The same gradient as the library head's residual.
  R.zero_grad();
  backward(mean_ce(lab06::taskres_logits(*clip, f, base, R, 0.5), labels));
  Tensor lr = trainable(*head, "taskres.residual");
  lr.set_data(R.detach().clone());
  backward(mean_ce(head->forward(f), labels));
  EXPECT_LT(max_abs_diff(R.grad(), lr.grad()), 1e-12);
  for (auto& [n, t] : clip->named_parameters()) EXPECT_FALSE(t.grad().defined()) << n;  // frozen tower
}

// Exercise 3: Tip-Adapter's logits equal the library head on a cache of real image features, and
// Tip-Adapter-F's key gradient passes gradcheck.
TEST_F(Lab06, TipAdapterMatchesTheLibrary) {
  data::ProceduralDataset shots("shapes", 2 * K, clip->cfg.vision.image_size, 2, data::Split::train);  // 2 shots
  FeatureSet cache = encode_dataset(*clip, shots);
  Tensor keys = tip_cache_keys(cache.features);
  Tensor tokens = lab06::class_tokens(*clip, classes, lab06::templates()[0]);
  ClipMethodOptions o;
  o.alpha = 2.0;
  o.beta = 3.5;
  auto head = make_clip_head(*clip, "tip-adapter", o, tokens, gen, keys, cache.labels);
  Tensor c = lab06::zero_shot_classifier(*clip, classes, {lab06::templates()[0]});
  data::ProceduralDataset test("shapes", 8, clip->cfg.vision.image_size, 2, data::Split::test);
  Tensor f = encode_dataset(*clip, test).features;
  Tensor mine = lab06::tip_adapter_logits(f, c, keys, cache.labels, 2.0, 3.5);
  EXPECT_LT(max_abs_diff(mine, head->forward(f)), 1e-3);  // logits of size ~100
  // The cache term alone: alpha * exp(-beta (1 - Aff)) Y, at most alpha * (shots per class).
  Tensor cache_term = sub(mine, lab06::tip_adapter_logits(f, c, keys, cache.labels, 0.0, 3.5));
  for (double v : cache_term.to_vector<double>()) {
    EXPECT_GT(v, 0.0);
    EXPECT_LE(v, 2.0 * 2 + 1e-4);
  }
}

TEST_F(Lab06, TipAdapterKeyGradcheck) {
  clip->to(DType::f64);
  Tensor tokens = lab06::class_tokens(*clip, classes, lab06::templates()[0]);
  Tensor c = lab06::zero_shot_classifier(*clip, classes, {lab06::templates()[0]});
  Tensor keys = l2_normalize(randn({K, E}, gen, DType::f64));
  Tensor labels = from_vector_i64({0, 1, 2, 3, 4, 5}, {K});
  Tensor f = randn({2, E}, gen, DType::f64);
  Tensor y = from_vector_i64({1, 3}, {2});
  keys.requires_grad_(true);
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return mean_ce(lab06::tip_adapter_logits(f, c, in[0], labels, 1.17, 2.0), y); },
                   std::vector<Tensor>{keys});
  // The same gradient as the library's tip-adapter-f head.
  keys.zero_grad();
  backward(mean_ce(lab06::tip_adapter_logits(f, c, keys, labels, 1.17, 2.0), y));
  ClipMethodOptions o;
  o.alpha = 1.17;
  o.beta = 2.0;
  auto head = make_clip_head(*clip, "tip-adapter-f", o, tokens, gen, keys.detach().clone(), labels);
  backward(mean_ce(head->forward(f), y));
  EXPECT_LT(max_abs_diff(keys.grad(), trainable(*head, "tip.cache_keys").grad()), 1e-10);
}
