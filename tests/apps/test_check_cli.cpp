// `peft check`, `peft merge` and `peft methods` end to end through the built program, against the
// PyTorch reference fixtures of tools/reference/peft_reference.py.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "nn/checkpoint.h"
#include "core/io/safetensors.h"

namespace peft {
namespace {

namespace fs = std::filesystem;
const std::string kFix = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/peft/";
const std::string kPeft = std::string(PEFT_BINARY_DIR) + "/peft";

struct CmdResult {
  int code = -1;
  std::string out, err;
};

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("peft_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

CmdResult peft(const TempDir& tmp, const std::string& args) {
  const std::string o = tmp / "stdout.txt", e = tmp / "stderr.txt";
  int status = std::system((kPeft + " " + args + " > " + o + " 2> " + e).c_str());
  CmdResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

std::string check_args(const std::string& fixture, const std::string& method_opts, const std::string& out) {
  return "check --config " + kFix + "config.json --weights " + kFix + "base.safetensors " + method_opts + " --adapter " +
         kFix + fixture + "/adapter.safetensors --inputs " + kFix + "batch.safetensors --out " + out;
}

void expect_result_matches(const std::string& result, const std::string& fixture, bool grads = true) {
  auto got = nn::read_tensors(result);
  auto want = nn::read_tensors(kFix + fixture + "/expected.safetensors");
  if (grads) {
    EXPECT_EQ(got.size(), want.size());
  }
  for (auto& [n, t] : want) {
    if (!grads && n.rfind("grad.", 0) == 0) continue;
    auto it = got.find(n);
    ASSERT_NE(it, got.end()) << n;
    ASSERT_EQ(it->second.sizes(), t.sizes()) << n;
    EXPECT_TRUE(allclose(it->second, t, 1e-3, 1e-4)) << n << ": max abs diff " << max_abs_diff(it->second, t);
  }
}

TEST(CheckCli, VptDeepMatchesTheReference) {
  TempDir tmp;
  CmdResult r = peft(tmp, check_args("vpt-deep", "--method vpt-deep --prompts 3", tmp / "result.safetensors"));
  ASSERT_EQ(r.code, 0) << r.err;
  expect_result_matches(tmp / "result.safetensors", "vpt-deep");
}

TEST(CheckCli, LoraMatchesTheReference) {
  TempDir tmp;
  CmdResult r = peft(tmp, check_args("lora", "--method lora --rank 2 --alpha 3 --targets attn.qkv,mlp.fc2", tmp / "result.safetensors"));
  ASSERT_EQ(r.code, 0) << r.err;
  expect_result_matches(tmp / "result.safetensors", "lora");
}

TEST(CheckCli, BadOptionsAreUsageErrorsNamingTheOption) {
  TempDir tmp;
  const std::string out = tmp / "r.safetensors";
  struct Case {
    std::string fixture, opts, needle;
  };
  for (const Case& c : {Case{"vpt-deep", "--method vpt-deep --prompts 0", "--prompts"},
                        Case{"cvpt", "--method cvpt --prompts -2", "--prompts"},
                        Case{"lora", "--method lora --rank 0", "--rank"},
                        Case{"lora", "--method lora --rank 2 --targets attn.qkv,mlp.fc9", "--targets"},
                        Case{"adaptformer", "--method adaptformer --bottleneck 0", "--bottleneck"},
                        Case{"lora", "--method prefix", "--method"}}) {
    CmdResult r = peft(tmp, check_args(c.fixture, c.opts, out));
    EXPECT_EQ(r.code, 2) << c.opts << ": " << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.opts << ": " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  // A missing inputs file: exit 1 naming the file.
  CmdResult r = peft(tmp, "check --config " + kFix + "config.json --weights " + kFix + "base.safetensors --method linear --inputs " +
                        tmp / "nope.safetensors --out " + out);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("nope.safetensors"), std::string::npos) << r.err;
}

// peft merge folds LoRA into the base weights; `check --method linear` on the merged plain ViT
// reproduces the reference's LoRA logits and loss.
TEST(CheckCli, MergedLoraIsAPlainViTWithTheSameLogits) {
  TempDir tmp;
  CmdResult m = peft(tmp, "merge --config " + kFix + "config.json --weights " + kFix + "base.safetensors --method lora --adapter " +
                        kFix + "lora/adapter.safetensors --out " + tmp / "merged.safetensors");
  ASSERT_EQ(m.code, 0) << m.err;
  SafetensorsFile f = SafetensorsFile::open(tmp / "merged.safetensors");
  for (auto& n : f.names()) EXPECT_EQ(n.find("lora"), std::string::npos) << n;
  EXPECT_EQ(f.info("head.weight").shape[0], 4);
  std::string cfg = slurp(kFix + "config.json");
  cfg.replace(cfg.find("\"num_classes\": 3"), 16, "\"num_classes\": 4");
  std::ofstream(tmp / "config4.json") << cfg;
  CmdResult r = peft(tmp, "check --config " + tmp / "config4.json" + " --weights " + tmp / "merged.safetensors" +
                        " --method linear --inputs " + kFix + "batch.safetensors --out " + tmp / "result.safetensors");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_result_matches(tmp / "result.safetensors", "lora", /*grads=*/false);

  // --precision bf16 changes nothing in a merge: the base weights are not rounded (merge folds in
  // float64 and writes float32; nn/bf16_storage.h applies to training and inference only).
  CmdResult mb = peft(tmp, "merge --config " + kFix + "config.json --weights " + kFix + "base.safetensors --method lora --adapter " +
                         kFix + "lora/adapter.safetensors --out " + tmp / "merged_bf16.safetensors --precision bf16");
  ASSERT_EQ(mb.code, 0) << mb.err;
  EXPECT_EQ(slurp(tmp / "merged_bf16.safetensors"), slurp(tmp / "merged.safetensors"));

  CmdResult bad = peft(tmp, "merge --config " + kFix + "config.json --weights " + kFix + "base.safetensors --method vpt-deep --adapter " +
                          kFix + "vpt-deep/adapter.safetensors --out " + tmp / "x.safetensors");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("cannot be merged"), std::string::npos) << bad.err;
}

TEST(CheckCli, MethodsListsEveryVisionMethod) {
  TempDir tmp;
  CmdResult r = peft(tmp, "methods");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* m : {"linear", "full", "bitfit", "vpt-shallow", "vpt-deep", "cvpt", "ssf", "lora", "adaptformer"})
    EXPECT_NE(("\n" + r.out).find(std::string("\n  ") + m + " "), std::string::npos) << m << " in\n" << r.out;
  EXPECT_NE(r.out.find("--bottleneck"), std::string::npos);
  EXPECT_NE(r.out.find("in_proj_bias"), std::string::npos);
}

}  // namespace
}  // namespace peft
