// CLIP methods (methods.md "Zero-shot CLIP" to "Tip-Adapter"): logits, loss and gradients equal the PyTorch reference
// (tools/reference/clip_reference.py); float64 gradchecks of every trainable tensor; the frozen
// CLIP gets no gradient; bad inputs are clear errors; the feature cache.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "autograd/ops.h"
#include "core/error.h"
#include "data/procedural.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "core/io/safetensors.h"
#include "peft/clip_methods.h"
#include "peft/feature_cache.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

namespace {
std::string fixture(const std::string& file) { return std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip/" + file; }

std::unique_ptr<nn::CLIP> fixture_clip() {
  auto clip = std::make_unique<nn::CLIP>(nn::load_clip_config(fixture("config.json")), 0);
  clip->eval();
  nn::load_weights(*clip, fixture("weights.safetensors"));
  return clip;
}

std::shared_ptr<ClipHead> fixture_head(nn::CLIP& clip, const std::string& method) {
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  std::map<std::string, Tensor> adapter;
  if (method != "zeroshot") adapter = nn::read_tensors(fixture("adapter_" + method + ".safetensors"));
  ClipMethodOptions o;
  o.prompts = 2;
  Generator gen(0);
  auto get = [&](const char* n) { return adapter.count(n) ? adapter.at(n) : Tensor(); };
  auto head = make_clip_head(clip, method, o, in["tokens"], gen, get("tip.cache_keys"), get("tip.cache_labels"));
  if (!adapter.empty()) head->load_state_dict(adapter);  // the reference's (non-zero) starting values
  return head;
}

std::vector<std::string> param_names(const nn::Module& m) {
  std::vector<std::string> n;
  for (auto& [k, p] : m.named_parameters())
    if (p.requires_grad()) n.push_back(k);
  return n;
}

void check_parity(const std::string& method) {
  SCOPED_TRACE(method);
  auto clip = fixture_clip();
  auto head = fixture_head(*clip, method);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  auto exp = nn::read_tensors(fixture("expected_" + method + ".safetensors"));
  Tensor logits = head->forward(in["image_features"]);
  Tensor loss = cross_entropy(logits, in["labels"]);
  EXPECT_LE(max_abs_diff(logits, exp["logits"]), 1e-4 + 1e-3 * max_abs_diff(exp["logits"], zeros_like(exp["logits"])));
  EXPECT_NEAR(loss.item(), exp["loss"].item(), 1e-4);
  if (!param_names(*head).empty()) backward(loss);  // zeroshot / tip-adapter train nothing
  else EXPECT_FALSE(loss.requires_grad());
  size_t grads = 0;
  for (auto& [n, p] : head->named_parameters()) {
    if (!p.requires_grad()) {
      EXPECT_FALSE(p.grad().defined()) << n;
      continue;
    }
    auto it = exp.find("grad." + n);
    ASSERT_NE(it, exp.end()) << "the reference has no gradient for " << n;
    ASSERT_TRUE(p.grad().defined()) << n;
    double scale = std::max(1.0, max_abs_diff(it->second, zeros_like(it->second)));
    EXPECT_LE(max_abs_diff(p.grad(), it->second), 1e-4 * scale) << n;
    ++grads;
  }
  size_t expected_grads = 0;
  for (auto& [n, _] : exp) expected_grads += n.rfind("grad.", 0) == 0;
  EXPECT_EQ(grads, expected_grads);
  for (auto& [n, p] : clip->named_parameters()) {  // the whole CLIP, logit_scale included, is frozen
    EXPECT_FALSE(p.requires_grad()) << n;
    EXPECT_FALSE(p.grad().defined()) << n;
  }
}

// A float64 fixture model for gradchecks.
std::unique_ptr<nn::CLIP> fixture_clip64() {
  auto clip = fixture_clip();
  clip->to(DType::f64);
  return clip;
}

void gradcheck_head(const std::string& method, const std::vector<std::string>& want) {
  SCOPED_TRACE(method);
  auto clip = fixture_clip64();
  auto head = fixture_head(*clip, method);
  EXPECT_EQ(param_names(*head), want);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor f = in["image_features"].to(DType::f64);
  Tensor labels = in["labels"];
  std::vector<Tensor> inputs;
  for (auto& [n, p] : head->named_parameters())
    if (p.requires_grad()) inputs.push_back(p);
  auto fn = [&](const std::vector<Tensor>&) { return cross_entropy(head->forward(f), labels); };
  auto r = gradcheck(fn, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}
}  // namespace

TEST(ClipMethods, ZeroShotMatchesPyTorch) { check_parity("zeroshot"); }
TEST(ClipMethods, TaskResMatchesPyTorch) { check_parity("taskres"); }
TEST(ClipMethods, CoOpMatchesPyTorch) { check_parity("coop"); }
TEST(ClipMethods, ClipAdapterMatchesPyTorch) { check_parity("clip-adapter"); }
TEST(ClipMethods, TipAdapterMatchesPyTorch) { check_parity("tip-adapter"); }
TEST(ClipMethods, TipAdapterFMatchesPyTorch) { check_parity("tip-adapter-f"); }

TEST(ClipMethods, Float64GradchecksOfEveryTrainableTensor) {
  gradcheck_head("taskres", {"taskres.residual"});
  gradcheck_head("coop", {"coop.ctx"});  // through the frozen text tower
  gradcheck_head("clip-adapter", {"clip_adapter.fc1.weight", "clip_adapter.fc2.weight"});
  gradcheck_head("tip-adapter-f", {"tip.cache_keys"});
  gradcheck_head("tip-adapter", {});
  gradcheck_head("zeroshot", {});
}

TEST(ClipMethods, InitialisationFollowsTheOfficialCode) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(1);
  ClipMethodOptions o;
  o.prompts = 2;
  auto zs = make_clip_head(*clip, "zeroshot", o, in["tokens"], gen);
  Tensor z = zs->forward(in["image_features"]);
  EXPECT_EQ(z.sizes(), (Shape{4, 3}));
  // TaskRes starts at R = 0, i.e. exactly zero-shot.
  auto tr = make_clip_head(*clip, "taskres", o, in["tokens"], gen);
  EXPECT_EQ(max_abs_diff(tr->parameter("taskres.residual"), zeros({3, 8})), 0.0);
  EXPECT_LE(max_abs_diff(tr->forward(in["image_features"]), z), 1e-6);
  // CoOp's context ~ N(0, 0.02^2).
  o.prompts = 4;
  auto co = make_clip_head(*clip, "coop", o, in["tokens"], gen);
  Tensor ctx = co->parameter("coop.ctx");
  EXPECT_EQ(ctx.sizes(), (Shape{4, 16}));
  double s2 = 0;
  for (float v : ctx.to_vector<float>()) s2 += double(v) * v;
  EXPECT_NEAR(std::sqrt(s2 / 64.0), 0.02, 0.008);
  // CLIP-Adapter: PyTorch Linear default bounds 1/sqrt(E) and 1/sqrt(E/4); shapes [E/4,E], [E,E/4].
  auto ca = make_clip_head(*clip, "clip-adapter", o, in["tokens"], gen);
  Tensor fc1 = ca->parameter("clip_adapter.fc1.weight"), fc2 = ca->parameter("clip_adapter.fc2.weight");
  EXPECT_EQ(fc1.sizes(), (Shape{2, 8}));
  EXPECT_EQ(fc2.sizes(), (Shape{8, 2}));
  for (float v : fc1.to_vector<float>()) EXPECT_LE(std::abs(v), 1.0 / std::sqrt(8.0));
  for (float v : fc2.to_vector<float>()) EXPECT_LE(std::abs(v), 1.0 / std::sqrt(2.0));
  // Tip-Adapter with alpha = 0 is zero-shot with the constant 100 instead of exp(logit_scale) = 20.
  o.alpha = 0;
  Tensor keys = tip_cache_keys(in["image_features"]);
  auto tip = make_clip_head(*clip, "tip-adapter", o, in["tokens"], gen, keys, in["labels"]);
  EXPECT_LE(max_abs_diff(tip->forward(in["image_features"]), mul(z, 100.0 / 20.0)), 1e-4);
  EXPECT_TRUE(param_names(*tip).empty());
  EXPECT_EQ(tip->state_dict().size(), 2u);  // tip.cache_keys and tip.cache_labels are saved like an adapter
  EXPECT_EQ(tip->state_dict()[1].first, "tip.cache_labels");
  // Cache keys: norm of the mean over views.
  Tensor views = randn({2, 3, 8}, gen);
  Tensor k2 = tip_cache_keys(views);
  EXPECT_LE(max_abs_diff(k2, l2_normalize(mean(views, {1}))), 1e-7);
}

TEST(ClipMethods, BadInputsAreClearErrors) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(0);
  ClipMethodOptions o;
  o.prompts = 5;  // row 0 has its EOT at position 5: only 4 tokens to replace
  EXPECT_THROW_MSG(make_clip_head(*clip, "coop", o, in["tokens"], gen), ValueError, "coop", "line 1", "<= M = 5",
                   "--prompts");
  o.prompts = 0;
  EXPECT_THROW_MSG(make_clip_head(*clip, "coop", o, in["tokens"], gen), ValueError, "--prompts");
  o.prompts = 2;
  EXPECT_THROW_MSG(make_clip_head(*clip, "taskres", o, zeros({0, 12}, DType::i64), gen), ValueError, "no class prompts");
  EXPECT_THROW_MSG(make_clip_head(*clip, "lora", o, in["tokens"], gen), ValueError, "unknown CLIP method 'lora'");
  EXPECT_THROW_MSG(make_clip_head(*clip, "tip-adapter", o, in["tokens"], gen), ValueError, "tip-adapter", "cache");
  EXPECT_THROW_MSG(make_clip_head(*clip, "tip-adapter-f", o, in["tokens"], gen, zeros({2, 8}), from_vector_i64({0, 3}, {2})),
                   ValueError, "tip.cache_labels[1] = 3");
  auto zs = make_clip_head(*clip, "zeroshot", o, in["tokens"], gen);
  EXPECT_THROW_MSG(zs->forward(zeros({2, 5})), ShapeError, "zeroshot", "[B, 8]");
}

