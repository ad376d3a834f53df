// CLIP: the text tower and the image tower equal the PyTorch reference written from the spec
// (tools/reference/clip_reference.py), names as interop.md, configs, tokenizers, prompt files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "autograd/ops.h"
#include "core/error.h"
#include "data/procedural.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;

namespace {
std::string fixture(const std::string& file) { return std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip/" + file; }

std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("peft_test_clip_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary);
  f << content;
}
}  // namespace

TEST(CLIP, TextAndImageFeaturesMatchPyTorch) {
  nn::CLIP clip(nn::load_clip_config(fixture("config.json")), 0);
  clip.eval();
  nn::load_weights(clip, fixture("weights.safetensors"));  // strict: every name of interop.md, no extra
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  auto exp = nn::read_tensors(fixture("expected_zeroshot.safetensors"));
  Tensor u = clip.encode_text(in["tokens"]);
  EXPECT_EQ(u.sizes(), (Shape{3, 8}));
  EXPECT_LE(max_abs_diff(u, exp["text_features"]), 1e-4);
  Tensor f = clip.encode_image(in["images"]);
  EXPECT_LE(max_abs_diff(f, exp["encoded_images"]), 1e-4);
  EXPECT_NEAR(clip.logit_scale_exp(), 20.0, 1e-4);
}

TEST(CLIP, NamesFollowTheInteropContract) {
  nn::CLIP clip(nn::load_clip_config("clip-micro"), 0);
  std::map<std::string, Shape> names;
  for (auto& [n, t] : clip.named_parameters()) names[n] = t.sizes();
  const int64_t W = clip.cfg.text.width, E = clip.cfg.embed_dim, V = clip.cfg.text.vocab_size;
  EXPECT_EQ(names.at("token_embedding.weight"), (Shape{V, W}));
  EXPECT_EQ(names.at("positional_embedding"), (Shape{clip.cfg.text.context_length, W}));
  EXPECT_EQ(names.at("transformer.resblocks.1.attn.in_proj_weight"), (Shape{3 * W, W}));
  EXPECT_EQ(names.at("transformer.resblocks.1.attn.in_proj_bias"), (Shape{3 * W}));
  EXPECT_EQ(names.at("transformer.resblocks.0.attn.out_proj.weight"), (Shape{W, W}));
  EXPECT_EQ(names.at("transformer.resblocks.0.mlp.c_fc.weight"), (Shape{4 * W, W}));
  EXPECT_EQ(names.at("transformer.resblocks.0.mlp.c_proj.weight"), (Shape{W, 4 * W}));
  EXPECT_EQ(names.at("transformer.resblocks.0.ln_1.weight"), (Shape{W}));
  EXPECT_EQ(names.at("ln_final.bias"), (Shape{W}));
  EXPECT_EQ(names.at("text_projection"), (Shape{W, E}));
  EXPECT_EQ(names.at("logit_scale"), (Shape{}));
  EXPECT_EQ(names.at("visual.conv1.weight").size(), 4u);
  EXPECT_EQ(names.at("visual.proj"), (Shape{clip.cfg.vision.dim, E}));
  EXPECT_TRUE(names.count("visual.class_embedding") && names.count("visual.ln_pre.weight") &&
              names.count("visual.transformer.resblocks.0.attn.in_proj_weight") && names.count("visual.ln_post.bias"));
  EXPECT_EQ(names.count("visual.head.weight"), 0u);
  EXPECT_NEAR(clip.logit_scale_exp(), 1.0 / 0.07, 1e-4);  // OpenAI's initial temperature
}

TEST(CLIP, PositionsAfterTheEotChangeNothing) {
  nn::CLIP clip(nn::load_clip_config(fixture("config.json")), 0);
  nn::load_weights(clip, fixture("weights.safetensors"));
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor tokens = in["tokens"];
  Tensor u = clip.encode_text(tokens);
  // Replace the zero padding after every EOT by other ids: the causal mask hides them.
  Tensor t2 = tokens.clone();
  int64_t* p = t2.data<int64_t>();
  std::vector<int64_t> eot = nn::eot_positions(tokens);
  EXPECT_EQ(eot, (std::vector<int64_t>{5, 7, 10}));
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t t = eot[static_cast<size_t>(k)] + 1; t < 12; ++t) p[k * 12 + t] = 3 + t;
  EXPECT_LE(max_abs_diff(clip.encode_text(t2), u), 1e-6);
  // Each row alone gives its own feature (rows do not interact).
  Tensor u1 = clip.encode_text(contiguous(narrow(tokens, 0, 1, 1)));
  EXPECT_LE(max_abs_diff(u1, narrow(u, 0, 1, 1)), 1e-6);
  // An id that is not the EOT but sits before it changes the feature.
  Tensor t3 = tokens.clone();
  t3.data<int64_t>()[1] = 44;
  EXPECT_GT(max_abs_diff(narrow(clip.encode_text(t3), 0, 0, 1), narrow(u, 0, 0, 1)), 1e-4);
}

