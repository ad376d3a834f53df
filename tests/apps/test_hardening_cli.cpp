// Issue 20 ("hardening, round two"): each row runs the real `peft` binary on one hostile input and
// checks what the user sees, like tests/apps/test_bad_inputs.cpp: no signal, exactly one stderr
// line "peft: error: ..." naming the option, key, file or tensor, exit 1 (bad data) or 2 (bad
// usage), and no output file (or temp file) left behind. docs/bad-inputs.md lists every row.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/image.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/config.h"
#include "nn/safetensors.h"
#include "nn/vit.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

struct Result {
  int status = -1;
  std::string out, err;
  std::vector<std::string> err_lines() const {
    std::vector<std::string> lines;
    std::istringstream is(err);
    for (std::string l; std::getline(is, l);) lines.push_back(l);
    return lines;
  }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Single-quotes a path for the shell.
std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

class Hardening : public ::testing::Test {
 protected:
  static fs::path dir;

  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("peft_hardening_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* cls : {"cat", "dog"}) {
      fs::create_directories(dir / "folder" / cls);
      for (int i = 0; i < 4; ++i) {
        data::Image img(8, 8, 3);
        for (size_t k = 0; k < img.pixels.size(); ++k)
          img.pixels[k] = static_cast<float>((k * 7 + i + (cls[0] == 'c' ? 0 : 3)) % 11) / 10.0f;
        data::save_png(img, (dir / "folder" / cls / ("img" + std::to_string(i) + ".png")).string());
      }
    }
    write(dir / "micro.json",
          R"({"image_size": 16, "patch_size": 4, "dim": 16, "depth": 1, "heads": 2, "num_classes": 2})");
    nn::VisionTransformer micro(nn::load_vit_config((dir / "micro.json").string()), 0);
    nn::save_weights(micro, (dir / "base.safetensors").string());
    // A LoRA adapter of the micro model (rank 2), for rows that damage its metadata.
    Result r = peft(train_args("lora_run", "--method lora --rank 2"));
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }

  static void write(const fs::path& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary);
    f << bytes;
  }

  static Result peft(const std::string& args) {
    static int n = 0;
    const fs::path out = dir / ("stdout" + std::to_string(n)), err = dir / ("stderr" + std::to_string(++n));
    const std::string cmd = "'" PEFT_BINARY_DIR "/peft' " + args + " >" + q(out) + " 2>" + q(err);
    const int raw = std::system(cmd.c_str());
    Result r;
    EXPECT_TRUE(WIFEXITED(raw)) << cmd << ": killed by signal " << (WIFSIGNALED(raw) ? WTERMSIG(raw) : 0);
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 1000;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

  static void expect_error(const Result& r, int status, const std::vector<std::string>& fragments) {
    EXPECT_EQ(r.status, status) << "stderr: " << r.err;
    if (std::getenv("PEFT_SHOW_ERRORS"))  // for refreshing docs/bad-inputs.md
      std::printf("%s | exit %d | %s", ::testing::UnitTest::GetInstance()->current_test_info()->name(), r.status,
                  r.err.c_str());
    auto lines = r.err_lines();
    ASSERT_EQ(lines.size(), 1u) << "expected exactly one stderr line, got:\n" << r.err;
    EXPECT_EQ(lines[0].rfind("peft: error: ", 0), 0u) << lines[0];
    for (const auto& f : fragments) EXPECT_NE(lines[0].find(f), std::string::npos) << lines[0] << "\nlacks: " << f;
  }

  static void expect_no_output(const fs::path& out, const std::vector<std::string>& names = {"adapter.safetensors"}) {
    if (!fs::exists(out)) return;
    for (const auto& n : names) EXPECT_FALSE(fs::exists(out / n)) << (out / n);
    for (const auto& e : fs::directory_iterator(out))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "temp file left: " << e.path();
  }

  // `peft train` of the micro model; `extra` may replace the method (--method X).
  static std::string train_args(const std::string& out, const std::string& extra, const std::string& weights = "") {
    return "train --config " + q(dir / "micro.json") + " --weights " +
           q(weights.empty() ? dir / "base.safetensors" : fs::path(weights)) + " --data " + q(dir / "folder") +
           " --batch 4 --threads 1 --no-progress --out " + q(dir / out) +
           (extra.find("--method") == std::string::npos ? " --method linear" : "") +
           (extra.find("--epochs") == std::string::npos ? " --epochs 1 " : " ") + extra;
  }

  // A copy of the LoRA adapter with some metadata entries replaced.
  static fs::path adapter_with(const std::string& name, const std::map<std::string, std::string>& changes) {
    SafetensorsFile f = SafetensorsFile::open((dir / "lora_run" / "adapter.safetensors").string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : f.names()) tensors.emplace_back(n, f.get(n));
    auto md = f.metadata();
    for (const auto& [k, v] : changes) md[k] = v;
    const fs::path p = dir / name;
    save_safetensors(p.string(), tensors, md);
    return p;
  }
};
fs::path Hardening::dir;

