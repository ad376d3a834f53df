// CLIP-LoRA (methods.md "CLIP-LoRA"): logits, loss and the gradient of exactly the trainable tensors equal
// the PyTorch reference (tools/reference/clip_reference_lora_maple.py) for both towers, one tower
// and target o; float64 gradchecks; the frozen CLIP gets no gradient; init; merge reproduces the
// unmerged logits with a plain CLIP; bad options are one-line errors.
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

// The options a fixture case was written with (its adapter metadata).
ClipMethodOptions case_options(const std::string& c) {
  SafetensorsFile f = SafetensorsFile::open(fixture("adapter_" + c + ".safetensors"));
  ClipMethodOptions o;
  EXPECT_EQ(clip_method_from_metadata(f.metadata(), o), "clip-lora");
  return o;
}

std::shared_ptr<ClipHead> case_head(nn::CLIP& clip, const std::string& c) {
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(0);
  auto head = make_clip_head(clip, "clip-lora", case_options(c), in["tokens"], gen);
  head->load_state_dict(nn::read_tensors(fixture("adapter_" + c + ".safetensors")));
  return head;
}

// The head's input for a case: the images, or image_features with --encoder text.
Tensor case_input(const ClipHead& head, DType dt = DType::f32) {
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  return (head.needs_images() ? in["images"] : in["image_features"]).to(dt);
}

std::vector<std::string> trainable(const nn::Module& m) {
  std::vector<std::string> n;
  for (auto& [k, p] : m.named_parameters())
    if (p.requires_grad()) n.push_back(k);
  return n;
}

void check_parity(const std::string& c) {
  SCOPED_TRACE(c);
  auto clip = fixture_clip();
  auto head = case_head(*clip, c);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  auto exp = nn::read_tensors(fixture("expected_" + c + ".safetensors"));
  Tensor logits = head->forward(case_input(*head));
  Tensor loss = cross_entropy(logits, in["labels"]);
  EXPECT_LE(max_abs_diff(logits, exp["logits"]), 1e-4 + 1e-3 * max_abs_diff(exp["logits"], zeros_like(exp["logits"])));
  EXPECT_NEAR(loss.item(), exp["loss"].item(), 1e-4 + 1e-3 * std::abs(exp["loss"].item()));
  backward(loss);
  size_t grads = 0;
  for (auto& [n, p] : head->named_parameters()) {
    auto it = exp.find("grad." + n);
    ASSERT_NE(it, exp.end()) << "the reference has no gradient for " << n;
    ASSERT_TRUE(p.grad().defined()) << n;
    const double scale = max_abs_diff(it->second, zeros_like(it->second));
    EXPECT_LE(max_abs_diff(p.grad(), it->second), 1e-4 + 1e-3 * scale) << n;
    ++grads;
  }
  size_t expected = 0;
  for (auto& [n, _] : exp) expected += n.rfind("grad.", 0) == 0;
  EXPECT_EQ(grads, expected);  // exactly the trainable tensors
  for (auto& [n, p] : clip->named_parameters()) {  // the whole CLIP is frozen
    EXPECT_FALSE(p.requires_grad()) << n;
    EXPECT_FALSE(p.grad().defined()) << n;
  }
}
}  // namespace

TEST(ClipLora, BothTowersMatchPyTorch) { check_parity("lora-both"); }
TEST(ClipLora, VisionOnlyWithTargetsQVMatchesPyTorch) { check_parity("lora-vision"); }
TEST(ClipLora, TextOnlyOnImageFeaturesMatchesPyTorch) { check_parity("lora-text"); }
TEST(ClipLora, TargetOOnOutProjMatchesPyTorch) { check_parity("lora-o"); }

TEST(ClipLora, Float64GradchecksOfEveryTrainableTensor) {
  for (const std::string c : {"lora-o", "lora-vision", "lora-text"}) {
    SCOPED_TRACE(c);
    auto clip = fixture_clip(DType::f64);
    auto head = case_head(*clip, c);
    auto in = nn::read_tensors(fixture("inputs.safetensors"));
    Tensor x = case_input(*head, DType::f64);
    std::vector<Tensor> inputs;
    for (auto& [n, p] : head->named_parameters()) inputs.push_back(p);
    auto fn = [&](const std::vector<Tensor>&) { return cross_entropy(mul(head->forward(x), 0.05), in["labels"]); };
    auto r = gradcheck(fn, inputs);
    EXPECT_TRUE(r.ok) << r.message;
  }
}