TEST(CLIP, EmbeddingPathEqualsTokenPathAndGradchecks) {
  nn::CLIPConfig c = nn::load_clip_config(fixture("config.json"));
  nn::CLIP clip(c, 3);
  nn::load_weights(clip, fixture("weights.safetensors"));
  clip.to(DType::f64);
  clip.freeze_all();
  auto in = nn::read_tensors(fixture("inputs.safetensors"));
  Tensor tokens = contiguous(narrow(in["tokens"], 1, 0, 8));  // 2 rows end by position 7
  tokens = contiguous(narrow(tokens, 0, 0, 2));
  Tensor e = embedding(clip.token_embedding->weight, tokens).clone();
  EXPECT_LE(max_abs_diff(clip.encode_text_embeddings(e, tokens), clip.encode_text(tokens)), 1e-12);
  e.requires_grad_();
  auto fn = [&](const std::vector<Tensor>& x) { return clip.encode_text_embeddings(x[0], tokens); };
  GradcheckOptions go;
  go.check_nonzero = false;  // embeddings after a row's EOT get no gradient (causal mask)
  auto r = gradcheck(fn, {e}, go);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(CLIP, BadTokensAndShapesAreClearErrors) {
  nn::CLIP clip(nn::load_clip_config(fixture("config.json")), 0);
  EXPECT_THROW_MSG(clip.encode_text(from_vector_i64({1, 64}, {1, 2})), ValueError, "64", "vocabulary");
  EXPECT_THROW_MSG(clip.encode_text(zeros({2, 3})), ShapeError, "int64 [K, T]");
  EXPECT_THROW_MSG(clip.encode_text(zeros({1, 13}, DType::i64)), ShapeError, "context length 12");
  EXPECT_THROW_MSG(clip.encode_text_embeddings(zeros({1, 3, 5}), from_vector_i64({62, 1, 63}, {1, 3})), ShapeError,
                   "[1, 3, 16]");
}

TEST(CLIPConfig, PresetsRoundTripAndErrors) {
  for (const std::string& n : nn::clip_preset_names()) {
    nn::CLIPConfig c = nn::load_clip_config(n);
    nn::CLIPConfig back = nn::clip_config_from_json(nn::clip_config_to_json(c));
    EXPECT_EQ(nn::clip_config_to_json(back), nn::clip_config_to_json(c)) << n;
    EXPECT_TRUE(nn::is_clip_config(n));
  }
  nn::CLIPConfig b32 = nn::load_clip_config("clip-vit-b32");
  EXPECT_EQ(b32.text.vocab_size, 49408);
  EXPECT_EQ(b32.text.context_length, 77);
  EXPECT_EQ(b32.vision.patch_size, 32);
  EXPECT_EQ(b32.embed_dim, 512);
  EXPECT_EQ(b32.vision.ln_eps, 1e-5);
  nn::CLIPConfig micro = nn::load_clip_config("clip-micro");
  EXPECT_EQ(micro.text.vocab_size, static_cast<int64_t>(data::procedural_vocabulary().size()) + 4);
  // Vision defaults for CLIP are filled in; embed_dim is shared.
  nn::CLIPConfig m = nn::clip_config_from_json(
      R"({"arch":"clip","vision":{"image_size":8,"patch_size":4,"dim":16,"depth":1,"heads":2},
          "text":{"vocab_size":49408,"context_length":77,"width":16,"layers":1,"heads":2},"embed_dim":8})");
  EXPECT_EQ(m.vision.style, "openai_clip_visual");
  EXPECT_EQ(m.vision.act, "quick_gelu");
  EXPECT_EQ(m.vision.num_classes, 0);
  EXPECT_EQ(m.vision.embed_dim, 8);
  EXPECT_EQ(m.text.tokenizer, "bpe");
  EXPECT_THROW_MSG(nn::clip_config_from_json(R"({"arch":"vit","vision":{},"text":{}})", "m.json"), ValueError, "m.json",
                   "arch");
  EXPECT_THROW_MSG(nn::clip_config_from_json(R"({"arch":"clip","vision":{},"text":{"width":10,"heads":3}})", "m.json"),
                   ValueError, "text.heads 3 must divide text.width 10");
  EXPECT_THROW_MSG(nn::clip_config_from_json(R"({"arch":"clip","vision":{},"text":{"depth":2}})", "m.json"), ValueError,
                   "text.depth");
  EXPECT_THROW_MSG(nn::load_clip_config("no-such-preset"), IOError, "clip-micro");
  EXPECT_FALSE(nn::is_clip_config("vit-micro"));
}

