// CoCoOp (methods.md "CoCoOp"): logits, loss and the gradients of exactly the five trainable tensors equal
// the PyTorch reference (tools/reference/clip_reference_cocoop_kgcoop.py, written from the official
// trainers/cocoop.py with its per-image loop); float64 gradchecks; the batched text pass (one pass
// over B*K prompts) equals B separate passes; the initialisation; clear errors.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "core/io/safetensors.h"
#include "nn/token_hook.h"
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

// The head with the reference's (non-initial) tensors.
std::shared_ptr<ClipHead> fixture_head(nn::CLIP& clip) {
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(0);
  auto head = make_clip_head(clip, "cocoop", {}, in["tokens"], gen);  // --prompts default 4
  head->load_state_dict(nn::read_tensors(fixture("adapter_cocoop.safetensors")));
  return head;
}

const std::vector<std::string> kTrainable = {"cocoop.ctx", "cocoop.meta_net.linear1.weight", "cocoop.meta_net.linear1.bias",
                                             "cocoop.meta_net.linear2.weight", "cocoop.meta_net.linear2.bias"};

std::vector<std::string> cocoop_trainable(const nn::Module& m) {
  std::vector<std::string> n;
  for (auto& [k, p] : m.named_parameters())
    if (p.requires_grad()) n.push_back(k);
  return n;
}

double max_abs(const Tensor& t) { return max_abs_diff(t, zeros_like(t)); }

// logits / loss / grad.* of `got` against the reference file, with exactly its grad entries.
void expect_matches(const std::map<std::string, Tensor>& got, const std::string& expected_file) {
  SCOPED_TRACE(expected_file);
  auto exp = nn::read_tensors(fixture(expected_file));
  EXPECT_LE(max_abs_diff(got.at("logits"), exp.at("logits")), 1e-4 + 1e-3 * max_abs(exp.at("logits")));
  EXPECT_NEAR(got.at("loss").item(), exp.at("loss").item(), 1e-4 + 1e-3 * std::abs(exp.at("loss").item()));
  std::vector<std::string> want, have;
  for (auto& [n, t] : exp)
    if (n.rfind("grad.", 0) == 0) want.push_back(n);
  for (auto& [n, t] : got)
    if (n.rfind("grad.", 0) == 0) have.push_back(n);
  EXPECT_EQ(have, want);
  for (const std::string& n : want) {
    if (!got.count(n)) continue;
    EXPECT_LE(max_abs_diff(got.at(n), exp.at(n)), 1e-4 + 1e-3 * max_abs(exp.at(n))) << n;
  }
}

// Counts text-tower passes and the prompts in each (after_embed runs once per pass).
struct PassCounter : nn::TokenHook {
  std::vector<int64_t> rows;
  Tensor after_embed(const Tensor& x) override {
    rows.push_back(x.size(0));
    return x;
  }
};
}  // namespace

TEST(ClipCoCoOp, MatchesPyTorch) {
  auto clip = fixture_clip();
  auto head = fixture_head(*clip);
  EXPECT_EQ(cocoop_trainable(*head), kTrainable);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor logits = head->forward(in["image_features"]);
  Tensor loss = cross_entropy(logits, in["labels"]);
  EXPECT_FALSE(head->extra_loss().defined());  // CoCoOp has no term of its own
  backward(loss);
  std::map<std::string, Tensor> got = {{"logits", logits.detach()}, {"loss", loss.detach()}};
  for (auto& [n, p] : head->named_parameters()) got["grad." + n] = p.grad();
  expect_matches(got, "expected_cocoop.safetensors");
  for (auto& [n, p] : clip->named_parameters()) {  // the whole CLIP, logit_scale included, is frozen
    EXPECT_FALSE(p.requires_grad()) << n;
    EXPECT_FALSE(p.grad().defined()) << n;
  }
}