TEST(ClipLora, NamesShapesAndInitFollowTheOfficialCode) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(3);
  auto head = make_clip_head(*clip, "clip-lora", {}, in["tokens"], gen);  // defaults: r 2, alpha 1, q,k,v, both
  std::vector<std::string> want;
  for (auto [prefix, L] : {std::pair<std::string, int>{"visual.", 3}, {"", 3}})
    for (int i = 0; i < L; ++i)
      for (const char* t : {"q_proj", "k_proj", "v_proj"})
        for (const char* ab : {"lora_A", "lora_B"})
          want.push_back(prefix + "transformer.resblocks." + std::to_string(i) + ".attn." + t + "." + ab);
  EXPECT_EQ(trainable(*head), want);
  EXPECT_EQ(head->parameter("visual.transformer.resblocks.0.attn.q_proj.lora_A").sizes(), (Shape{2, 12}));
  EXPECT_EQ(head->parameter("visual.transformer.resblocks.0.attn.q_proj.lora_B").sizes(), (Shape{12, 2}));
  EXPECT_EQ(head->parameter("transformer.resblocks.2.attn.v_proj.lora_A").sizes(), (Shape{2, 16}));
  for (auto& [n, p] : head->named_parameters()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(p.size(n.find("lora_A") != std::string::npos ? 1 : 0)));
    if (n.find("lora_B") != std::string::npos) {
      EXPECT_EQ(max_abs_diff(p, zeros_like(p)), 0.0) << n;  // B = 0
    } else {
      double mx = 0;
      for (float v : p.to_vector<float>()) mx = std::max(mx, double(std::abs(v)));
      EXPECT_LE(mx, bound) << n;  // kaiming-uniform(a = sqrt 5) = U(+-1/sqrt(C))
      EXPECT_GT(mx, 0.3 * bound) << n;
    }
  }
  // B = 0: exactly the plain CLIP with the constant 100 (not exp(logit_scale) = 20).
  Tensor logits = head->forward(in["images"]);
  auto plain = fixture_clip();
  Tensor z = mul(matmul(l2_normalize(plain->encode_image(in["images"])), transpose(l2_normalize(plain->encode_text(in["tokens"])), 0, 1)),
                 100.0);
  EXPECT_LE(max_abs_diff(logits, z), 1e-4);
  // The CLIP's own state dict stays plain (the LoRA tensors live on the head only).
  EXPECT_EQ(clip->state_dict().size(), plain->state_dict().size());
  EXPECT_TRUE(head->needs_images());
  EXPECT_TRUE(clip_method("clip-lora").takes_images(resolve_clip_options("clip-lora", {})));
  ClipMethodOptions text;
  text.encoder = "text";
  EXPECT_FALSE(clip_method("clip-lora").takes_images(resolve_clip_options("clip-lora", text)));
}

TEST(ClipLora, DropoutOnTheLoraInputInTrainingOnly) {
  auto clip = fixture_clip();
  auto head = case_head(*clip, "lora-both");
  Tensor x = case_input(*head);
  Tensor e1 = head->forward(x), e2 = head->forward(x);
  EXPECT_EQ(max_abs_diff(e1, e2), 0.0);
  head->train();
  Tensor t1 = head->forward(x);
  EXPECT_GT(max_abs_diff(t1, e1), 1e-3);  // the LoRA path sees dropout(x)
  head->eval();
  EXPECT_EQ(max_abs_diff(head->forward(x), e1), 0.0);
}

