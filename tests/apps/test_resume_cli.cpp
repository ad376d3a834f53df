// Exact resume: a training process killed (SIGKILL) mid-epoch and restarted with --resume ends
// with weights bit-identical to an uninterrupted run with the same seed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/io/safetensors.h"
#include "core/tensor.h"
#include "tests/apps/cli_util.h"

namespace fs = std::filesystem;
using namespace peft::testing;
using peft::SafetensorsFile;
using peft::Tensor;

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

// ---- --resume checks the run's recorded settings (issue 20) and --epochs / --extend (issue 19)
namespace {

// One stderr line "peft: error: ..." with every fragment, and the exit status.
void expect_one_line_error(const CliResult& r, int status, const std::vector<std::string>& fragments) {
  EXPECT_EQ(r.status, status) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("peft: error: ", 0), 0u) << r.err;
  for (const auto& f : fragments) EXPECT_NE(r.err.find(f), std::string::npos) << r.err << "\nlacks: " << f;
}

// Every file of a folder with a hash of its bytes (the lock file holds the last pid: left out).
std::map<std::string, size_t> snapshot(const fs::path& dir) {
  std::map<std::string, size_t> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != ".peft.lock")
      files[e.path().filename().string()] = std::hash<std::string>{}(read_file(e.path().string()));
  return files;
}

// A finished 2-epoch LoRA run of a micro ViT on procedural shapes, in tmp/run; tmp/base.safetensors
// holds its base weights (from a 1-epoch pretrain).
struct SmallRun {
  TempDir tmp{"peft_resume_check"};
  std::string base = tmp / "base", run = tmp / "run";
  // The run's command with `extra` (which may replace --batch or --data).
  std::string args(const std::string& extra, const std::string& weights = "") const {
    return "train --weights " + (weights.empty() ? base + "/weights.safetensors" : weights) + " --method lora" +
           (extra.find("--data") == std::string::npos ? " --data procedural:shapes" : "") +
           (extra.find("--batch") == std::string::npos ? " --batch 8" : "") +
           " --train-size 24 --threads 1 --no-progress --out " + run + " " + extra;
  }
  SmallRun() {
    CliResult p = run_peft("pretrain --config vit-micro --data procedural:shapes --train-size 16 --epochs 1 --batch 8 "
                           "--threads 1 --no-progress --out " + base);
    EXPECT_EQ(p.status, 0) << p.err;
    CliResult r = run_peft(args("--rank 2 --epochs 2"));
    EXPECT_EQ(r.status, 0) << r.err;
  }
};

}  // namespace

TEST(ResumeCli, OtherSettingsAreRefusedNamingTheSettingAndBothValues) {
  SmallRun s;
  const auto before = snapshot(s.run);
  struct Row {
    std::string extra;
    std::vector<std::string> fragments;
  };
  const std::vector<Row> rows = {
      {"--rank 4", {"--rank", "has 2", "gives 4"}},
      {"--rank 2 --seed 7", {"--seed", "has 0", "gives 7"}},
      {"--rank 2 --batch 4", {"--batch", "has 8", "gives 4"}},
      {"--rank 2 --lr 0.01", {"--lr", "has 0.001", "gives 0.01"}},
      {"--rank 2 --optimizer sgd", {"--optimizer", "has adamw", "gives sgd"}},
      {"--rank 2 --shots 2", {"--data images", "has 24", "gives 12"}},
      {"--rank 2 --data procedural:colors", {"--data", "procedural:shapes", "procedural:colors"}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.extra);
    expect_one_line_error(run_peft(s.args(row.extra + " --epochs 2 --resume")), 2, row.fragments);
  }
  // Base weights of the same shapes but other values: the file's hash differs.
  fs::create_directories(s.tmp / "other");
  fs::copy_file(s.base + "/model.json", s.tmp / "other/model.json");  // the same config beside them
  std::string other = s.tmp / "other/weights.safetensors";
  {
    std::string bytes = read_file(s.base + "/weights.safetensors");
    bytes[bytes.size() - 3] ^= 0x40;
    std::ofstream(other, std::ios::binary) << bytes;
  }
  expect_one_line_error(run_peft(s.args("--rank 2 --epochs 2 --resume", other)), 2, {"--weights", "hash"});
  EXPECT_EQ(snapshot(s.run), before);  // nothing written by any of them
}

TEST(ResumeCli, AFinishedRunSaysSoAndChangesNothing) {
  SmallRun s;
  const auto before = snapshot(s.run);
  for (const char* epochs : {"2", "1"}) {  // fewer epochs than the finished run: also nothing to do
    CliResult r = run_peft(s.args(std::string("--rank 2 --resume --epochs ") + epochs));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("the run is finished (2 epochs"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("nothing changed"), std::string::npos) << r.out;
    EXPECT_EQ(snapshot(s.run), before);
  }
}