TEST(CLIPTokenizer, ProceduralWordsAndBpeErrors) {
  nn::CLIPConfig micro = nn::load_clip_config("clip-micro");
  nn::TextTokenizer tok(micro.text, "");
  std::vector<int64_t> row = tok.row("a photo of a red circle");
  ASSERT_EQ(row.size(), 8u);
  EXPECT_EQ(row.front(), micro.text.vocab_size - 2);
  EXPECT_EQ(row.back(), micro.text.vocab_size - 1);
  Tensor t = tok.tokenize({"a circle", "a photo of a large blue square on a striped background"});
  EXPECT_EQ(t.sizes(), (Shape{2, micro.text.context_length}));
  nn::CLIPConfig b32 = nn::load_clip_config("clip-vit-b32");
  // No --vocab: the repository's copy (assets/clip), unless $PEFT_CLIP_VOCAB names another file.
  EXPECT_NE(nn::default_bpe_vocab().find("assets/clip/bpe_simple_vocab_16e6.txt.gz"), std::string::npos);
  ::setenv("PEFT_CLIP_VOCAB", temp_path("nowhere.gz").c_str(), 1);
  EXPECT_THROW_MSG(nn::TextTokenizer(b32.text, ""), IOError, "nowhere.gz");
  ::unsetenv("PEFT_CLIP_VOCAB");
  const std::string bad = temp_path("bad.txt.gz");
  write_file(bad, "this is not gzip");
  EXPECT_THROW_MSG(nn::TextTokenizer(b32.text, bad), IOError, bad);
  EXPECT_THROW_MSG(nn::TextTokenizer(b32.text, temp_path("missing.gz")), IOError, "missing.gz");
  nn::CLIPTextConfig small = b32.text;
  small.vocab_size = 1000;
  const std::string vocab = std::string(PEFT_SOURCE_DIR) + "/assets/clip/bpe_simple_vocab_16e6.txt.gz";
  if (std::filesystem::exists(vocab)) {
    EXPECT_THROW_MSG(nn::TextTokenizer(small, vocab), ValueError, "vocab_size 1000");
    nn::TextTokenizer bpe(b32.text, vocab);
    EXPECT_EQ(bpe.row("a photo of a cat."), (std::vector<int64_t>{49406, 320, 1125, 539, 320, 2368, 269, 49407}));
  }
}

TEST(CLIPTexts, PromptFilesSkipBlankLines) {
  const std::string p = temp_path("texts.txt");
  write_file(p, "a photo of a cat.\n\n   \r\na photo of a dog.\r\n\t\n");
  EXPECT_EQ(nn::read_text_lines(p), (std::vector<std::string>{"a photo of a cat.", "a photo of a dog."}));
  write_file(p, "\n  \n\t\n");
  EXPECT_THROW_MSG(nn::read_text_lines(p), IOError, p, "no non-blank line");
  EXPECT_THROW_MSG(nn::read_text_lines(temp_path("nope.txt")), IOError, "nope.txt");
}