// ---- sizes that overflow: a one-line error, not SIGSEGV (exit 2: method options are usage)
TEST_F(Hardening, HugeLoraRank) {
  Result r = peft("inspect --config " + q(dir / "micro.json") + " --method lora --rank 72057594037927937");
  expect_error(r, 2, {"--rank", "<= 65536", "72057594037927937"});
}

TEST_F(Hardening, HugeBottleneck) {
  Result r = peft("inspect --config " + q(dir / "micro.json") + " --method adaptformer --bottleneck 72057594037927937");
  expect_error(r, 2, {"--bottleneck", "<= 65536"});
}

TEST_F(Hardening, HugePrompts) {
  Result r = peft("inspect --config " + q(dir / "micro.json") + " --method vpt-deep --prompts 72057594037927937");
  expect_error(r, 2, {"--prompts", "<= 65536"});
}

TEST_F(Hardening, TrainWithARankItsReaderWouldRefuse) {
  // Exited 0 and wrote an adapter that eval then refused.
  Result r = peft(train_args("o_rank", "--method lora --rank 4611686018427387905"));
  expect_error(r, 2, {"--rank", "<= 65536"});
  expect_no_output(dir / "o_rank");
}

TEST_F(Hardening, AdapterMetadataWithAHugeRank) {
  const fs::path a = adapter_with("huge_rank.safetensors", {{"rank", "72057594037927937"}});
  for (const std::string& cmd : {"eval --data " + q(dir / "folder"), "merge --out " + q(dir / "merged_rank.safetensors")}) {
    SCOPED_TRACE(cmd);
    Result r = peft(cmd + " --config " + q(dir / "micro.json") + " --weights " + q(dir / "base.safetensors") +
                    " --adapter " + q(a) + " --threads 1");
    expect_error(r, 1, {"huge_rank.safetensors", "metadata 'rank'", "<= 65536"});
    EXPECT_EQ(r.err.find("--rank"), std::string::npos) << "names a flag the user never passed: " << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "merged_rank.safetensors"));
}

TEST_F(Hardening, AdapterMetadataNumbersThatAreNotIntegers) {
  for (const char* v : {"1e300", "8.5", "", "99999999999999999999", "nan"}) {
    SCOPED_TRACE(v);
    const fs::path a = adapter_with("bad_number.safetensors", {{"rank", v}});
    Result r = peft("eval --data " + q(dir / "folder") + " --config " + q(dir / "micro.json") + " --weights " +
                    q(dir / "base.safetensors") + " --adapter " + q(a) + " --threads 1");
    expect_error(r, 1, {"bad_number.safetensors", "metadata 'rank'"});
  }
  const fs::path a = adapter_with("nan_alpha.safetensors", {{"alpha", "nan"}});
  Result r = peft("merge --config " + q(dir / "micro.json") + " --weights " + q(dir / "base.safetensors") +
                  " --adapter " + q(a) + " --out " + q(dir / "merged_alpha.safetensors"));
  expect_error(r, 1, {"nan_alpha.safetensors", "metadata 'alpha'"});
  EXPECT_FALSE(fs::exists(dir / "merged_alpha.safetensors"));
}

TEST_F(Hardening, ClipConfigWithAHugeContextLength) {
  // Aborted with "double free or corruption" (SIGABRT).
  auto j = nlohmann::json::parse(nn::clip_config_to_json(nn::load_clip_config("clip-micro")));
  j["text"]["context_length"] = 288230376151711745;
  write(dir / "huge_clip.json", j.dump());
  Result r = peft("inspect --config " + q(dir / "huge_clip.json"));
  expect_error(r, 1, {"huge_clip.json", "text.context_length", "288230376151711745"});
}

}  // namespace
}  // namespace peft
