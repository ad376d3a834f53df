// Hub checkpoints in their own naming (nn/pretrained.h): for every scheme, the inferred config
// equals the true one and the outputs equal the original library's (tests/fixtures/hub, made by
// tools/reference/hub_reference.py; torchvision's from the real library) to 1e-4; unsupported
// and damaged files fail with one short line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/pretrained.h"
#include "core/io/safetensors.h"
#include "nn/vit.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::testing;
namespace fs = std::filesystem;

namespace {

// The length of an error message without the file path it names: the path depends on where
// the checkout lives (CI clones into a deeper folder), the rest of the line must stay short.
size_t size_without_path(std::string m, const std::string& path) {
  for (size_t at = m.find(path); at != std::string::npos; at = m.find(path)) m.erase(at, path.size());
  return m.size();
}

std::string hub(const std::string& c, const std::string& f = "") {
  return std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/hub/" + c + (f.empty() ? "" : "/" + f);
}

nlohmann::json truth(const std::string& c) {
  std::ifstream f(hub(c, "truth.json"));
  return nlohmann::json::parse(f);
}

// What a user would pass on the command line where no sidecar can tell (see each truth.json's notes).
nn::PretrainedOptions options_for(const std::string& c, const nlohmann::json& t) {
  nn::PretrainedOptions o;
  if (c == "torchvision_heads2") o.heads = 2;
  const int64_t eval = t.value("eval_image_size", int64_t{0});
  if (c.rfind("dinov2", 0) == 0) o.image_size = eval;  // DINOv2 runs at any size; 224 by default
  return o;
}

void expect_config(const std::string& c, const nn::ViTConfig& got, const nlohmann::json& t, bool clip) {
  const nlohmann::json& w = t["config"];
  SCOPED_TRACE(c);
  EXPECT_EQ(got.patch_size, w["patch_size"].get<int64_t>());
  EXPECT_EQ(got.dim, w["dim"].get<int64_t>());
  EXPECT_EQ(got.depth, w["depth"].get<int64_t>());
  EXPECT_EQ(got.heads, w["heads"].get<int64_t>());
  EXPECT_DOUBLE_EQ(got.mlp_ratio, w["mlp_ratio"].get<double>());
  EXPECT_EQ(got.act, w["act"].get<std::string>());
  EXPECT_DOUBLE_EQ(got.ln_eps, w["ln_eps"].get<double>());
  EXPECT_EQ(got.image_size, t.value("eval_image_size", w["image_size"].get<int64_t>()));
  if (clip) return;  // the CLIP visual tower's layout is fixed (ln_pre, class embedding, proj)
  EXPECT_EQ(got.num_classes, w["num_classes"].get<int64_t>());
  EXPECT_EQ(got.pool, w["pool"].get<std::string>());
  EXPECT_EQ(got.class_token, w["class_token"].get<bool>());
  EXPECT_EQ(got.reg_tokens, w["reg_tokens"].get<int64_t>());
  EXPECT_EQ(got.layer_scale, w["layer_scale"].get<bool>());
  EXPECT_EQ(got.fc_norm, w["fc_norm"].get<bool>());
  EXPECT_EQ(got.norm_pre, w["norm_pre"].get<bool>());
  EXPECT_EQ(got.qkv_bias, w["qkv_bias"].get<bool>());
  // no_embed_class is how the DINOv2 register checkpoint is folded (timm's conversion), not a
  // property of the original.
  if (c != "dinov2_reg") {
    EXPECT_EQ(got.no_embed_class, w["no_embed_class"].get<bool>());
  }
}

void expect_preprocess(const std::string& c, const nn::ViTConfig& got, const nlohmann::json& t) {
  if (!t.contains("preprocess")) return;
  SCOPED_TRACE(c);
  const nlohmann::json& p = t["preprocess"];
  const data::Preprocess& pp = got.preprocess;
  EXPECT_EQ(pp.size, got.image_size);
  EXPECT_EQ(pp.interpolation, p["interpolation"].get<std::string>());
  EXPECT_NEAR(pp.crop_pct, p["crop_pct"].get<double>(), 1e-9);
  EXPECT_EQ(pp.crop_mode, p["crop_mode"].get<std::string>());
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(pp.norm.mean[i], p["mean"][i].get<double>(), 1e-6);
    EXPECT_NEAR(pp.norm.std[i], p["std"][i].get<double>(), 1e-6);
  }
}

