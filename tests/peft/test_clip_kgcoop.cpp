// KgCoOp (methods.md "KgCoOp"): logits (CoOp's), the loss with its knowledge term w * (1 - mean cos) and
// the gradient of exactly coop.ctx equal the PyTorch reference
// (tools/reference/clip_reference_cocoop_kgcoop.py, written from the official trainers/kgcoop.py);
// float64 gradchecks of the whole loss; the initialisation (at "a photo of a" on such lines it is
// zero-shot with a zero term); a KgCoOp adapter is a CoOp adapter; --kg-texts / --kg-weight errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
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
  return std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip-cocoop-kgcoop/" + file;
}

std::unique_ptr<nn::CLIP> fixture_clip(DType dt = DType::f32) {
  auto clip = std::make_unique<nn::CLIP>(nn::load_clip_config(fixture("config.json")), 0);
  clip->eval();
  nn::load_weights(*clip, fixture("weights.safetensors"));
  if (dt != DType::f32) clip->to(dt);
  return clip;
}

// The head with the reference's context; kg_tokens undefined = the class prompts.
std::shared_ptr<ClipHead> fixture_head(nn::CLIP& clip, double w, const Tensor& kg_tokens = Tensor()) {
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  ClipMethodOptions o;
  o.kg_weight = w;
  Generator gen(0);
  auto head = make_clip_head(clip, "kgcoop", o, PromptTokens::from_tokens(in["tokens"]), gen, Tensor(), Tensor(), kg_tokens);
  head->load_state_dict(nn::read_tensors(fixture("adapter_kgcoop.safetensors")));
  return head;
}

double max_abs(const Tensor& t) { return max_abs_diff(t, zeros_like(t)); }

void expect_matches(const std::map<std::string, Tensor>& got, const std::string& expected_file) {
  SCOPED_TRACE(expected_file);
  auto exp = nn::read_tensors(fixture(expected_file));
  EXPECT_LE(max_abs_diff(got.at("logits"), exp.at("logits")), 1e-4 + 1e-3 * max_abs(exp.at("logits")));
  EXPECT_NEAR(got.at("loss").item(), exp.at("loss").item(), 1e-4 + 1e-3 * std::abs(exp.at("loss").item()));
  std::vector<std::string> have;
  for (auto& [n, t] : got)
    if (n.rfind("grad.", 0) == 0) have.push_back(n);
  EXPECT_EQ(have, std::vector<std::string>{"grad.coop.ctx"});  // exactly CoOp's one tensor
  ASSERT_TRUE(got.count("grad.coop.ctx"));
  EXPECT_LE(max_abs_diff(got.at("grad.coop.ctx"), exp.at("grad.coop.ctx")), 1e-4 + 1e-3 * max_abs(exp.at("grad.coop.ctx")));
}

std::map<std::string, Tensor> run_head(ClipHead& head) {
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor logits = head.forward(in["image_features"]);
  Tensor loss = add(cross_entropy(logits, in["labels"]), head.extra_loss());  // check's loss includes the term
  backward(loss);
  std::map<std::string, Tensor> got = {{"logits", logits.detach()}, {"loss", loss.detach()}};
  for (auto& [n, p] : head.named_parameters()) got["grad." + n] = p.grad();
  return got;
}

std::string write(const std::string& name, const std::string& content) {
  const std::string p = ::testing::TempDir() + name;
  std::ofstream(p, std::ios::binary) << content;
  return p;
}
}  // namespace

TEST(ClipKgCoOp, MatchesPyTorchWithTheTextsAsHandCraftedPrompts) {
  auto clip = fixture_clip();
  auto head = fixture_head(*clip, 8.0);
  expect_matches(run_head(*head), "expected_kgcoop.safetensors");
  for (auto& [n, p] : clip->named_parameters()) {  // the whole CLIP, logit_scale included, is frozen
    EXPECT_FALSE(p.requires_grad()) << n;
    EXPECT_FALSE(p.grad().defined()) << n;
  }
}

TEST(ClipKgCoOp, MatchesPyTorchWithKgTextsAndWeight) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  auto head = fixture_head(*clip, 2.5, in["kg_tokens"]);
  expect_matches(run_head(*head), "expected_kgcoop-kg.safetensors");
}

TEST(ClipKgCoOp, CheckTensorsReadKgTextsAndIncludeTheTerm) {
  auto clip = fixture_clip();
  nn::TextTokenizer tok(clip->cfg.text, "");
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  // The reference tokenized the same lines.
  EXPECT_EQ(max_abs_diff(tok.tokenize(nn::read_text_lines(fixture("kg_texts.txt"))), in["kg_tokens"]), 0.0);
  ClipCheckRequest r;
  r.config = fixture("config.json");
  r.weights = fixture("weights.safetensors");
  r.method = "kgcoop";
  r.adapter = fixture("adapter_kgcoop.safetensors");
  r.inputs = fixture("inputs.safetensors");
  r.texts = fixture("texts.txt");
  std::map<std::string, Tensor> got;
  for (auto& [n, t] : clip_check_tensors(r)) got[n] = t;
  expect_matches(got, "expected_kgcoop.safetensors");  // w = 8 by default, hand-crafted = the texts
  r.options.kg_texts = fixture("kg_texts.txt");
  r.options.kg_weight = 2.5;
  got.clear();
  for (auto& [n, t] : clip_check_tensors(r)) got[n] = t;
  expect_matches(got, "expected_kgcoop-kg.safetensors");
}

