// dora, ia3 and fact through the built `peft` program: `check` against the PyTorch reference
// fixtures (tools/reference/peft_reference_dora_ia3_fact.py), `merge` of the DoRA fixture into a
// plain ViT that reproduces its logits, `methods`, `inspect`, `gradcheck` (DoRA's detached norm
// held) and a short `train` run of each on procedural data.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "nn/checkpoint.h"
#include "core/io/safetensors.h"
#include "tests/apps/cli_util.h"

namespace peft {
namespace {

using testing::CliResult;
using testing::run_peft;
using testing::TempDir;

const std::string kFix = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/peft/";

std::string check_args(const std::string& fixture, const std::string& method_opts, const std::string& out) {
  return "check --config " + kFix + "config.json --weights " + kFix + "base.safetensors " + method_opts +
         " --adapter " + kFix + fixture + "/adapter.safetensors --inputs " + kFix + "batch.safetensors --out " + out;
}

// Every expected entry matches at 1e-4 abs + 1e-3 rel; with grads, exactly the expected entries.
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

TEST(DoraIa3FactCli, CheckMatchesTheReference) {
  TempDir tmp("peft_cli_new_methods");
  for (auto [fixture, opts] : {std::pair<std::string, std::string>{"dora", "--method dora --rank 2 --alpha 3 "
                                                                            "--targets attn.qkv,attn.proj,mlp.fc1,mlp.fc2"},
                               {"ia3", "--method ia3"},
                               {"fact", "--method fact --rank 2 --alpha 0.7"}}) {
    SCOPED_TRACE(fixture);
    const std::string out = tmp / (fixture + ".safetensors");
    CliResult r = run_peft(check_args(fixture, opts, out), fixture);
    ASSERT_EQ(r.status, 0) << r.err;
    expect_result_matches(out, fixture);
  }
}

// peft merge folds the DoRA fixture (all four linears) into a plain ViT; `check --method linear`
// on it reproduces the reference's DoRA logits and loss.
TEST(DoraIa3FactCli, MergedDoraIsAPlainViTWithTheSameLogits) {
  TempDir tmp("peft_cli_new_methods");
  CliResult m = run_peft("merge --config " + kFix + "config.json --weights " + kFix + "base.safetensors --adapter " + kFix +
                         "dora/adapter.safetensors --out " + tmp / "merged.safetensors");
  ASSERT_EQ(m.status, 0) << m.err;
  SafetensorsFile f = SafetensorsFile::open(tmp / "merged.safetensors");
  for (auto& n : f.names()) EXPECT_EQ(n.find("lora"), std::string::npos) << n;
  std::string cfg = testing::read_file(kFix + "config.json");
  cfg.replace(cfg.find("\"num_classes\": 3"), 16, "\"num_classes\": 4");
  std::ofstream(tmp / "config4.json") << cfg;
  CliResult r = run_peft("check --config " + tmp / "config4.json" + " --weights " + tmp / "merged.safetensors" +
                         " --method linear --inputs " + kFix + "batch.safetensors --out " + tmp / "result.safetensors");
  ASSERT_EQ(r.status, 0) << r.err;
  expect_result_matches(tmp / "result.safetensors", "dora", /*grads=*/false);
}

TEST(DoraIa3FactCli, MethodsInspectAndGradcheck) {
  CliResult list = run_peft("methods");
  ASSERT_EQ(list.status, 0) << list.err;
  for (const char* m : {"  dora ", "  ia3 ", "  fact "}) EXPECT_NE(list.out.find(m), std::string::npos) << m;
  CliResult ins = run_peft("inspect --config " + kFix + "config.json --method fact --rank 2");
  ASSERT_EQ(ins.status, 0) << ins.err;
  EXPECT_NE(ins.out.find("FacTu.weight"), std::string::npos) << ins.out;
  EXPECT_NE(ins.out.find("blocks.1.mlp.fc2_FacTs.weight"), std::string::npos) << ins.out;
  // The openai layout is refused in one line naming the method (usage error, exit 2).
  TempDir tmp("peft_cli_new_methods");
  std::string cfg = testing::read_file(kFix + "config.json");
  cfg.replace(cfg.find("\"timm\""), 6, "\"openai_clip_visual\"");
  std::ofstream(tmp / "openai.json") << cfg;
  CliResult bad = run_peft("inspect --config " + tmp / "openai.json" + " --method ia3", "bad");
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find("ia3"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.err.find('\n'), bad.err.size() - 1) << bad.err;  // one line
  // DoRA's norm is detached: gradcheck holds it, so every tensor passes.
  for (const char* m : {"dora --rank 2 --targets attn.qkv,mlp.fc2", "ia3", "fact --rank 2"}) {
    CliResult g = run_peft("gradcheck --config " + kFix + "config.json --method " + m, "gradcheck");
    EXPECT_EQ(g.status, 0) << m << "\n" << g.out << g.err;
    EXPECT_NE(g.out.find("gradcheck: PASS"), std::string::npos) << m << "\n" << g.out;
  }
}

TEST(DoraIa3FactCli, TrainOnProceduralData) {
  TempDir tmp("peft_cli_new_methods");
  for (const char* m : {"dora", "ia3", "fact"}) {
    const std::string out = tmp / m;
    CliResult r = run_peft("train --config " + kFix + "config.json --weights " + kFix + "base.safetensors --method " + m +
                               " --rank 2 --data procedural:shapes --train-size 16 --batch 8 --epochs 1 --threads 1 "
                               "--no-progress --out " + out,
                           m);
    ASSERT_EQ(r.status, 0) << m << "\n" << r.err;
    SafetensorsFile f = SafetensorsFile::open(out + "/adapter.safetensors");
    EXPECT_EQ(f.metadata().at("method"), m);
    EXPECT_TRUE(f.has("head.weight"));
    if (std::string(m) == "fact") {
      EXPECT_EQ(f.metadata().at("alpha"), "1");  // the scale's own default
    }
  }
}

}  // namespace
}  // namespace peft
