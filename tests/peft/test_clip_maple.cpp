// MaPLe (methods.md "MaPLe"): logits, loss and the gradient of exactly the trainable tensors equal the
// PyTorch reference (tools/reference/clip_reference_lora_maple.py) with deep prompts (J = 3) and
// without (J = 1); float64 gradchecks; the frozen CLIP gets no gradient; init (ctx from "a photo
// of a", equal deep projections); J out of range and other bad inputs are one-line errors.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/ops.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "core/io/safetensors.h"
#include "peft/clip_methods.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

namespace {
std::string fixture(const std::string& file) {
  return std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip_lora_maple/" + file;
}

std::unique_ptr<nn::CLIP> fixture_clip(DType dt = DType::f32) {
  auto clip = std::make_unique<nn::CLIP>(nn::load_clip_config(fixture("config.json")), 0);
  clip->eval();
  nn::load_weights(*clip, fixture("weights.safetensors"));
  clip->to(dt);
  return clip;
}

std::shared_ptr<ClipHead> case_head(nn::CLIP& clip, const std::string& c) {
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  SafetensorsFile f = SafetensorsFile::open(fixture("adapter_" + c + ".safetensors"));
  ClipMethodOptions o;
  EXPECT_EQ(clip_method_from_metadata(f.metadata(), o), "maple");
  Generator gen(0);
  auto head = make_clip_head(clip, "maple", o, in["tokens"], gen);
  head->load_state_dict(nn::read_tensors(fixture("adapter_" + c + ".safetensors")));
  return head;
}

void check_parity(const std::string& c, const std::vector<std::string>& names) {
  SCOPED_TRACE(c);
  auto clip = fixture_clip();
  auto head = case_head(*clip, c);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  auto exp = nn::read_tensors(fixture("expected_" + c + ".safetensors"));
  std::vector<std::string> got_names;
  for (auto& [n, p] : head->named_parameters()) got_names.push_back(n);
  EXPECT_EQ(got_names, names);
  Tensor logits = head->forward(in["images"]);
  Tensor loss = cross_entropy(logits, in["labels"]);
  EXPECT_LE(max_abs_diff(logits, exp["logits"]), 1e-4 + 1e-3 * max_abs_diff(exp["logits"], zeros_like(exp["logits"])));
  EXPECT_NEAR(loss.item(), exp["loss"].item(), 1e-4 + 1e-3 * std::abs(exp["loss"].item()));
  backward(loss);
  size_t grads = 0;
  for (auto& [n, p] : head->named_parameters()) {
    auto it = exp.find("grad." + n);
    ASSERT_NE(it, exp.end()) << "the reference has no gradient for " << n;
    ASSERT_TRUE(p.grad().defined()) << n;
    EXPECT_EQ(p.grad().sizes(), it->second.sizes()) << n;
    const double scale = max_abs_diff(it->second, zeros_like(it->second));
    EXPECT_LE(max_abs_diff(p.grad(), it->second), 1e-4 + 1e-3 * scale) << n;
    ++grads;
  }
  size_t expected = 0;
  for (auto& [n, _] : exp) expected += n.rfind("grad.", 0) == 0;
  EXPECT_EQ(grads, expected);
  for (auto& [n, p] : clip->named_parameters()) {
    EXPECT_FALSE(p.requires_grad()) << n;
    EXPECT_FALSE(p.grad().defined()) << n;
  }
}

const std::vector<std::string> kDeep = {"maple.ctx",       "maple.deep_text",         "maple.proj.weight",
                                        "maple.proj.bias", "maple.deep_proj.weight", "maple.deep_proj.bias"};
}  // namespace

TEST(ClipMaple, DeepPromptsMatchPyTorch) { check_parity("maple", kDeep); }
TEST(ClipMaple, DepthOneMatchesPyTorch) { check_parity("maple-j1", {"maple.ctx", "maple.proj.weight", "maple.proj.bias"}); }