void check_vit_case(const std::string& c) {
  const nlohmann::json t = truth(c);
  nn::Pretrained pre = nn::read_pretrained(hub(c, "model.safetensors"), options_for(c, t));
  EXPECT_EQ(pre.scheme, t["scheme"].get<std::string>()) << c;
  expect_config(c, pre.config, t, false);
  expect_preprocess(c, pre.config, t);
  if (t.contains("class_names")) {
    EXPECT_EQ(pre.class_names, t["class_names"].get<std::vector<std::string>>()) << c;
  }
  nn::VisionTransformer vit(pre.config, 0);
  vit.eval();
  nn::load_pretrained(vit, pre);
  auto e = nn::read_tensors(hub(c, "expected.safetensors"));
  NoGradGuard ng;
  if (e.count("logits")) {
    EXPECT_LE(max_abs_diff(vit.forward(e["images"]), e["logits"]), 1e-4) << c;
  } else {
    EXPECT_LE(max_abs_diff(vit.forward_features(e["images"]), e["features"]), 1e-4) << c;
  }
}

void check_clip_case(const std::string& c) {
  const nlohmann::json t = truth(c);
  nn::Pretrained pre = nn::read_pretrained(hub(c, "model.safetensors"), options_for(c, t));
  EXPECT_EQ(pre.scheme, t["scheme"].get<std::string>()) << c;
  ASSERT_TRUE(pre.is_clip) << c;
  expect_config(c, pre.clip.vision, t, true);
  expect_preprocess(c, pre.config, t);
  const nlohmann::json& tt = t["text"];
  EXPECT_EQ(pre.clip.text.vocab_size, tt["vocab_size"].get<int64_t>());
  EXPECT_EQ(pre.clip.text.context_length, tt["context_length"].get<int64_t>());
  EXPECT_EQ(pre.clip.text.width, tt["width"].get<int64_t>());
  EXPECT_EQ(pre.clip.text.layers, tt["layers"].get<int64_t>());
  EXPECT_EQ(pre.clip.text.heads, tt["heads"].get<int64_t>());
  EXPECT_EQ(pre.clip.embed_dim, t["embed_dim"].get<int64_t>());
  auto e = nn::read_tensors(hub(c, "expected.safetensors"));
  NoGradGuard ng;
  nn::CLIP clip(pre.clip, 0);
  clip.eval();
  clip.load_state_dict(pre.clip_tensors);  // strict: every tensor mapped, none left over
  EXPECT_LE(max_abs_diff(clip.encode_image(e["images"]), e["image_features"]), 1e-4) << c;
  EXPECT_LE(max_abs_diff(clip.encode_text(e["tokens"]), e["text_features"]), 1e-4) << c;
  EXPECT_NEAR(clip.logit_scale.item(), e["logit_scale"].item(), 1e-6);
  // The visual tower alone, as a ViT for the vision methods (no visual. prefix by hand).
  nn::VisionTransformer vit(pre.config, 0);
  vit.eval();
  nn::load_pretrained(vit, pre);
  EXPECT_LE(max_abs_diff(vit.forward_features(e["images"]), e["image_features"]), 1e-4) << c;
}

}  // namespace

TEST(Pretrained, TimmPlainWithHubConfig) { check_vit_case("timm_plain"); }
TEST(Pretrained, TimmFcNormAveragePool) { check_vit_case("timm_fc_norm"); }
TEST(Pretrained, TimmNormPre) { check_vit_case("timm_norm_pre"); }
TEST(Pretrained, TimmLayerScale) { check_vit_case("timm_layer_scale"); }
TEST(Pretrained, TimmRegisterTokens) { check_vit_case("timm_reg_tokens"); }
TEST(Pretrained, TimmNoEmbedClass) { check_vit_case("timm_no_embed_class"); }
TEST(Pretrained, TimmNoClassToken) { check_vit_case("timm_no_class_token"); }
TEST(Pretrained, DINOv2InterpolatesItsWay) { check_vit_case("dinov2"); }
TEST(Pretrained, DINOv2WithRegisters) { check_vit_case("dinov2_reg"); }
TEST(Pretrained, Torchvision) { check_vit_case("torchvision"); }
TEST(Pretrained, TorchvisionHeadsFromTheFlag) { check_vit_case("torchvision_heads2"); }
TEST(Pretrained, HuggingFaceViTForImageClassification) { check_vit_case("hf_vit_classifier"); }
TEST(Pretrained, HuggingFaceViTModel) { check_vit_case("hf_vit_model"); }
TEST(Pretrained, HuggingFaceCLIP) { check_clip_case("hf_clip"); }
TEST(Pretrained, OpenCLIPWithSidecar) { check_clip_case("open_clip"); }
TEST(Pretrained, OpenAICLIP) { check_clip_case("openai_clip"); }

TEST(Pretrained, UnsupportedVariantFailsInOneShortLine) {
  try {
    nn::read_pretrained(hub("timm_dist_token", "model.safetensors"));
    FAIL() << "a distilled DeiT must be refused";
  } catch (const IOError& e) {
    const std::string m = e.what();
    EXPECT_LT(size_without_path(m, hub("timm_dist_token", "model.safetensors")), 200u) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos);
    EXPECT_NE(m.find("timm"), std::string::npos) << m;
    EXPECT_NE(m.find("dist_token"), std::string::npos) << m;
  }
}

