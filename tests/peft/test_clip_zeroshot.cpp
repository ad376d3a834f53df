// Class names x prompt templates (peft/zeroshot.h): OpenAI's 80 ImageNet templates, template and
// class-name files, the adapter metadata, and each CLIP method's classifier with an ensemble:
// zeroshot and tip-adapter norm(mean_t norm(u)), taskres the raw mean, coop and clip-adapter the
// single template (methods.md "CLIP logits", "Zero-shot CLIP", "Tip-Adapter").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "core/io/safetensors.h"
#include "peft/clip_methods.h"
#include "peft/zeroshot.h"
#include "tests/testing.h"

using namespace peft;

namespace {
namespace fs = std::filesystem;

std::string fixture(const std::string& file) { return std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip/" + file; }

std::string write_file(const std::string& name, const std::string& content) {
  const fs::path dir = fs::temp_directory_path() / ("peft_zeroshot_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string p = (dir / name).string();
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

std::unique_ptr<nn::CLIP> fixture_clip() {
  auto clip = std::make_unique<nn::CLIP>(nn::load_clip_config(fixture("config.json")), 0);
  clip->eval();
  nn::load_weights(*clip, fixture("weights.safetensors"));
  return clip;
}

TEST(Zeroshot, TheOpenaiImagenetTemplates) {
  const auto& t = imagenet_templates();
  ASSERT_EQ(t.size(), 80u);
  EXPECT_EQ(t.front(), "a bad photo of a {}.");
  EXPECT_EQ(t.back(), "a tattoo of the {}.");
  EXPECT_EQ(t[35], "a {} in a video game.");
  EXPECT_NE(std::find(t.begin(), t.end(), "a photo of a {}."), t.end());
  for (const auto& s : t) EXPECT_EQ(fill_template(s, "cat").find("{}"), std::string::npos) << s;
  EXPECT_EQ(std::set<std::string>(t.begin(), t.end()).size(), 80u);  // no duplicates
}

TEST(Zeroshot, TemplateSetsAndFiles) {
  TemplateSet in = load_templates("imagenet");
  EXPECT_EQ(in.templates.size(), 80u);
  EXPECT_EQ(in.single, "a photo of a {}.");  // not the first ("a bad photo of a {}.")
  TemplateSet ph = load_templates("photo");
  EXPECT_EQ(ph.templates, (std::vector<std::string>{"a photo of a {}."}));
  TemplateSet f = load_templates(write_file("t.txt", "  itap of a {}.\r\n\n\ta {} in the wild\n"));
  EXPECT_EQ(f.templates, (std::vector<std::string>{"itap of a {}.", "a {} in the wild"}));
  EXPECT_EQ(f.single, "itap of a {}.");
  const std::string bad = write_file("bad.txt", "a photo of a {}.\nno hole here\n");
  EXPECT_THROW_MSG(load_templates(bad), ValueError, "bad.txt:2", "no hole here", "{}");
  EXPECT_THROW_MSG(load_templates(write_file("two.txt", "{} and {}\n")), ValueError, "two.txt:1");
  EXPECT_THROW_MSG(load_templates(write_file("blank.txt", "\n  \n")), IOError, "blank.txt");
  EXPECT_THROW_MSG(load_templates("imagenett"), IOError, "imagenett");
  EXPECT_EQ(fill_template("a photo of a {}.", "golden retriever"), "a photo of a golden retriever.");
}

TEST(Zeroshot, ClassNamesAndPromptsAreClassMajor) {
  EXPECT_EQ(read_class_names(write_file("c.txt", "cat\n\n  big dog \r\nemu")),
            (std::vector<std::string>{"cat", "big dog", "emu"}));
  EXPECT_THROW_MSG(read_class_names(write_file("none.txt", "")), IOError, "none.txt", "--classnames");
  ClassPrompts p = ClassPrompts::from_classnames({"cat", "dog"}, {{"a {}.", "the {}!"}, "photo of {}"});
  EXPECT_EQ(p.num_classes(), 2);
  EXPECT_EQ(p.per_class(), 2);
  EXPECT_EQ(p.ensemble(), (std::vector<std::string>{"a cat.", "the cat!", "a dog.", "the dog!"}));
  EXPECT_EQ(p.single(), (std::vector<std::string>{"photo of cat", "photo of dog"}));
  ClassPrompts t = ClassPrompts::from_texts({"x cat", "y dog"});
  EXPECT_EQ(t.per_class(), 1);
  EXPECT_EQ(t.ensemble(), t.single());
  // Metadata round trip (what clip-eval reads back), and the errors.
  for (const ClassPrompts& c : {p, t}) {
    std::map<std::string, std::string> md;
    c.to_metadata(md);
    ClassPrompts back;
    ASSERT_TRUE(ClassPrompts::from_metadata(md, back));
    EXPECT_TRUE(back == c);
  }
  EXPECT_FALSE(p == t);
  ClassPrompts none;
  EXPECT_FALSE(ClassPrompts::from_metadata({{"method", "zeroshot"}}, none));
  EXPECT_THROW_MSG(ClassPrompts::from_metadata({{"class_prompts", "{\"classnames\": 3}"}}, none), ValueError,
                   "class_prompts");
}

// The classifiers, against text features computed row by row here.
TEST(Zeroshot, EachMethodUsesTheEnsembleOrTheSingleTemplate) {
  auto clip = fixture_clip();
  nn::TextTokenizer tok(clip->cfg.text, "");
  const ClassPrompts p =
      ClassPrompts::from_classnames({"red circle", "blue square", "ring"}, {{"a photo of a {}.", "a {}"}, "the {}"});
  const PromptTokens pt = tokenize_prompts(tok, p);
  ASSERT_EQ(pt.ensemble.sizes(), (Shape{6, clip->cfg.text.context_length}));
  ASSERT_EQ(pt.single.sizes(), (Shape{3, clip->cfg.text.context_length}));
  Tensor u0, u1, us;  // raw features of template 0, template 1 and the single template, [3, E]
  {
    NoGradGuard ng;
    u0 = clip->encode_text(tok.tokenize({"a photo of a red circle.", "a photo of a blue square.", "a photo of a ring."}));
    u1 = clip->encode_text(tok.tokenize({"a red circle", "a blue square", "a ring"}));
    us = clip->encode_text(tok.tokenize(p.single()));
  }
  // Chunked encoding equals one pass, to float32 rounding (the GEMMs see other row counts and
  // oneDNN's sgemm blocks by M: measured 1.1e-6).
  EXPECT_LE(max_abs_diff(encode_text_rows(*clip, pt.ensemble, 1), encode_text_rows(*clip, pt.ensemble)), 5e-6);
  const Tensor c = l2_normalize(mul(add(l2_normalize(u0), l2_normalize(u1)), 0.5));
  EXPECT_LE(max_abs_diff(ensemble_classifier(encode_text_rows(*clip, pt.ensemble), 2), c), 1e-6);
  const Tensor f = nn::read_tensors(fixture("inputs.safetensors")).at("image_features");
  const Tensor nf = l2_normalize(f);
  const double s = clip->logit_scale_exp();
  auto logits_with = [&](const Tensor& cls, double scale) { return mul(matmul(nf, transpose(l2_normalize(cls), 0, 1)), scale); };
  Generator gen(0);
  ClipMethodOptions o;
  o.alpha = 0;  // clip-adapter: f' = f; tip-adapter: only the zero-shot part
  NoGradGuard ng;
  EXPECT_LE(max_abs_diff(make_clip_head(*clip, "zeroshot", o, pt, gen)->forward(f), logits_with(c, s)), 1e-5);
  // The ensemble differs from either template alone (the test can tell them apart).
  EXPECT_GT(max_abs_diff(logits_with(c, s), logits_with(u0, s)), 1e-4);
  EXPECT_GT(max_abs_diff(logits_with(us, s), logits_with(u0, s)), 1e-4);
  // TaskRes (R = 0): the raw mean over templates, normalised only after the sum.
  const Tensor raw_mean = mul(add(u0, u1), 0.5);
  EXPECT_LE(max_abs_diff(make_clip_head(*clip, "taskres", o, pt, gen)->forward(f), logits_with(raw_mean, s)), 1e-5);
  EXPECT_GT(max_abs_diff(logits_with(raw_mean, s), logits_with(c, s)), 1e-6);
  // Tip-Adapter's zero-shot part (constant 100) is the ensemble classifier.
  Tensor keys = l2_normalize(f), labels = from_vector_i64({0, 1, 2, 0}, {4});
  EXPECT_LE(max_abs_diff(make_clip_head(*clip, "tip-adapter", o, pt, gen, keys, labels)->forward(f), logits_with(c, 100.0)),
            1e-4);
  // CLIP-Adapter and CoOp: one prompt per class, the single template.
  EXPECT_LE(max_abs_diff(make_clip_head(*clip, "clip-adapter", o, pt, gen)->forward(f), logits_with(us, s)), 1e-5);
  ClipMethodOptions co;
  co.prompts = 1;  // "the" replaced by the context
  auto coop = make_clip_head(*clip, "coop", co, pt, gen);
  auto coop_single = make_clip_head(*clip, "coop", co, tok.tokenize(p.single()), gen);
  coop_single->load_state_dict({{"coop.ctx", coop->parameter("coop.ctx")}});
  EXPECT_LE(max_abs_diff(coop->forward(f), coop_single->forward(f)), 1e-6);
  // Inconsistent token sets are refused.
  PromptTokens broken = pt;
  broken.per_class = 3;
  EXPECT_THROW_MSG(make_clip_head(*clip, "zeroshot", o, broken, gen), ValueError, "6 ensemble prompt rows");
}

}  // namespace