TEST(ClipMaple, Float64GradchecksOfEveryTrainableTensor) {
  auto clip = fixture_clip(DType::f64);
  auto head = case_head(*clip, "maple");
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor x = in["images"].to(DType::f64);
  std::vector<Tensor> inputs;
  for (auto& [n, p] : head->named_parameters()) inputs.push_back(p);
  EXPECT_EQ(inputs.size(), 6u);
  auto fn = [&](const std::vector<Tensor>&) { return cross_entropy(head->forward(x), in["labels"]); };
  auto r = gradcheck(fn, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(ClipMaple, InitFollowsTheOfficialCode) {
  // clip-micro's word tokenizer spells "a photo of a": M = 2 starts from the embeddings of "a photo".
  nn::CLIPConfig cfg = nn::load_clip_config("clip-micro");
  nn::CLIP clip(cfg, 0);
  clip.eval();
  nn::TextTokenizer tok(cfg.text, "");
  Tensor tokens = tok.tokenize({"a photo of a red circle.", "a photo of a blue square."});
  Generator gen(4);
  ClipMethodOptions o;
  o.depth = 2;  // clip-micro has 2 layers per tower
  auto head = make_clip_head(clip, "maple", o, tokens, gen);
  Tensor ctx = head->parameter("maple.ctx");
  EXPECT_EQ(ctx.sizes(), (Shape{2, 64}));  // default M = 2
  const std::vector<int64_t> ids = tok.row("a photo");
  Tensor want = embedding(clip.token_embedding->weight, from_vector_i64({ids[1], ids[2]}, {2}));
  EXPECT_EQ(max_abs_diff(ctx, want), 0.0);
  // deep_text ~ N(0, .02^2); the J-1 deep projections start equal; proj: PyTorch's Linear default.
  Tensor dt = head->parameter("maple.deep_text");
  EXPECT_EQ(dt.sizes(), (Shape{1, 2, 64}));
  double s2 = 0;
  for (float v : dt.to_vector<float>()) s2 += double(v) * v;
  EXPECT_NEAR(std::sqrt(s2 / 128.0), 0.02, 0.008);
  for (const char* n : {"maple.proj.weight", "maple.proj.bias", "maple.deep_proj.weight", "maple.deep_proj.bias"}) {
    double mx = 0;
    for (float v : head->parameter(n).to_vector<float>()) mx = std::max(mx, double(std::abs(v)));
    EXPECT_LE(mx, 1.0 / 8.0) << n;  // U(+-1/sqrt(W_t)), W_t = 64
    EXPECT_GT(mx, 0.05) << n;
  }
  // Deeper: the copies are equal.
  nn::CLIPConfig deep_cfg = cfg;
  deep_cfg.vision.depth = 4;
  deep_cfg.text.layers = 4;
  nn::CLIP deep(deep_cfg, 0);
  o.depth = 4;
  o.prompts = 5;  // M > 4: ctx ~ N(0, .02^2) (no CTX_INIT)
  Tensor tok5 = tok.tokenize({"a photo of a big red circle.", "a photo of a small blue square."});
  auto h4 = make_clip_head(deep, "maple", o, tok5, gen);
  Tensor w = h4->parameter("maple.deep_proj.weight"), b = h4->parameter("maple.deep_proj.bias");
  EXPECT_EQ(w.sizes(), (Shape{3, 64, 64}));
  for (int64_t j = 1; j < 3; ++j) {
    EXPECT_EQ(max_abs_diff(select(w, 0, j), select(w, 0, 0)), 0.0);
    EXPECT_EQ(max_abs_diff(select(b, 0, j), select(b, 0, 0)), 0.0);
  }
  Tensor c5 = h4->parameter("maple.ctx");
  s2 = 0;
  for (float v : c5.to_vector<float>()) s2 += double(v) * v;
  EXPECT_NEAR(std::sqrt(s2 / (5.0 * 64)), 0.02, 0.008);
  // The CLIP's state dict stays a plain CLIP (the hooks hold no registered tensor).
  nn::CLIP plain(cfg, 0);
  EXPECT_EQ(clip.state_dict().size(), plain.state_dict().size());
  EXPECT_TRUE(head->needs_images());
  EXPECT_TRUE(clip_method("maple").takes_images(resolve_clip_options("maple", {})));
}

TEST(ClipMaple, BadInputsAreClearErrors) {
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(0);
  for (int64_t J : {0, 4, -1}) {  // the fixture has 3 layers per tower
    auto clip = fixture_clip();
    ClipMethodOptions o;
    o.depth = J;
    EXPECT_THROW_MSG(make_clip_head(*clip, "maple", o, in["tokens"], gen), ValueError, "maple", "--depth",
                     "min(text layers 3, vision layers 3)");
  }
  {
    auto clip = fixture_clip();
    ClipMethodOptions o;
    o.depth = 3;
    o.prompts = 5;  // row 0 has its EOT at 5
    EXPECT_THROW_MSG(make_clip_head(*clip, "maple", o, in["tokens"], gen), ValueError, "maple", "line 1", "<= M = 5");
    o.prompts = 0;
    EXPECT_THROW_MSG(make_clip_head(*clip, "maple", o, in["tokens"], gen), ValueError, "--prompts");
  }
  auto clip = fixture_clip();
  ClipMethodOptions o;
  o.depth = 3;
  auto head = make_clip_head(*clip, "maple", o, in["tokens"], gen);
  EXPECT_THROW_MSG(head->forward(in["image_features"]), ShapeError, "maple", "images [B, 3, 8, 8]");
  EXPECT_THROW(make_clip_head(*clip, "maple", o, in["tokens"], gen), StateError);  // one MaPLe per CLIP
}