TEST(ClipLora, MergeIsExactForTheForwardPass) {
  for (const std::string c : {"lora-o", "lora-vision", "lora-text"}) {
    SCOPED_TRACE(c);
    auto clip = fixture_clip();
    auto head = case_head(*clip, c);
    auto in = nn::read_tensors(fixture("inputs.safetensors"));
    Tensor want = head->forward(case_input(*head));
    auto merged = fixture_clip();
    const ClipMethodDescriptor& d = clip_method("clip-lora");
    ASSERT_NE(d.merge, nullptr);
    auto md = d.merge(*merged, resolve_clip_options("clip-lora", case_options(c)),
                      nn::read_tensors(fixture("adapter_" + c + ".safetensors")));
    EXPECT_EQ(md.at("logit_scale_constant"), "100");
    // A plain CLIP loaded with the merged state dict: 100 norm(f) norm(u)^T.
    auto plain = std::make_unique<nn::CLIP>(nn::load_clip_config(fixture("config.json")), 1);
    plain->eval();
    std::map<std::string, Tensor> sd;
    for (auto& [n, t] : merged->state_dict()) sd[n] = t;
    plain->load_state_dict(sd);  // strict: the names of a plain CLIP, nothing else
    Tensor f = c == "lora-text" ? in["image_features"] : plain->encode_image(in["images"]);
    Tensor got = mul(matmul(l2_normalize(f), transpose(l2_normalize(plain->encode_text(in["tokens"])), 0, 1)), 100.0);
    EXPECT_LE(max_abs_diff(got, want), 2e-5 * std::max(1.0, max_abs_diff(want, zeros_like(want))));
    // The base weights really changed (the untouched tower did not).
    auto base = fixture_clip();
    const double dv = max_abs_diff(plain->visual->block_list[0]->attn->qkv->weight, base->visual->block_list[0]->attn->qkv->weight);
    const double dt = max_abs_diff(plain->text_blocks[0]->attn->qkv->weight, base->text_blocks[0]->attn->qkv->weight);
    EXPECT_EQ(dv > 0, c != "lora-text");
    EXPECT_EQ(dt > 0, c != "lora-vision");
  }
  // An adapter that does not fit the options is refused by name.
  auto merged = fixture_clip();
  ClipMethodOptions o;
  o.targets = "q";
  EXPECT_THROW_MSG(clip_method("clip-lora").merge(*merged, resolve_clip_options("clip-lora", o),
                                                  nn::read_tensors(fixture("adapter_lora-o.safetensors"))),
                   ValueError, "lora_A");
}

TEST(ClipLora, BadOptionsAreClearErrors) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(0);
  ClipMethodOptions o;
  o.encoder = "image";
  EXPECT_THROW_MSG(make_clip_head(*clip, "clip-lora", o, in["tokens"], gen), ValueError, "clip-lora", "--encoder", "image");
  o = {};
  o.targets = "q,x";
  EXPECT_THROW_MSG(make_clip_head(*clip, "clip-lora", o, in["tokens"], gen), ValueError, "--targets", "'x'");
  o.targets = "q,q";
  EXPECT_THROW_MSG(make_clip_head(*clip, "clip-lora", o, in["tokens"], gen), ValueError, "--targets", "twice");
  o = {};
  o.rank = 0;
  EXPECT_THROW_MSG(make_clip_head(*clip, "clip-lora", o, in["tokens"], gen), ValueError, "--rank");
  // The vision-adapted head takes images, not features.
  auto head = make_clip_head(*clip, "clip-lora", {}, in["tokens"], gen);
  EXPECT_THROW_MSG(head->forward(in["image_features"]), ShapeError, "clip-lora", "images");
  // One CLIP-LoRA per CLIP.
  EXPECT_THROW_MSG(make_clip_head(*clip, "clip-lora", {}, in["tokens"], gen), StateError, "already");
  // --encoder text takes raw features [B, E].
  auto clip2 = fixture_clip();
  o = {};
  o.encoder = "text";
  auto th = make_clip_head(*clip2, "clip-lora", o, in["tokens"], gen);
  EXPECT_THROW_MSG(th->forward(in["images"]), ShapeError, "clip-lora", "[B, 8]");
}

TEST(ClipLora, MetadataRoundTrip) {
  ClipMethodOptions o;
  o.rank = 4;
  o.targets = "q,v,o";
  o.encoder = "vision";
  auto md = clip_method_metadata("clip-lora", o);
  EXPECT_EQ(md.at("alpha"), "1");
  ClipMethodOptions back;
  EXPECT_EQ(clip_method_from_metadata(md, back), "clip-lora");
  EXPECT_EQ(back.rank, 4);
  EXPECT_EQ(back.targets, "q,v,o");
  EXPECT_EQ(back.encoder, "vision");
}
