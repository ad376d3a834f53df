// `peft gradcheck` passes on correct backwards and fails (exit 1) on a deliberately broken one;
// `peft graph` writes the DOT of a training step.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/apps/cli_util.h"

namespace peft {
namespace {

namespace fs = std::filesystem;
using testing::run_peft;

// A tiny model (8 px, patch 4, D8, one block) so that checking every element takes well under a second.
class GradcheckCli : public ::testing::Test {
 protected:
  static fs::path dir;
  static std::string config;

  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("peft_gradcheck_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    config = (dir / "tiny.json").string();
    std::ofstream(config) << R"({"arch": "vit", "style": "timm", "image_size": 8, "patch_size": 4, "in_chans": 3,
 "dim": 8, "depth": 1, "heads": 2, "mlp_ratio": 2, "num_classes": 3})";
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }

  static size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
  }
};
fs::path GradcheckCli::dir;
std::string GradcheckCli::config;

TEST_F(GradcheckCli, LinearProbePasses) {
  auto r = run_peft("gradcheck --config " + config + " --method linear --json", "linear");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count(r.out, "  PASS\n"), 3u) << r.out;  // head.weight, head.bias, the input
  EXPECT_EQ(count(r.out, "FAIL"), 0u) << r.out;
  EXPECT_NE(r.out.find("head.weight"), std::string::npos);
  EXPECT_NE(r.out.find("input (images)"), std::string::npos);
  EXPECT_NE(r.out.find("\"ok\":true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"tensors\":3"), std::string::npos) << r.out;
}

TEST_F(GradcheckCli, FullFineTuningPassesOnEveryTensor) {
  auto r = run_peft("gradcheck --config " + config + " --method full", "full");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count(r.out, "  PASS\n"), 21u) << r.out;  // 20 parameters + the input
  EXPECT_NE(r.out.find("blocks.0.mlp.fc1.weight"), std::string::npos);
  EXPECT_NE(r.out.find("gradcheck: PASS (21 tensors)"), std::string::npos) << r.out;
}

TEST_F(GradcheckCli, ABrokenGeluBackwardFails) {
  // The MLP's fused gelu -> fc2 op (gelu_linear) with its gradients scaled by 1.01: fc1 (before
  // it) and everything upstream must fail.
  auto r = run_peft("gradcheck --config " + config + " --method full --break-op gelu_linear", "broken_full");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("gradcheck: FAIL"), std::string::npos) << r.out;
  for (const char* name : {"blocks.0.mlp.fc1.weight", "patch_embed.proj.weight", "input (images)"}) {
    size_t at = r.out.find(std::string(name) + " ");
    ASSERT_NE(at, std::string::npos) << name;
    std::string line = r.out.substr(at, r.out.find('\n', at) - at);
    EXPECT_NE(line.find("FAIL"), std::string::npos) << line;
  }
  // Tensors after it (the head) do not see its gradient and still pass.
  size_t at = r.out.find("head.weight ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_NE(r.out.substr(at, r.out.find('\n', at) - at).find("PASS"), std::string::npos);
}

TEST_F(GradcheckCli, ABrokenBackwardFailsForTheLinearProbeToo) {
  // The head is the only trainable linear: breaking "linear" must fail its tensors.
  auto head = run_peft("gradcheck --config " + config + " --method linear --no-input --break-op linear", "broken_head");
  EXPECT_EQ(head.status, 1) << head.out << head.err;
  EXPECT_EQ(count(head.out, "  FAIL\n"), 2u) << head.out;
  // gelu_linear is not on the linear probe's training tape, but the input check runs through it: the
  // per-tensor tolerance (scaled to the input's small gradients) must still catch a 1% error.
  auto input = run_peft("gradcheck --config " + config + " --method linear --break-op gelu_linear", "broken_input");
  EXPECT_EQ(input.status, 1) << input.out << input.err;
  EXPECT_EQ(count(input.out, "  FAIL\n"), 1u) << input.out;
  EXPECT_NE(input.out.find("analytic"), std::string::npos);  // the failing element is named
}

TEST_F(GradcheckCli, OptionsAreChecked) {
  auto r = run_peft("gradcheck --config " + config + " --method nope", "bad_method");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("peft: error: --method: unknown method 'nope'"), std::string::npos) << r.err;
  auto none = run_peft("gradcheck --config " + config + " --method linear --no-input --tensors 'blocks.*'", "no_match");
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.err.find("--tensors 'blocks.*'"), std::string::npos) << none.err;
  auto only = run_peft("gradcheck --config " + config + " --method full --no-input --tensors 'head.*'", "only_head");
  EXPECT_EQ(only.status, 0) << only.out << only.err;
  EXPECT_EQ(count(only.out, "  PASS\n"), 2u) << only.out;
}

TEST_F(GradcheckCli, GraphWritesTheDotOfATrainingStep) {
  std::string dot = (dir / "probe.dot").string();
  auto r = run_peft("graph --config " + config + " --method linear --no-png --out " + dot, "graph_linear");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  std::string text = testing::read_file(dot);
  EXPECT_EQ(text.rfind("digraph tape {", 0), 0u);
  // A linear probe records only the head and the loss: two ops, two trainable leaves.
  EXPECT_EQ(count(text, "shape=box"), 2u) << text;
  EXPECT_NE(text.find("head.weight"), std::string::npos);
  EXPECT_EQ(text.find("blocks.0"), std::string::npos);
  EXPECT_NE(r.out.find("2 ops, 2 trainable tensors"), std::string::npos) << r.out;

  std::string full = (dir / "full.dot").string();
  auto f = run_peft("graph --config " + config + " --method full --no-png --out " + full, "graph_full");
  ASSERT_EQ(f.status, 0) << f.out << f.err;
  std::string ft = testing::read_file(full);
  EXPECT_NE(ft.find("blocks.0.mlp.fc1.weight"), std::string::npos);
  EXPECT_NE(ft.find("label=\"gelu_linear\\n"), std::string::npos);
  EXPECT_NE(ft.find("label=\"images\\n[2, 3, 8, 8]"), std::string::npos);
  EXPECT_NE(ft.find("label=\"labels\\n[2]"), std::string::npos);  // frozen inputs are shown too
  EXPECT_GT(count(ft, "shape=box"), 20u);
  EXPECT_NE(f.out.find("20 trainable tensors"), std::string::npos) << f.out;
}

// Every vision method passes the float64 check of all its trainable tensors and the input, and a
// broken backward on its path (linear: every method has trainable linears or feeds the head)
// makes it fail.
TEST_F(GradcheckCli, EveryMethodPassesAndABrokenBackwardFails) {
  for (const char* m : {"bitfit", "vpt-shallow", "vpt-deep", "cvpt", "ssf", "lora", "adaptformer"}) {
    std::string opts = std::string(" --method ") + m + " --prompts 2 --rank 2 --bottleneck 4";
    auto ok = run_peft("gradcheck --config " + config + opts, std::string("ok_") + m);
    EXPECT_EQ(ok.status, 0) << m << "\n" << ok.out << ok.err;
    EXPECT_NE(ok.out.find("gradcheck: PASS"), std::string::npos) << m << "\n" << ok.out;
    auto bad = run_peft("gradcheck --config " + config + opts + " --break-op linear", std::string("bad_") + m);
    EXPECT_EQ(bad.status, 1) << m << "\n" << bad.out << bad.err;
    EXPECT_NE(bad.out.find("gradcheck: FAIL"), std::string::npos) << m << "\n" << bad.out;
  }
}


}  // namespace
}  // namespace peft