TEST(ClipCoCoOp, CheckTensorsFromTextFilesAndImagesMatchPyTorch) {
  // The fixture's ids are those of texts.txt under the procedural word tokenizer: the reference
  // tokenized the same lines.
  auto clip = fixture_clip();
  nn::TextTokenizer tok(clip->cfg.text, "");
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  EXPECT_EQ(max_abs_diff(tok.tokenize(nn::read_text_lines(fixture("texts.txt"))), in["tokens"]), 0.0);
  ClipCheckRequest r;
  r.config = fixture("config.json");
  r.weights = fixture("weights.safetensors");
  r.method = "cocoop";
  r.adapter = fixture("adapter_cocoop.safetensors");
  r.inputs = fixture("inputs.safetensors");
  r.texts = fixture("texts.txt");
  std::map<std::string, Tensor> got;
  for (auto& [n, t] : clip_check_tensors(r)) got[n] = t;
  expect_matches(got, "expected_cocoop.safetensors");
  // Images only: the features come from the frozen image tower.
  const std::string images_only = ::testing::TempDir() + "cocoop_images_only.safetensors";
  save_safetensors(images_only, {{"images", in["images"]}, {"labels", in["labels"]}});
  r.inputs = images_only;
  got.clear();
  for (auto& [n, t] : clip_check_tensors(r)) got[n] = t;
  expect_matches(got, "expected_cocoop-images.safetensors");
}