TEST(ClipKgCoOp, Float64GradcheckOfTheLossWithItsTerm) {
  auto clip = fixture_clip(DType::f64);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  auto head = fixture_head(*clip, 2.5, in["kg_tokens"]);
  Tensor f = in["image_features"].to(DType::f64);
  std::vector<Tensor> inputs = {head->parameter("coop.ctx")};
  auto r = gradcheck(
      [&](const std::vector<Tensor>&) {
        Tensor ce = cross_entropy(head->forward(f), in["labels"]);
        return add(ce, head->extra_loss());
      },
      inputs);
  EXPECT_TRUE(r.ok) << r.message;
  // Called in either order (C++ leaves the order of function arguments open), the term is that
  // of the current context: gradcheck perturbs ctx in place between calls.
  auto u = gradcheck(
      [&](const std::vector<Tensor>&) { return add(cross_entropy(head->forward(f), in["labels"]), head->extra_loss()); },
      inputs);
  EXPECT_TRUE(u.ok) << u.message;
  // The term alone (extra_loss without a preceding forward runs the text tower itself).
  auto t = gradcheck([&](const std::vector<Tensor>&) { return head->extra_loss(); }, inputs);
  EXPECT_TRUE(t.ok) << t.message;
}

TEST(ClipKgCoOp, TheTermIsWTimesOneMinusTheMeanCosine) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  auto head = fixture_head(*clip, 2.5, in["kg_tokens"]);
  Tensor term = head->extra_loss();
  EXPECT_EQ(term.dim(), 0);
  // By hand: t = norm(u) of the learned prompts (CoOp's), t0 = norm(u) of the hand-crafted ones.
  ClipMethodOptions o;
  o.prompts = 4;
  Generator gen(0);
  auto coop = make_clip_head(*clip, "coop", o, in["tokens"], gen);
  coop->load_state_dict(nn::read_tensors(fixture("adapter_kgcoop.safetensors")));  // a KgCoOp adapter is a CoOp adapter
  NoGradGuard ng;
  Tensor t0 = l2_normalize(clip->encode_text(in["kg_tokens"]));
  // CoOp's logits of the images f = t0: s * t0 t^T, whose diagonal / s is cos(t_k, t0_k).
  const std::vector<float> logits = coop->forward(t0).to_vector<float>();
  const double s = clip->logit_scale_exp();
  const double mean_cos = (logits[0] + logits[4] + logits[8]) / (3.0 * s);
  const double want = 2.5 * (1.0 - mean_cos);
  EXPECT_GT(std::abs(want), 1e-2);  // a term that is not trivially zero
  EXPECT_NEAR(term.item(), want, 1e-5);
  // The term does not depend on the batch: the same after another forward on other images.
  head->forward(narrow(in["image_features"], 0, 0, 1));
  EXPECT_NEAR(head->extra_loss().item(), term.item(), 1e-6);
}

TEST(ClipKgCoOp, TheTermFollowsAContextChangedAfterForward) {
  // forward keeps t for extra_loss; an optimizer step in between must not leave a stale term.
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  auto head = fixture_head(*clip, 2.5, in["kg_tokens"]);
  const double before = head->extra_loss().item();
  head->forward(in["image_features"]);
  Tensor ctx = head->parameter("coop.ctx");
  {
    NoGradGuard ng;
    Tensor half = mul(ctx, 0.5);
    ctx.copy_(half);
  }
  const double after = head->extra_loss().item();
  EXPECT_GT(std::abs(after - before), 1e-3);
  EXPECT_NEAR(after, head->extra_loss().item(), 1e-7);  // the same as computed afresh
}

