// A user's own checkpoint end to end, as the README shows it: `peft train --weights W` with no
// config (config and preprocessing from the checkpoint and its sidecar), `peft predict`, eval
// mapping folders by class name, `peft merge` writing the merged config beside the weights.
#include <algorithm>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "core/random.h"
#include "data/image.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "core/io/safetensors.h"
#include "tests/apps/cli_util.h"

using namespace peft;
using namespace peft::testing;
namespace fs = std::filesystem;

namespace {

// Images of 3 classes, each tinted by its class, of assorted sizes (the eval transform resizes
// and crops them to the model's 32 px).
void make_folder(const fs::path& root, const std::vector<std::string>& classes, int per_class, uint64_t seed) {
  Generator g(seed);
  for (size_t c = 0; c < classes.size(); ++c) {
    fs::create_directories(root / classes[c]);
    for (int i = 0; i < per_class; ++i) {
      data::Image img(36 + 4 * i, 44, 3);
      for (float& v : img.pixels) v = static_cast<float>(g.uniform()) * 0.5f;
      for (int64_t p = 0; p < img.H * img.W; ++p) img.pixels[static_cast<size_t>(p * 3) + c] += 0.5f;
      data::save_png(img, (root / classes[c] / ("img" + std::to_string(i) + ".png")).string());
    }
  }
}

class PretrainedCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("peft_pretrained_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "model");
    const fs::path hub = fs::path(PEFT_SOURCE_DIR) / "tests/fixtures/hub/timm_plain";
    fs::copy_file(hub / "model.safetensors", dir / "model/model.safetensors");
    fs::copy_file(hub / "config.json", dir / "model/config.json");  // timm's hub config: mean/std 0.5, bicubic, 0.9
    make_folder(dir / "train", {"cat", "dog", "fox"}, 4, 1);
    make_folder(dir / "val", {"cat", "dog", "fox"}, 2, 2);
    weights = (dir / "model/model.safetensors").string();
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string p(const std::string& rel) const { return (dir / rel).string(); }
  fs::path dir;
  std::string weights;
};

}  // namespace

TEST_F(PretrainedCli, TrainWithoutConfigThenPredictByName) {
  auto r = run_peft("train --weights " + weights + " --method lora --data " + p("train") + " --val " + p("val") +
                        " --epochs 1 --batch 4 --no-progress --json --out " + p("run"),
                    "train");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("bicubic, center crop 0.9, mean (0.5, 0.5, 0.5)"), std::string::npos) << r.out;
  auto summary = nlohmann::json::parse(read_file(p("run/summary.json")));
  EXPECT_EQ(summary["preprocess"]["interpolation"], "bicubic");
  EXPECT_DOUBLE_EQ(summary["preprocess"]["crop_pct"].get<double>(), 0.9);
  EXPECT_NE(summary["preprocess"]["source"].get<std::string>().find("config.json"), std::string::npos);
  SafetensorsFile f = SafetensorsFile::open(p("run/adapter.safetensors"));
  EXPECT_EQ(nlohmann::json::parse(f.metadata().at("class_names")), nlohmann::json({"cat", "dog", "fox"}));

  make_folder(dir / "new", {"a"}, 3, 3);  // new images (a folder, searched recursively)
  r = run_peft("predict --weights " + weights + " --adapter " + p("run/adapter.safetensors") + " --data " + p("new") +
                   " --topk 2 --out " + p("pred.csv"),
               "predict");
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream csv(read_file(p("pred.csv")));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "file,class_1,prob_1,class_2,prob_2");
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    std::vector<std::string> f;
    std::stringstream ls(line);
    for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 5u) << line;
    EXPECT_NE(f[0].find("img"), std::string::npos);
    for (int k : {1, 3}) EXPECT_TRUE(f[k] == "cat" || f[k] == "dog" || f[k] == "fox") << line;
    EXPECT_NE(f[1], f[3]);
    const double p1 = std::stod(f[2]), p2 = std::stod(f[4]);
    EXPECT_GE(p1, p2);
    EXPECT_LE(p1 + p2, 1.0 + 1e-6);
    EXPECT_GT(p2, 0.0);
  }
  EXPECT_EQ(rows, 3);
}