TEST(ClipCoCoOp, Float64GradcheckOfEveryTrainableTensor) {
  auto clip = fixture_clip(DType::f64);
  auto head = fixture_head(*clip);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor f = narrow(in["image_features"], 0, 0, 2).to(DType::f64);  // two images: per-image prompts differ
  Tensor labels = narrow(in["labels"], 0, 0, 2);
  std::vector<Tensor> inputs;
  for (auto& [n, p] : head->named_parameters()) inputs.push_back(p);
  ASSERT_EQ(inputs.size(), 5u);
  auto r = gradcheck([&](const std::vector<Tensor>&) { return cross_entropy(head->forward(f), labels); }, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(ClipCoCoOp, BatchedTextPassEqualsSeparatePassesPerImage) {
  auto clip = fixture_clip();
  auto head = fixture_head(*clip);
  auto counter = std::make_shared<PassCounter>();
  clip->set_text_hook("pass_counter", counter);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor f = in["image_features"];  // [4, E]
  Tensor batched = head->forward(f);
  // One text pass over B*K = 12 prompts for the whole batch.
  EXPECT_EQ(counter->rows, (std::vector<int64_t>{12}));
  for (int64_t b = 0; b < 4; ++b) {
    Tensor one = head->forward(narrow(f, 0, b, 1));  // the official per-image loop: K prompts for image b
    EXPECT_LE(max_abs_diff(one, narrow(batched, 0, b, 1)), 1e-5) << "image " << b;
  }
  EXPECT_EQ(counter->rows.size(), 5u);
  // Without autograd a large evaluation batch is cut into passes of at most 1024 prompts, with
  // the same logits as the one pass.
  Generator gen(3);
  Tensor many = randn({400, 32}, gen);
  Tensor one_pass = head->forward(many).detach();
  counter->rows.clear();
  Tensor chunked;
  {
    NoGradGuard ng;
    chunked = head->forward(many);
  }
  EXPECT_EQ(counter->rows, (std::vector<int64_t>{1023, 177}));  // 341 + 59 images of K = 3 prompts
  EXPECT_LE(max_abs_diff(chunked, one_pass), 1e-5);
}

TEST(ClipCoCoOp, WithoutTheMetaNetShiftItIsCoOp) {
  // pi = 0 (linear2 zeroed): every image gets the same context, i.e. CoOp with the same ctx;
  // with the meta-net's shift the logits differ.
  auto clip = fixture_clip();
  auto head = fixture_head(*clip);
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor f = in["image_features"];
  Tensor shifted = head->forward(f).detach();
  ClipMethodOptions o;
  o.prompts = 4;
  Generator gen(0);
  auto coop = make_clip_head(*clip, "coop", o, in["tokens"], gen);
  coop->load_state_dict({{"coop.ctx", head->parameter("cocoop.ctx")}});
  Tensor want = coop->forward(f).detach();
  EXPECT_GT(max_abs_diff(shifted, want), 1e-2);
  {
    NoGradGuard ng;
    head->parameter("cocoop.meta_net.linear2.weight").fill_(0.0);
    head->parameter("cocoop.meta_net.linear2.bias").fill_(0.0);
  }
  EXPECT_LE(max_abs_diff(head->forward(f), want), 1e-5);
}

TEST(ClipCoCoOp, InitialisationFollowsTheOfficialCode) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(1);
  auto head = make_clip_head(*clip, "cocoop", {}, in["tokens"], gen);
  // M = 4 (the default): ctx = token embeddings of "a photo of a" (CTX_INIT), i.e. ids 1..4 of
  // its tokenization (no position embedding).
  nn::TextTokenizer tok(clip->cfg.text, "");
  std::vector<int64_t> row = tok.row("a photo of a");
  ASSERT_EQ(row.size(), 6u);
  Tensor want = index_select(clip->token_embedding->weight, 0, from_vector_i64({row[1], row[2], row[3], row[4]}, {4}));
  Tensor ctx = head->parameter("cocoop.ctx");
  EXPECT_EQ(ctx.sizes(), (Shape{4, 16}));
  EXPECT_EQ(max_abs_diff(ctx, want), 0.0);
  // Meta-net: PyTorch's Linear default U(+-1/sqrt(fan_in)) for weights and biases; E/16 = 2.
  const std::vector<std::pair<std::string, Shape>> shapes = {{"cocoop.meta_net.linear1.weight", {2, 32}},
                                                             {"cocoop.meta_net.linear1.bias", {2}},
                                                             {"cocoop.meta_net.linear2.weight", {16, 2}},
                                                             {"cocoop.meta_net.linear2.bias", {16}}};
  for (auto& [n, s] : shapes) {
    Tensor t = head->parameter(n);
    EXPECT_EQ(t.sizes(), s) << n;
    const double bound = 1.0 / std::sqrt(n.find("linear1") != std::string::npos ? 32.0 : 2.0);
    EXPECT_LE(max_abs(t), bound) << n;
    EXPECT_GT(max_abs(t), 0.3 * bound) << n;  // drawn, not zero
  }
  // Any other M: N(0, 0.02^2).
  ClipMethodOptions o;
  o.prompts = 5;
  Tensor c5 = make_clip_head(*clip, "cocoop", o, in["tokens"], gen)->parameter("cocoop.ctx");
  EXPECT_EQ(c5.sizes(), (Shape{5, 16}));
  double s2 = 0;
  for (float v : c5.to_vector<float>()) s2 += double(v) * v;
  EXPECT_NEAR(std::sqrt(s2 / 80.0), 0.02, 0.006);
  // Not mergeable (the context depends on the image: peft merge refuses it); the metadata records M.
  EXPECT_TRUE(clip_method("cocoop").merge == nullptr);
  EXPECT_EQ(clip_method_metadata("cocoop", {}).at("prompts"), "4");
}

TEST(ClipCoCoOp, BadInputsAreClearErrors) {
  auto clip = fixture_clip();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Generator gen(0);
  ClipMethodOptions o;
  o.prompts = 6;  // line 3 "a photo of a ring" has its EOT at position 6
  EXPECT_THROW_MSG(make_clip_head(*clip, "cocoop", o, in["tokens"], gen), ValueError, "cocoop", "line 3", "<= M = 6",
                   "--prompts");
  o.prompts = 0;
  EXPECT_THROW_MSG(make_clip_head(*clip, "cocoop", o, in["tokens"], gen), ValueError, "cocoop", "--prompts");
  auto head = make_clip_head(*clip, "cocoop", {}, in["tokens"], gen);
  EXPECT_THROW_MSG(head->forward(zeros({2, 8})), ShapeError, "cocoop", "[B, 32]");
  // E < 16: the meta-net's hidden size E/16 would be 0.
  const std::string small = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip/";
  nn::CLIP c8(nn::load_clip_config(small + "config.json"), 0);
  auto in8 = nn::read_tensors(small + "inputs.safetensors");
  o.prompts = 2;
  EXPECT_THROW_MSG(make_clip_head(c8, "cocoop", o, in8["tokens"], gen), ValueError, "cocoop", "embed_dim 8", "16");
}
