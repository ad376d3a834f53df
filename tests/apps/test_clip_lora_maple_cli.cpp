// clip-lora and maple through the real `peft` binary: `peft check` writes what the library computes
// (logits, loss, grad.* of exactly the adapter tensors, the plain CLIP's text features); bad options
// are one-line errors; `peft clip-train` on clip-micro with procedural data trains on the images
// (the header says the image tower is not cached) and `peft clip-eval` reads the adapter back;
// `peft merge` folds clip-lora into a plain CLIP and refuses maple.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "autograd/ops.h"
#include "data/procedural.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "core/io/safetensors.h"
#include "peft/clip_methods.h"
#include "tests/testing.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

const std::string kPeft = std::string(PEFT_BINARY_DIR) + "/peft";
const std::string kFix = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip_lora_maple/";

struct CmdRun {
  int code = -1;
  std::string out, err;
  int err_lines() const { return static_cast<int>(std::count(err.begin(), err.end(), '\n')); }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

class ClipLoraMapleCli : public ::testing::Test {
 protected:
  static fs::path dir;
  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("peft_clip_lora_maple_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }
  CmdRun run(const std::string& args) {
    const std::string o = (dir / "stdout").string(), e = (dir / "stderr").string();
    int status = std::system((kPeft + " " + args + " > " + o + " 2> " + e).c_str());
    CmdRun r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(o);
    r.err = slurp(e);
    return r;
  }
  static std::string write(const std::string& name, const std::string& content) {
    std::string p = (dir / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  static std::string texts() { return write("texts.txt", "a photo of a red circle.\na photo of a square\na photo of a ring\n"); }
  static std::string base() { return "check --config " + kFix + "config.json --weights " + kFix + "weights.safetensors "; }
};
fs::path ClipLoraMapleCli::dir;

TEST_F(ClipLoraMapleCli, CheckWritesWhatTheLibraryComputes) {
  struct Case {
    std::string method, flags, adapter;
    ClipMethodOptions o;
    size_t grads;
  };
  ClipMethodOptions lora_o, maple_o, text_o;
  lora_o.targets = "k,o";
  lora_o.rank = 3;
  lora_o.alpha = 2;
  maple_o.depth = 3;
  text_o.encoder = "text";
  const std::vector<Case> cases = {
      {"clip-lora", "--targets k,o --rank 3 --alpha 2", kFix + "adapter_lora-o.safetensors", lora_o, 2u * 2 * 6},
      {"clip-lora", "--encoder text", "", text_o, 2u * 3 * 3},
      {"maple", "--depth 3", kFix + "adapter_maple.safetensors", maple_o, 6u},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method + " " + c.flags);
    const std::string out = (dir / "check.safetensors").string();
    CmdRun r = run(base() + "--method " + c.method + " " + c.flags + (c.adapter.empty() ? "" : " --adapter " + c.adapter) +
                   " --inputs " + kFix + "inputs.safetensors --texts " + texts() + " --out " + out);
    ASSERT_EQ(r.code, 0) << r.err;
    auto got = nn::read_tensors(out);
    ClipCheckRequest q;
    q.config = kFix + "config.json";
    q.weights = kFix + "weights.safetensors";
    q.method = c.method;
    q.options = c.o;
    q.adapter = c.adapter;
    q.inputs = kFix + "inputs.safetensors";
    q.texts = texts();
    std::map<std::string, Tensor> want;
    for (auto& [n, t] : clip_check_tensors(q)) want[n] = t;
    size_t grads = 0;
    for (auto& [n, t] : want) {
      ASSERT_TRUE(got.count(n)) << n;
      EXPECT_LE(max_abs_diff(got.at(n).to(DType::f64), t.to(DType::f64)), 1e-6) << n;
      grads += n.rfind("grad.", 0) == 0;
    }
    EXPECT_EQ(got.size(), want.size());
    EXPECT_EQ(grads, c.grads);
    EXPECT_EQ(got.count("grad.logit_scale"), 0u);
    // text_features are the plain CLIP's u (computed before the method changed the towers).
    auto clip = std::make_unique<nn::CLIP>(nn::load_clip_config(kFix + "config.json"), 0);
    nn::load_weights(*clip, kFix + "weights.safetensors");
    clip->eval();
    EXPECT_LE(max_abs_diff(got.at("text_features"), clip->encode_text(got.at("tokens"))), 1e-5);
  }
}

TEST_F(ClipLoraMapleCli, BadOptionsAreOneLineErrors) {
  const std::string out = (dir / "bad.safetensors").string();
  const std::string in = " --inputs " + kFix + "inputs.safetensors --texts " + texts() + " --out " + out;
  auto in_feats = nn::read_tensors(kFix + "inputs.safetensors");
  const std::string feats = (dir / "features_only.safetensors").string();
  save_safetensors(feats, {{"image_features", in_feats["image_features"]}, {"labels", in_feats["labels"]}});
  struct Row {
    std::string args, fragment;
  };
  const std::vector<Row> rows = {
      {base() + "--method maple" + in, "--depth 9"},  // default J = 9 > 3 layers
      {base() + "--method maple --depth 0" + in, "--depth"},
      {base() + "--method maple --depth 3 --prompts 5 --texts " + write("short.txt", "a circle\na photo of a red square\na photo of a blue ring\n") +
           " --inputs " + kFix + "inputs.safetensors --out " + out,
       "EOT"},
      {base() + "--method clip-lora --encoder image" + in, "--encoder"},
      {base() + "--method clip-lora --targets q,z" + in, "--targets"},
      {base() + "--method clip-lora --rank 0" + in, "--rank"},
      {base() + "--method maple --depth 2 --inputs " + feats + " --texts " + texts() + " --out " + out, "images"},
      {base() + "--method clip-lora --inputs " + feats + " --texts " + texts() + " --out " + out, "images"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.args);
    CmdRun r = run(row.args);
    EXPECT_TRUE(r.code == 1 || r.code == 2) << r.code << " " << r.err;
    EXPECT_EQ(r.err_lines(), 1) << r.err;
    EXPECT_EQ(r.err.rfind("peft: error:", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(row.fragment), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  // clip-lora --encoder text takes the features.
  CmdRun ok = run(base() + "--method clip-lora --encoder text --inputs " + feats + " --texts " + texts() + " --out " + out);
  EXPECT_EQ(ok.code, 0) << ok.err;
}

TEST_F(ClipLoraMapleCli, ClipTrainOnImagesEvalAndMerge) {
  // clip-micro with random weights; the procedural colors task.
  nn::CLIP clip(nn::load_clip_config("clip-micro"), 3);
  const std::string weights = (dir / "micro.safetensors").string();
  nn::save_weights(clip, weights);
  std::string lines;
  for (const std::string& c : data::procedural_task("colors").classes) lines += "a photo of a " + c + ".\n";
  const std::string prompts = write("colors.txt", lines);
  const std::string common = "--config clip-micro --weights " + weights +
                             " --data procedural:colors --train-size 48 --val-size 16 --shots 2 --epochs 2 --batch 8 --texts " +
                             prompts + " --threads 2 ";
  for (const std::string m : {"clip-lora", "maple --depth 2"}) {
    SCOPED_TRACE(m);
    const fs::path out = dir / ("train_" + m.substr(0, 5));
    CmdRun t = run("clip-train " + common + "--method " + m + " --out " + out.string() + " --json");
    ASSERT_EQ(t.code, 0) << t.err;
    EXPECT_NE(t.out.find("the image tower is not cached"), std::string::npos) << t.out;
    EXPECT_FALSE(fs::exists(out / "feature_cache"));  // nothing encoded through the changed tower was cached
    EXPECT_NE(t.out.find("\"top1\""), std::string::npos);
    auto a = SafetensorsFile::open((out / "adapter.safetensors").string());
    const std::string first = a.names().front();
    EXPECT_TRUE(first.find("lora_") != std::string::npos || first.rfind("maple.", 0) == 0) << first;
    CmdRun e = run("clip-eval --config clip-micro --weights " + weights + " --adapter " + (out / "adapter.safetensors").string() +
                   " --data procedural:colors --val-size 16");
    EXPECT_EQ(e.code, 0) << e.err;
    EXPECT_NE(e.out.find("top1"), std::string::npos);
  }
  // --encoder text keeps the image features cached.
  const fs::path text_out = dir / "train_text";
  CmdRun tt = run("clip-train " + common + "--method clip-lora --encoder text --out " + text_out.string());
  ASSERT_EQ(tt.code, 0) << tt.err;
  EXPECT_NE(tt.out.find("image features from the feature cache"), std::string::npos) << tt.out;
  EXPECT_TRUE(fs::exists(text_out / "feature_cache"));

  // merge: a plain CLIP whose 100-cos logits equal the adapter's.
  const std::string adapter = (dir / "train_clip-" / "adapter.safetensors").string();
  const std::string merged = (dir / "merged.safetensors").string();
  CmdRun mg = run("merge --config clip-micro --weights " + weights + " --adapter " + adapter + " --out " + merged);
  ASSERT_EQ(mg.code, 0) << mg.err;
  EXPECT_TRUE(fs::exists(dir / "merged.json"));
  SafetensorsFile mf = SafetensorsFile::open(merged);
  EXPECT_EQ(mf.metadata().at("merged_from"), "clip-lora");
  EXPECT_EQ(mf.metadata().at("logit_scale_constant"), "100");
  nn::CLIP plain(nn::load_clip_config((dir / "merged.json").string()), 9);
  nn::load_weights(plain, merged);
  plain.eval();
  nn::CLIP base(nn::load_clip_config("clip-micro"), 0);
  nn::load_weights(base, weights);
  base.eval();
  nn::TextTokenizer tok(base.cfg.text, "");
  Tensor tokens = tok.tokenize(nn::read_text_lines(prompts));
  Generator gen(0);
  ClipMethodOptions o;
  auto head = make_clip_head(base, "clip-lora", o, tokens, gen);
  head->load_state_dict(nn::read_tensors(adapter));
  Tensor images = randn({3, 3, 32, 32}, gen);
  Tensor want = head->forward(images);
  Tensor got = mul(matmul(l2_normalize(plain.encode_image(images)), transpose(l2_normalize(plain.encode_text(tokens)), 0, 1)), 100.0);
  EXPECT_LE(max_abs_diff(got, want), 1e-3);
  // maple does not merge.
  CmdRun mm = run("merge --config clip-micro --weights " + weights + " --adapter " + (dir / "train_maple" / "adapter.safetensors").string() +
                  " --out " + (dir / "m2.safetensors").string());
  EXPECT_EQ(mm.code, 2);
  EXPECT_EQ(mm.err_lines(), 1);
  EXPECT_NE(mm.err.find("maple cannot be merged"), std::string::npos) << mm.err;
}

}  // namespace
}  // namespace peft