TEST_F(PretrainedCli, EvalMapsFoldersByNameAndRefusesUnknownOnes) {
  auto r = run_peft("train --weights " + weights + " --method linear --data " + p("train") +
                        " --epochs 1 --batch 4 --no-progress --out " + p("run"),
                    "train");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string eval = "eval --json --weights " + weights + " --adapter " + p("run/adapter.safetensors") + " --data ";
  r = run_peft(eval + p("val"), "eval");
  ASSERT_EQ(r.status, 0) << r.err;
  const double all = nlohmann::json::parse(r.out.substr(r.out.rfind('{')))["top1"].get<double>();
  (void)all;
  // A folder holding only some classes is scored against the right labels: "fox" alone is label 2.
  fs::create_directories(dir / "only_fox");
  fs::copy(dir / "val/fox", dir / "only_fox/fox");
  r = run_peft(eval + p("only_fox"), "eval_fox");
  ASSERT_EQ(r.status, 0) << r.err;
  // Renamed classes are refused in one line naming the option and the class.
  fs::rename(dir / "val/cat", dir / "val/kitten");
  r = run_peft(eval + p("val"), "eval_renamed");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--data: class kitten is not among the model's 3 classes"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(PretrainedCli, MergeWritesTheConfigBesideTheWeights) {
  auto r = run_peft("train --weights " + weights + " --method lora --data " + p("train") +
                        " --epochs 1 --batch 4 --no-progress --out " + p("run"),
                    "train");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_peft("merge --weights " + weights + " --adapter " + p("run/adapter.safetensors") + " --out " + p("run/merged.safetensors"),
               "merge");
  ASSERT_EQ(r.status, 0) << r.err;
  auto cfg = nlohmann::json::parse(read_file(p("run/merged.json")));
  EXPECT_EQ(cfg["num_classes"], 3);
  EXPECT_EQ(cfg["class_names"], nlohmann::json({"cat", "dog", "fox"}));
  EXPECT_EQ(cfg["preprocess"]["interpolation"], "bicubic");
  // The merged model alone scores exactly as base + adapter.
  auto a = run_peft("eval --json --weights " + weights + " --adapter " + p("run/adapter.safetensors") + " --data " + p("val"), "e1");
  auto b = run_peft("eval --json --weights " + p("run/merged.safetensors") + " --data " + p("val"), "e2");
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  auto ja = nlohmann::json::parse(a.out.substr(a.out.rfind('{'))), jb = nlohmann::json::parse(b.out.substr(b.out.rfind('{')));
  EXPECT_DOUBLE_EQ(ja["top1"].get<double>(), jb["top1"].get<double>());
  EXPECT_NEAR(ja["loss"].get<double>(), jb["loss"].get<double>(), 1e-5);
}

TEST_F(PretrainedCli, BadModelOptionsAreOneLine) {
  auto r = run_peft("train --method lora --data " + p("train") + " --epochs 1 --out " + p("run"), "none");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--weights"), std::string::npos) << r.err;
  r = run_peft("eval --data " + p("val"), "none2");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--config or --weights is required"), std::string::npos) << r.err;
  r = run_peft("eval --weights " + weights + " --mean 0.1,0.2 --data " + p("val"), "mean");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--mean"), std::string::npos) << r.err;
  r = run_peft("eval --weights " + weights + " --crop-pct 1.5 --data " + p("val"), "crop");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("crop_pct"), std::string::npos) << r.err;
  const std::string dist = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/hub/timm_dist_token/model.safetensors";
  r = run_peft("eval --weights " + dist + " --data " + p("val"), "dist");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("dist_token"), std::string::npos) << r.err;
  // One short line besides the path it names (which depends on where the checkout lives).
  EXPECT_LT(r.err.size() - std::min(r.err.size(), dist.size()), 220u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(PretrainedCli, CheckpointHeadPredictsItsOwnClassNames) {
  // timm_plain's config.json carries label_names for its 5-class head.
  auto r = run_peft("predict --weights " + weights + " --data " + p("val/cat/img0.png") + " --topk 5 --out " + p("pred.csv"),
                    "own");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string csv = read_file(p("pred.csv"));
  EXPECT_NE(csv.find("shark"), std::string::npos) << csv;
  // The same folders against the checkpoint's own head: not its classes, refused by name.
  r = run_peft("eval --weights " + weights + " --data " + p("val"), "own_eval");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("not among the model's 5 classes"), std::string::npos) << r.err;
}