TEST(ClipMethods, MetadataRoundTrip) {
  ClipMethodOptions o;
  o.prompts = 7;
  o.beta = 2.5;
  auto md = clip_method_metadata("tip-adapter-f", o);
  EXPECT_EQ(md.at("alpha"), "1.17");
  ClipMethodOptions back;
  EXPECT_EQ(clip_method_from_metadata(md, back), "tip-adapter-f");
  EXPECT_EQ(back.prompts, 7);
  EXPECT_EQ(back.beta, 2.5);
  EXPECT_EQ(resolve_alpha("taskres", {}), 0.5);
  EXPECT_EQ(resolve_alpha("clip-adapter", {}), 0.2);
  EXPECT_TRUE(is_clip_method("coop"));
  EXPECT_FALSE(is_clip_method("vpt-deep"));
}

TEST(FeatureCache, EncodesOnceAndReusesMemoryAndDisk) {
  nn::CLIPConfig c = nn::load_clip_config("clip-micro");
  c.vision.image_size = 16;
  nn::CLIP clip(c, 0);
  data::ProceduralDataset ds("shapes", 10, 16, 0, data::Split::train);
  auto dir = std::filesystem::temp_directory_path() / ("peft_test_feature_cache_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  EncodeOptions eo;
  eo.batch = 4;
  FeatureSet direct = encode_dataset(clip, ds, eo);
  EXPECT_EQ(direct.features.sizes(), (Shape{10, 64}));
  {
    FeatureCache cache(dir.string());
    FeatureSet a = cache.get(clip, ds, eo);
    FeatureSet b = cache.get(clip, ds, eo);
    EXPECT_EQ(cache.encoded, 1);
    EXPECT_EQ(cache.memory_hits, 1);
    EXPECT_EQ(max_abs_diff(a.features, direct.features), 0.0);
    EXPECT_EQ(a.labels.to_vector<int64_t>(), ds.labels());
  }
  FeatureCache fresh(dir.string());
  FeatureSet d = fresh.get(clip, ds, eo);
  EXPECT_EQ(fresh.disk_hits, 1);
  EXPECT_EQ(fresh.encoded, 0);
  EXPECT_EQ(max_abs_diff(d.features, direct.features), 0.0);
  // Changed weights change the key: no stale features.
  { NoGradGuard ng; clip.visual->proj.fill_(0.01); }
  FeatureSet e = fresh.get(clip, ds, eo);
  EXPECT_EQ(fresh.encoded, 1);
  EXPECT_GT(max_abs_diff(e.features, direct.features), 1e-6);
  // Another subset of the same size is another entry.
  auto base = std::make_shared<data::ProceduralDataset>("shapes", 10, 16, 0, data::Split::train);
  data::Subset s1(base, {0, 1, 2}), s2(base, {3, 4, 5});
  EXPECT_NE(FeatureCache::key("h", s1, eo), FeatureCache::key("h", s2, eo));
  // A corrupt disk entry is recomputed and replaced.
  for (auto& f : std::filesystem::directory_iterator(dir)) std::ofstream(f.path(), std::ios::binary) << "garbage";
  FeatureCache again(dir.string());
  FeatureSet g = again.get(clip, ds, eo);
  EXPECT_EQ(again.encoded, 1);
  EXPECT_EQ(max_abs_diff(g.features, e.features), 0.0);
  // Augmented views: [N, V, E], deterministic given the seed.
  eo.views = 3;
  FeatureSet v1 = encode_dataset(clip, ds, eo), v2 = encode_dataset(clip, ds, eo);
  EXPECT_EQ(v1.features.sizes(), (Shape{10, 3, 64}));
  EXPECT_EQ(max_abs_diff(v1.features, v2.features), 0.0);
  std::filesystem::remove_all(dir);
}