TEST(ResumeCli, MoreEpochsContinueOnlyWithExtend) {
  SmallRun s;
  const auto before = snapshot(s.run);
  fs::copy_file(s.run + "/metrics.jsonl", s.tmp / "metrics_before.jsonl");
  expect_one_line_error(run_peft(s.args("--rank 2 --epochs 4 --resume")), 2,
                        {"--epochs 4", "finished its 2 epochs", "--extend", "epochs 3..4"});
  EXPECT_EQ(snapshot(s.run), before);
  CliResult r = run_peft(s.args("--rank 2 --epochs 4 --resume --extend"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("extending the run in " + s.run + " from 2 to 4 epochs: the cosine schedule is recomputed for 4 "
                       "epochs and continues at epoch 3"),
            std::string::npos)
      << r.out;
  // Epochs 1-2 stay as they were; 3 and 4 follow with the 4-epoch cosine: 3 batches per epoch,
  // updates 6..8 of 12, so epoch 3 ends at lr 1e-3 * (1 + cos(pi * 8 / 12)) / 2.
  std::istringstream rows(read_file(s.run + "/metrics.jsonl"));
  std::vector<nlohmann::json> j;
  for (std::string line; std::getline(rows, line);) j.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(j.size(), 4u);
  const std::string old_metrics = read_file(s.tmp / "metrics_before.jsonl");
  std::istringstream old_rows(old_metrics);
  for (int e = 0; e < 2; ++e) {
    std::string line;
    std::getline(old_rows, line);
    EXPECT_EQ(j[e], nlohmann::json::parse(line));
  }
  EXPECT_NEAR(j[2]["lr"].get<double>(), 1e-3 * (1 + std::cos(M_PI * 8 / 12)) / 2, 1e-9);
  // Now the run is a 4-epoch run: --extend to fewer epochs is refused, 4 is finished.
  expect_one_line_error(run_peft(s.args("--rank 2 --epochs 3 --resume --extend")), 2, {"--extend", "not more than the 4"});
  EXPECT_NE(run_peft(s.args("--rank 2 --epochs 4 --resume")).out.find("finished (4 epochs"), std::string::npos);
}

TEST(ResumeCli, AnUnfinishedRunKeepsItsEpochsUnlessExtended) {
  SmallRun s;
  // The finished 2-epoch run's checkpoint moved back to the end of epoch 1 (its settings kept):
  // a run that stopped there.
  {
    const std::string ckpt = s.run + "/checkpoint.safetensors";
    SafetensorsFile f = SafetensorsFile::open(ckpt);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : f.names())
      tensors.emplace_back(n, n == "progress" ? peft::from_vector_i64({1, 0}, {2})
                                              : f.get(n, f.info(n).dtype == "F64" ? peft::DType::f64 : peft::DType::f32));
    save_safetensors(ckpt, tensors, f.metadata());
  }
  expect_one_line_error(run_peft(s.args("--rank 2 --resume --epochs 3")), 2,
                        {"--epochs 3", "started with --epochs 2", "--extend"});
  expect_one_line_error(run_peft(s.args("--rank 2 --resume --epochs 1")), 2, {"--epochs 1", "started with --epochs 2"});
  expect_one_line_error(run_peft(s.args("--rank 2 --resume --epochs 1 --extend")), 2, {"--extend", "not more than the 2"});
  CliResult r = run_peft(s.args("--rank 2 --resume --epochs 2"));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("epoch 2/2"), std::string::npos) << r.out;
}

TEST(ResumeCli, AFreshRunIntoAnotherRunsFolderNeedsOverwrite) {
  SmallRun s;
  // The old run also kept a per-epoch adapter, and the folder holds a file of the user's.
  ASSERT_EQ(run_peft(s.args("--rank 2 --epochs 2 --save-every 1 --overwrite")).status, 0);
  ASSERT_TRUE(fs::exists(s.run + "/adapter-epoch1.safetensors"));
  std::ofstream(s.run + "/notes.txt") << "mine";
  const auto before = snapshot(s.run);
  expect_one_line_error(run_peft(s.args("--rank 2 --epochs 1")), 1,
                        {"--out", "holds another run", "checkpoint.safetensors", "--overwrite", "--resume"});
  EXPECT_EQ(snapshot(s.run), before);
  CliResult r = run_peft(s.args("--rank 2 --epochs 1 --overwrite"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(fs::exists(s.run + "/adapter-epoch1.safetensors"));  // no file of the old run is left
  EXPECT_FALSE(fs::exists(s.run + "/adapter-epoch2.safetensors"));
  EXPECT_EQ(read_file(s.run + "/notes.txt"), "mine");
  std::istringstream rows(read_file(s.run + "/metrics.jsonl"));
  int n = 0;
  for (std::string line; std::getline(rows, line);) ++n;
  EXPECT_EQ(n, 1);
}
