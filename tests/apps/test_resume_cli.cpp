// Exact resume: a training process killed (SIGKILL) mid-epoch and restarted with --resume ends
// with weights bit-identical to an uninterrupted run with the same seed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/apps/cli_util.h"

namespace fs = std::filesystem;
using namespace peft::testing;

namespace {
const char* kConfig = R"({"image_size": 16, "patch_size": 4, "dim": 16, "depth": 2, "heads": 2, "num_classes": 6,
  "drop_path": 0.1, "dropout": 0.1})";

std::vector<std::string> train_args(const std::string& cfg, const std::string& out) {
  return {peft_binary(), "pretrain", "--config", cfg, "--data", "procedural:shapes", "--train-size", "256",
          "--epochs", "3", "--batch", "8", "--augment", "flip,shift:2", "--out", out, "--checkpoint-steps", "5",
          "--no-progress", "--threads", "1", "--seed", "3"};
}

int run_to_end(std::vector<std::string> args) {
  std::string cmd;
  for (auto& a : args) cmd += a + " ";
  cmd += ">/dev/null 2>&1";
  int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Drops the timing fields of a metrics file: they differ between runs by nature.
std::string strip_timing(const std::string& metrics) {
  std::string out;
  std::istringstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    auto cut = [&](const std::string& key) {
      auto p = line.find("\"" + key + "\":");
      if (p == std::string::npos) return;
      auto e = line.find_first_of(",}", p);
      line.erase(p, e - p + (line[e] == ',' ? 1 : 0));
    };
    cut("elapsed_s");
    cut("images_per_s");
    out += line + "\n";
  }
  return out;
}
}  // namespace

TEST(ResumeCli, KilledRunResumesToBitIdenticalWeights) {
  fs::path dir = fs::temp_directory_path() / ("peft_resume_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string cfg = (dir / "cfg.json").string();
  { std::ofstream(cfg) << kConfig; }
  std::string a = (dir / "a").string(), b = (dir / "b").string();
  ASSERT_EQ(run_to_end(train_args(cfg, a)), 0);

  // Start the same run, kill it hard as soon as its first mid-epoch checkpoint exists.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto args = train_args(cfg, b);
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    (void)!freopen("/dev/null", "w", stdout);
    (void)!freopen("/dev/null", "w", stderr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  bool killed = false;
  for (int i = 0; i < 20000; ++i) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) break;  // finished before we could kill it
    if (fs::exists(fs::path(b) / "checkpoint.safetensors")) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      killed = WIFSIGNALED(st);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(killed) << "the run ended before it could be killed";
  EXPECT_FALSE(fs::exists(fs::path(b) / "weights.safetensors"));

  auto resumed = train_args(cfg, b);
  resumed.push_back("--resume");
  ASSERT_EQ(run_to_end(resumed), 0);
  std::string wa = read_file((fs::path(a) / "weights.safetensors").string());
  std::string wb = read_file((fs::path(b) / "weights.safetensors").string());
  ASSERT_FALSE(wa.empty());
  EXPECT_TRUE(wa == wb) << "resumed weights differ from the uninterrupted run";
  EXPECT_EQ(strip_timing(read_file((fs::path(a) / "metrics.jsonl").string())),
            strip_timing(read_file((fs::path(b) / "metrics.jsonl").string())));
  fs::remove_all(dir);
}

TEST(ResumeCli, ResumeWithoutCheckpointIsAnError) {
  fs::path dir = fs::temp_directory_path() / ("peft_resume_none_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto r = run_peft("pretrain --config vit-micro --data procedural:shapes --train-size 16 --epochs 1 --out " +
                    dir.string() + " --resume --no-progress");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("peft: error: --resume: no checkpoint"), std::string::npos) << r.err;
  fs::remove_all(dir);
}