TEST_F(PretrainedCli, OverridesChangeThePreprocessing) {
  auto r = run_peft("predict --weights " + weights + " --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --interpolation "
                    "bilinear --crop-pct 0.875 --data " + p("val") + " --out " + p("pred.csv"),
                    "over");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("bilinear, center crop 0.875, mean (0.485, 0.456, 0.406)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--mean --std --interpolation --crop-pct"), std::string::npos) << r.out;
}

namespace {
// The OpenAI-named CLIP of tests/fixtures/clip rewritten in Hugging Face CLIPModel names (the
// inverse of the mapping under test; the forward mapping is checked against transformers' math
// in tests/nn/test_pretrained.cpp).
void write_as_hf_clip(const std::string& from, const std::string& to) {
  auto sd = nn::read_tensors(from);
  std::vector<std::pair<std::string, Tensor>> out;
  auto put = [&](const std::string& n, const Tensor& t) { out.emplace_back(n, contiguous(t)); };
  auto tower = [&](const std::string& oa, const std::string& hf) {
    for (int64_t i = 0; sd.count(oa + "transformer.resblocks." + std::to_string(i) + ".ln_1.weight"); ++i) {
      const std::string b = oa + "transformer.resblocks." + std::to_string(i) + ".", h = hf + "encoder.layers." + std::to_string(i) + ".";
      const Tensor w = sd.at(b + "attn.in_proj_weight"), bias = sd.at(b + "attn.in_proj_bias");
      const int64_t W = w.size(1);
      const char* qkv[3] = {"q_proj", "k_proj", "v_proj"};
      for (int64_t j = 0; j < 3; ++j) {
        put(h + "self_attn." + qkv[j] + ".weight", narrow(w, 0, j * W, W));
        put(h + "self_attn." + qkv[j] + ".bias", narrow(bias, 0, j * W, W));
      }
      for (const char* s : {"weight", "bias"}) {
        const std::string x = s;
        put(h + "layer_norm1." + x, sd.at(b + "ln_1." + x));
        put(h + "self_attn.out_proj." + x, sd.at(b + "attn.out_proj." + x));
        put(h + "layer_norm2." + x, sd.at(b + "ln_2." + x));
        put(h + "mlp.fc1." + x, sd.at(b + "mlp.c_fc." + x));
        put(h + "mlp.fc2." + x, sd.at(b + "mlp.c_proj." + x));
      }
    }
  };
  put("vision_model.embeddings.class_embedding", sd.at("visual.class_embedding"));
  put("vision_model.embeddings.patch_embedding.weight", sd.at("visual.conv1.weight"));
  put("vision_model.embeddings.position_embedding.weight", sd.at("visual.positional_embedding"));
  for (const char* s : {"weight", "bias"}) {
    put(std::string("vision_model.pre_layrnorm.") + s, sd.at(std::string("visual.ln_pre.") + s));
    put(std::string("vision_model.post_layernorm.") + s, sd.at(std::string("visual.ln_post.") + s));
    put(std::string("text_model.final_layer_norm.") + s, sd.at(std::string("ln_final.") + s));
  }
  tower("visual.", "vision_model.");
  tower("", "text_model.");
  put("visual_projection.weight", transpose(sd.at("visual.proj"), 0, 1));
  put("text_projection.weight", transpose(sd.at("text_projection"), 0, 1));
  put("text_model.embeddings.token_embedding.weight", sd.at("token_embedding.weight"));
  put("text_model.embeddings.position_embedding.weight", sd.at("positional_embedding"));
  put("logit_scale", sd.at("logit_scale"));
  save_safetensors(to, out);
}
}  // namespace