TEST(ClipKgCoOp, InitialisationAndTheCoOpAdapter) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(1);
  auto head = make_clip_head(*clip, "kgcoop", {}, in["tokens"], gen);
  // Trainable: coop.ctx [4, W] only (M = 4 by default).
  std::vector<std::string> names;
  for (auto& [n, p] : head->named_parameters()) names.push_back(n);
  EXPECT_EQ(names, std::vector<std::string>{"coop.ctx"});
  // ctx = the token embeddings of "a photo of a" (CTX_INIT); the fixture's lines all start with
  // it, so the learned prompts are the lines themselves: zero-shot logits, a zero term.
  nn::TextTokenizer tok(clip->cfg.text, "");
  std::vector<int64_t> row = tok.row("a photo of a");
  Tensor want = index_select(clip->token_embedding->weight, 0, from_vector_i64({row[1], row[2], row[3], row[4]}, {4}));
  EXPECT_EQ(max_abs_diff(head->parameter("coop.ctx"), want), 0.0);
  auto zs = make_clip_head(*clip, "zeroshot", {}, in["tokens"], gen);
  EXPECT_LE(max_abs_diff(head->forward(in["image_features"]), zs->forward(in["image_features"])), 1e-4);
  EXPECT_NEAR(head->extra_loss().item(), 0.0, 1e-5);
  // Any other M: N(0, 0.02^2).
  ClipMethodOptions o;
  o.prompts = 5;
  Tensor c5 = make_clip_head(*clip, "kgcoop", o, in["tokens"], gen)->parameter("coop.ctx");
  EXPECT_EQ(c5.sizes(), (Shape{5, 16}));
  double s2 = 0;
  for (float v : c5.to_vector<float>()) s2 += double(v) * v;
  EXPECT_NEAR(std::sqrt(s2 / 80.0), 0.02, 0.006);
  // The kgcoop adapter loads into CoOp (same name and shape) and gives the same logits.
  auto kg = fixture_head(*clip, 8.0);
  ClipMethodOptions c4;
  c4.prompts = 4;
  auto coop = make_clip_head(*clip, "coop", c4, in["tokens"], gen);
  coop->load_state_dict(nn::read_tensors(fixture("adapter_kgcoop.safetensors")));
  EXPECT_LE(max_abs_diff(kg->forward(in["image_features"]), coop->forward(in["image_features"])), 1e-6);
  EXPECT_EQ(clip_method_metadata("kgcoop", {}).at("kg_weight"), "8");
  EXPECT_EQ(clip_method_metadata("kgcoop", {}).at("prompts"), "4");
}

TEST(ClipKgCoOp, TrainingLowersTheLossWithTheTerm) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  ClipMethodOptions o;
  o.prompts = 2;  // N(0, .02^2) start: far from the hand-crafted prompts, so the term is large
  Generator gen(0);
  auto head = make_clip_head(*clip, "kgcoop", o, PromptTokens::from_tokens(in["tokens"]), gen, Tensor(), Tensor(),
                             in["kg_tokens"]);
  auto loss_now = [&] {
    NoGradGuard ng;
    return cross_entropy(head->forward(in["image_features"]), in["labels"]).item() + head->extra_loss().item();
  };
  const double before = loss_now();
  ClipTrainConfig c;
  c.epochs = 30;
  c.batch = 4;
  c.lr = 1e-2;
  train_clip_head(*head, in["image_features"], in["labels"], c);
  EXPECT_LT(loss_now(), before - 0.05);
}

TEST(ClipKgCoOp, BadOptionsAreClearErrors) {
  auto clip = fixture_clip();
  nn::TextTokenizer tok(clip->cfg.text, "");
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  ClipMethodOptions o;
  o.kg_texts = write("two_lines.txt", "a red circle\na blue square\n");
  EXPECT_THROW_MSG(kg_prompt_tokens("kgcoop", o, tok, 3, "texts.txt"), ValueError, "two_lines.txt", "texts.txt", "2 prompts", "has 3");
  EXPECT_THROW_MSG(kg_prompt_tokens("coop", o, tok, 2, "texts.txt"), ValueError, "--kg-texts", "kgcoop");
  o.kg_texts = ::testing::TempDir() + "no_such_kg_texts.txt";
  EXPECT_THROW_MSG(kg_prompt_tokens("kgcoop", o, tok, 3, "texts.txt"), IOError, "no_such_kg_texts.txt");
  o.kg_texts.clear();
  EXPECT_FALSE(kg_prompt_tokens("kgcoop", o, tok, 3, "texts.txt").defined());  // the class prompts
  Generator gen(0);
  o.kg_weight = -1;
  EXPECT_THROW_MSG(make_clip_head(*clip, "kgcoop", o, in["tokens"], gen), ValueError, "kgcoop", "--kg-weight");
  o.kg_weight = std::nan("");
  EXPECT_THROW_MSG(make_clip_head(*clip, "kgcoop", o, in["tokens"], gen), ValueError, "--kg-weight");
  o.kg_weight = 8;
  o.prompts = 6;
  EXPECT_THROW_MSG(make_clip_head(*clip, "kgcoop", o, in["tokens"], gen), ValueError, "kgcoop", "line 3", "<= M = 6");
  o.prompts = 4;
  EXPECT_THROW_MSG(make_clip_head(*clip, "kgcoop", o, PromptTokens::from_tokens(in["tokens"]), gen, Tensor(), Tensor(),
                                  narrow(in["kg_tokens"], 0, 0, 2)),
                   ValueError, "kgcoop", "2 hand-crafted prompts", "3 classes");
}