TEST(Pretrained, DamagedFilesNameTheSchemeAndWhatIsMissing) {
  const fs::path dir = fs::temp_directory_path() / "peft_test_pretrained";
  fs::create_directories(dir);
  auto sd = nn::read_tensors(hub("hf_vit_classifier", "model.safetensors"));
  // A Hugging Face ViT without one layer's query weight.
  sd.erase("vit.encoder.layer.1.attention.attention.query.weight");
  std::vector<std::pair<std::string, Tensor>> v(sd.begin(), sd.end());
  const std::string p = (dir / "hf_broken.safetensors").string();
  save_safetensors(p, v);
  try {
    nn::read_pretrained(p);
    FAIL();
  } catch (const IOError& e) {
    const std::string m = e.what();
    EXPECT_LT(size_without_path(m, p), 250u) << m;
    EXPECT_NE(m.find("Hugging Face ViT"), std::string::npos) << m;
    EXPECT_NE(m.find("layer.1.attention.attention.query.weight"), std::string::npos) << m;
  }
  // Many unknown names: the list ends in "and N more".
  std::vector<std::pair<std::string, Tensor>> junk;
  for (int i = 0; i < 40; ++i) junk.emplace_back("encoder.some_layer_" + std::to_string(i) + ".weight", zeros({2}));
  const std::string q = (dir / "junk.safetensors").string();
  save_safetensors(q, junk);
  try {
    nn::read_pretrained(q);
    FAIL();
  } catch (const IOError& e) {
    const std::string m = e.what();
    EXPECT_LT(size_without_path(m, q), 250u) << m;
    EXPECT_NE(m.find("and 37 more"), std::string::npos) << m;
  }
  // A timm checkpoint given a config it does not fit: one line, a few names.
  nn::ViTConfig other = nn::load_vit_config("vit-micro");
  nn::VisionTransformer vit(other, 0);
  try {
    nn::load_vit_weights(vit, hub("timm_layer_scale", "model.safetensors"));
    FAIL();
  } catch (const IOError& e) {
    EXPECT_LT(size_without_path(e.what(), hub("timm_layer_scale", "model.safetensors")), 250u) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Pretrained, InferredConfigRoundTripsThroughJSON) {
  nn::Pretrained pre = nn::read_pretrained(hub("timm_reg_tokens", "model.safetensors"));
  nn::ViTConfig back = nn::vit_config_from_json(nn::vit_config_to_json(pre.config));
  EXPECT_EQ(back.reg_tokens, pre.config.reg_tokens);
  EXPECT_EQ(back.no_embed_class, pre.config.no_embed_class);
  EXPECT_EQ(back.layer_scale, pre.config.layer_scale);
  EXPECT_EQ(back.preprocess.interpolation, pre.config.preprocess.interpolation);
  EXPECT_NEAR(back.preprocess.crop_pct, pre.config.preprocess.crop_pct, 1e-12);
}

TEST(Pretrained, LoadClipModelForTheClipCommands) {
  data::Preprocess pp;
  std::string what;
  auto clip = nn::load_clip_model("", hub("hf_clip", "model.safetensors"), 0, &pp, &what);
  clip->eval();
  auto e = nn::read_tensors(hub("hf_clip", "expected.safetensors"));
  NoGradGuard ng;
  EXPECT_LE(max_abs_diff(clip->encode_image(e["images"]), e["image_features"]), 1e-4);
  EXPECT_EQ(pp.interpolation, "bicubic");
  EXPECT_EQ(pp.size, 32);
  EXPECT_NE(what.find("Hugging Face CLIP"), std::string::npos) << what;
  // A ViT checkpoint is not a CLIP: one line saying what it is.
  EXPECT_THROW_MSG(nn::load_clip_model("", hub("timm_plain", "model.safetensors"), 0), IOError, "without a text tower");
}

TEST(Pretrained, UnknownHeadCountAsksForTheFlag) {
  // The Hugging Face ViT (width 48, 3 heads) without its config.json: the tensors cannot tell.
  const fs::path dir = fs::temp_directory_path() / "peft_test_pretrained_heads";
  fs::create_directories(dir);
  fs::copy_file(hub("hf_vit_classifier", "model.safetensors"), dir / "model.safetensors", fs::copy_options::overwrite_existing);
  const std::string p = (dir / "model.safetensors").string();
  EXPECT_THROW_MSG(nn::read_pretrained(p), IOError, "--heads");
  nn::PretrainedOptions o;
  o.heads = 3;
  EXPECT_EQ(nn::read_pretrained(p, o).config.heads, 3);
  fs::remove_all(dir);
}