TEST(PretrainedClipCli, HuggingFaceNamedClipTrainsLikeTheOpenAIFile) {
  const fs::path dir = fs::temp_directory_path() / ("peft_hf_clip_cli_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "hf");
  const std::string fx = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip/";
  write_as_hf_clip(fx + "weights.safetensors", (dir / "hf/model.safetensors").string());
  // This project's CLIP config beside the weights (its procedural tokenizer cannot be inferred).
  fs::copy_file(fx + "config.json", dir / "hf/model.json");
  std::ofstream(dir / "prompts.txt") << "red\ngreen\nblue\nyellow\nmagenta\ncyan\nwhite\norange\n";
  const std::string common = " --method zeroshot --data procedural:colors --train-size 16 --val-size 32 --texts " +
                             (dir / "prompts.txt").string() + " --json --out ";
  auto a = run_peft("clip-train --config " + fx + "config.json --weights " + fx + "weights.safetensors" + common +
                        (dir / "a").string(), "a");
  auto b = run_peft("clip-train --weights " + (dir / "hf/model.safetensors").string() + common + (dir / "b").string(), "b");
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_NE(b.out.find("Hugging Face CLIP"), std::string::npos) << b.out;
  auto ja = nlohmann::json::parse(a.out.substr(a.out.rfind('{'))), jb = nlohmann::json::parse(b.out.substr(b.out.rfind('{')));
  EXPECT_DOUBLE_EQ(ja["top1"].get<double>(), jb["top1"].get<double>());
  EXPECT_NEAR(ja["loss"].get<double>(), jb["loss"].get<double>(), 1e-5);
  fs::remove_all(dir);
}

TEST(PretrainedClipCli, PredictWithAClipAdapterOrZeroShotOverClassNames) {
  const fs::path dir = fs::temp_directory_path() / ("peft_clip_predict_cli_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string weights = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip/weights.safetensors";  // config.json beside
  make_folder(dir / "imgs", {"x"}, 3, 7);
  std::ofstream(dir / "names.txt") << "red\ngreen\nblue\nyellow\nmagenta\ncyan\nwhite\norange\n";
  // Zero-shot: the classes are the --texts lines.
  auto z = run_peft("predict --weights " + weights + " --texts " + (dir / "names.txt").string() + " --data " +
                        (dir / "imgs").string() + " --topk 3 --out " + (dir / "zs.csv").string(),
                    "zs");
  ASSERT_EQ(z.status, 0) << z.err;
  EXPECT_NE(z.out.find("zeroshot"), std::string::npos) << z.out;
  std::string csv = read_file((dir / "zs.csv").string());
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "file,class_1,prob_1,class_2,prob_2,class_3,prob_3");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4) << csv;
  // A clip-train adapter: method, options and prompts come from the file; names are the data's classes.
  auto t = run_peft("clip-train --weights " + weights + " --method taskres --data procedural:colors --train-size 32 "
                        "--val-size 16 --epochs 2 --texts " + (dir / "names.txt").string() + " --out " + (dir / "run").string(),
                    "ct");
  ASSERT_EQ(t.status, 0) << t.err;
  auto p = run_peft("predict --weights " + weights + " --adapter " + (dir / "run/adapter.safetensors").string() +
                        " --data " + (dir / "imgs").string() + " --topk 1 --out " + (dir / "ad.csv").string(),
                    "ad");
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_NE(p.out.find("taskres"), std::string::npos) << p.out;
  std::istringstream rows(read_file((dir / "ad.csv").string()));
  std::string line;
  std::getline(rows, line);
  int n = 0;
  const std::set<std::string> colors = {"red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"};
  while (std::getline(rows, line)) {
    ++n;
    const std::string cls = line.substr(line.find(',') + 1, line.rfind(',') - line.find(',') - 1);
    EXPECT_TRUE(colors.count(cls)) << line;
  }
  EXPECT_EQ(n, 3);
  // Without an adapter or classes a CLIP cannot classify: a usage line.
  auto u = run_peft("predict --weights " + weights + " --data " + (dir / "imgs").string() + " --out " + (dir / "u.csv").string(), "u");
  EXPECT_NE(u.status, 0);
  EXPECT_EQ(std::count(u.err.begin(), u.err.end(), '\n'), 1) << u.err;
  fs::remove_all(dir);
}
