// Issue 20 ("hardening, round two"): each row runs the real `peft` binary on one hostile input and
// checks what the user sees, like tests/apps/test_bad_inputs.cpp: no signal, exactly one stderr
// line "peft: error: ..." naming the option, key, file or tensor, exit 1 (bad data) or 2 (bad
// usage), and no output file (or temp file) left behind. docs/bad-inputs.md lists every row.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/tensor.h"
#include "data/image.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/config.h"
#include "core/io/safetensors.h"
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
std::string q(const fs::path& p) {
  std::string s = "'";
  s += p.string();
  s += '\'';
  return s;
}

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
    // The same weights with one NaN in a block's qkv weight.
    {
      SafetensorsFile f = SafetensorsFile::open((dir / "base.safetensors").string());
      std::vector<std::pair<std::string, Tensor>> tensors;
      for (const auto& n : f.names()) {
        Tensor t = f.get(n);
        if (n == "blocks.0.attn.qkv.weight") t.data<float>()[5] = NAN;
        tensors.emplace_back(n, t);
      }
      save_safetensors((dir / "nan_base.safetensors").string(), tensors, f.metadata());
    }
    // A tiny CLIP (random weights) and one prompt per procedural:shapes class.
    nn::CLIP clip(nn::load_clip_config("clip-micro"), 0);
    nn::save_weights(clip, (dir / "clip.safetensors").string());
    write(dir / "prompts.txt", "a photo of a circle\na photo of a square\na triangle\na cross\na ring\na diamond\n");
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

// ---- non-finite values: caught where they enter, nothing written
TEST_F(Hardening, NaNInTheBaseWeights) {
  // One NaN weight trained to a finite loss (the attention softmax zeroed the NaN rows).
  Result r = peft(train_args("o_nan_base", "", (dir / "nan_base.safetensors").string()));
  expect_error(r, 1, {"nan_base.safetensors", "blocks.0.attn.qkv.weight", "1 NaN/Inf value"});
  expect_no_output(dir / "o_nan_base");
}

TEST_F(Hardening, MergeAlphaNaN) {
  Result r = peft("merge --config " + q(dir / "micro.json") + " --weights " + q(dir / "base.safetensors") +
                  " --adapter " + q(dir / "lora_run" / "adapter.safetensors") + " --alpha nan --out " +
                  q(dir / "merged_nan.safetensors"));
  expect_error(r, 2, {"--alpha", "finite"});
  EXPECT_FALSE(fs::exists(dir / "merged_nan.safetensors"));
}

TEST_F(Hardening, ClipTrainNonFiniteHyperParameters) {
  const std::string base = "clip-train --config clip-micro --weights " + q(dir / "clip.safetensors") +
                           " --data procedural:shapes --train-size 24 --shots 2 --threads 1 --texts " +
                           q(dir / "prompts.txt") + " --out " + q(dir / "o_clip");
  struct Row {
    std::string extra;
    std::vector<std::string> fragments;
  };
  const std::vector<Row> rows = {
      {"--epochs 3 --method tip-adapter-f --beta nan", {"--beta", "finite", "nan"}},
      {"--epochs 3 --method taskres --alpha inf", {"--alpha", "finite", "inf"}},
      // exited 0 with an all-NaN adapter
      {"--epochs 3 --method clip-adapter --lr 1e30", {"clip-adapter", "loss became", "--lr"}},
      {"--method tip-adapter-f --lr 1e10 --epochs 20", {"tip-adapter-f", "loss became", "--lr"}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.extra);
    Result r = peft(base + " " + row.extra);
    expect_error(r, 1, row.fragments);
    expect_no_output(dir / "o_clip", {"adapter.safetensors", "summary.json"});
  }
}

// A fresh clip-train into a folder that holds an earlier clip-train run replaced its adapter
// silently; now it refuses unless --overwrite (clip-train has no --resume: the hint does not
// offer one), and the earlier run's files stay as they were.
TEST_F(Hardening, ClipTrainIntoAFolderWithAnEarlierRun) {
  const std::string base = "clip-train --config clip-micro --weights " + q(dir / "clip.safetensors") +
                           " --data procedural:shapes --train-size 24 --shots 2 --epochs 1 --threads 1 --texts " +
                           q(dir / "prompts.txt") + " --method taskres --out " + q(dir / "o_clip_again");
  Result r = peft(base);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string adapter = slurp(dir / "o_clip_again" / "adapter.safetensors");
  r = peft(base + " --seed 3");
  expect_error(r, 1, {"--out", "o_clip_again", "holds another run (adapter.safetensors, summary.json)", "--overwrite"});
  EXPECT_EQ(r.err.find("--resume"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(dir / "o_clip_again" / "adapter.safetensors"), adapter);
  r = peft(base + " --seed 3 --overwrite");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(slurp(dir / "o_clip_again" / "adapter.safetensors"), adapter);
}

// A CLIP config whose text tower cannot fit (width 2^20 is within the config's bounds: 10^13
// parameters) allocated until the kernel killed the process; the memory guard now refuses it
// before anything is built, for every CLIP command.
TEST_F(Hardening, ClipConfigTooLargeForMemory) {
  nn::CLIPConfig c = nn::load_clip_config("clip-micro");
  c.text.width = int64_t{1} << 20;
  c.text.heads = 1;
  write(dir / "huge_clip.json", nn::clip_config_to_json(c));
  Result r = peft("inspect --config " + q(dir / "huge_clip.json"));
  expect_error(r, 1, {"memory: config '", "huge_clip.json", "for its parameters alone", "use a smaller config"});
  r = peft("clip-train --config " + q(dir / "huge_clip.json") + " --weights " + q(dir / "clip.safetensors") +
           " --data procedural:shapes --train-size 24 --epochs 1 " +
           "--threads 1 --texts " + q(dir / "prompts.txt") + " --method coop --out " + q(dir / "o_huge_clip"));
  expect_error(r, 1, {"memory: config '", "huge_clip.json"});
  expect_no_output(dir / "o_huge_clip", {"adapter.safetensors", "summary.json"});
}

// ---- output safety
TEST_F(Hardening, MergeOutIsAnInput) {
  const fs::path adapter = dir / "lora_run" / "adapter.safetensors";
  const std::string before = slurp(adapter), base = slurp(dir / "base.safetensors");
  for (const auto& [out, flag] : std::vector<std::pair<fs::path, std::string>>{
           {adapter, "--adapter"}, {dir / "base.safetensors", "--weights"}, {dir / "micro.safetensors", "--config"}}) {
    SCOPED_TRACE(out.string());  // micro.safetensors: its config micro.json would replace --config
    Result r = peft("merge --config " + q(dir / "micro.json") + " --weights " + q(dir / "base.safetensors") +
                    " --adapter " + q(adapter) + " --out " + q(out));
    expect_error(r, 2, {"--out", flag});
  }
  // Through another spelling of the same path.
  Result r = peft("merge --config " + q(dir / "micro.json") + " --weights " + q(dir / "base.safetensors") + " --adapter " +
                  q(adapter) + " --out " + q(dir / "lora_run" / ".." / "lora_run" / "adapter.safetensors"));
  expect_error(r, 2, {"--out", "--adapter"});
  EXPECT_EQ(slurp(adapter), before);
  EXPECT_EQ(slurp(dir / "base.safetensors"), base);
  EXPECT_FALSE(fs::exists(dir / "micro.safetensors"));
}

TEST_F(Hardening, SecondRunIntoTheSameOutFails) {
  // This test holds the folder's lock, as a first run would while it trains.
  const fs::path out = dir / "o_locked";
  fs::create_directories(out);
  const int fd = ::open((out / ".peft.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  Result r = peft(train_args("o_locked", ""));
  expect_error(r, 1, {"o_locked", "another peft run", "--out"});
  expect_no_output(out);
  ::close(fd);  // released: the next run goes ahead
  Result ok = peft(train_args("o_locked", ""));
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(fs::exists(out / "adapter.safetensors"));
}

TEST_F(Hardening, OutThatHoldsAnInput) {
  const fs::path out = dir / "o_holds";
  fs::create_directories(out);
  fs::copy(dir / "folder", out / "data", fs::copy_options::recursive);
  Result r = peft("train --config " + q(dir / "micro.json") + " --weights " + q(dir / "base.safetensors") + " --data " +
                  q(out / "data") + " --method linear --epochs 1 --batch 4 --threads 1 --no-progress --out " + q(out));
  expect_error(r, 1, {"--out", "contains the --data input"});
  expect_no_output(out);
}

TEST_F(Hardening, TempFilesOfDeadRunsAreRemoved) {
  const fs::path out = dir / "o_stale";
  fs::create_directories(out);
  const pid_t child = ::fork();  // a pid that is certainly dead once reaped
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  const fs::path stale = out / ("adapter.safetensors.tmp." + std::to_string(child));
  const fs::path live = out / ("notes.tmp." + std::to_string(::getpid()));  // this process is alive
  write(stale, "half a file");
  write(live, "kept");
  Result r = peft(train_args("o_stale", ""));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
}

// ---- messages: one line always, numbers exact
TEST_F(Hardening, ControlCharactersInArgumentsAreEscaped) {
  // A newline gave two "peft: error:" lines; ESC reached the terminal raw.
  Result r = peft(train_args("o_ctl", "--method 'lo\nra'"));  // a real newline inside the shell quotes
  expect_error(r, 2, {"unknown method 'lo\\nra'"});
  r = peft(train_args("o_ctl", "", (dir / "no\x1b[31mpe.safetensors").string()));
  expect_error(r, 1, {"no\\x1b[31mpe.safetensors"});
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
  r = peft("'tr\nain'");
  expect_error(r, 2, {"unknown command 'tr\\nain'"});
  expect_no_output(dir / "o_ctl");
}

TEST_F(Hardening, EmptyAndOverflowingNumbers) {
  struct Row {
    std::string extra;
    std::vector<std::string> fragments;
  };
  const std::vector<Row> rows = {
      {"--epochs ''", {"--epochs", "empty value"}},                                   // was taken as 0
      {"--epochs 99999999999999999999", {"--epochs", "out of range", "99999999999999999999"}},  // was clamped
      {"--batch -99999999999999999999", {"--batch", "out of range"}},
      {"--seed 18446744073709551616", {"--seed", "out of range"}},
      {"--seed -1", {"--seed", "negative"}},
      {"--lr 1e400", {"--lr", "out of range"}},
      {"--lr ' '", {"--lr", "empty value"}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.extra);
    Result r = peft(train_args("o_num", row.extra));
    expect_error(r, 2, row.fragments);
    expect_no_output(dir / "o_num");
  }
}

// ---- resume
TEST_F(Hardening, ResumeWithAnotherRankNamesTheFileAndTensor) {
  // Said "copy_: source [8, 64] ..." without a file name. The run's recorded settings name the
  // option first (exit 2); a checkpoint without them (written before they were recorded) still
  // names the file and the tensor.
  Result first = peft(train_args("o_resume", "--method lora --rank 2 --epochs 2"));
  ASSERT_EQ(first.status, 0) << first.err;
  const fs::path ckpt_path = dir / "o_resume" / "checkpoint.safetensors";
  Result r = peft(train_args("o_resume", "--method lora --rank 4 --epochs 2 --resume"));
  expect_error(r, 2, {"--resume", "--rank", "has 2", "gives 4"});
  {
    SafetensorsFile f = SafetensorsFile::open(ckpt_path.string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : f.names())
      tensors.emplace_back(n, f.get(n, f.info(n).dtype == "F64" ? DType::f64 : DType::f32));
    auto md = f.metadata();
    md.erase("run");
    save_safetensors(ckpt_path.string(), tensors, md);
  }
  const std::string ckpt = slurp(ckpt_path);
  r = peft(train_args("o_resume", "--method lora --rank 4 --epochs 2 --resume"));
  expect_error(r, 1, {"--resume", "checkpoint.safetensors", "lora_A", "[2, 16]", "[4, 16]", "method options"});
  EXPECT_EQ(slurp(ckpt_path), ckpt);
}

// ---- bounded work
TEST_F(Hardening, ThreadsAreCappedAtTheCoreCount) {
  // --threads 9999 started 8,000 threads and did not finish in 100 s.
  Result r = peft("inspect --config " + q(dir / "micro.json") + " --threads 100000");
  EXPECT_EQ(r.status, 0) << r.err;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_NE(r.err.find("peft: warning: --threads 100000 is more than the " + std::to_string(cores) + " cores"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
}


TEST_F(Hardening, ConfigsAndTextFilesThatAreNotRegularFiles) {
  // --config /dev/zero read forever; a FIFO without a writer hung.
  const fs::path fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  Result r = peft("inspect --config /dev/zero");
  expect_error(r, 1, {"config '/dev/zero' is a character device, not a regular file"});
  r = peft("inspect --config " + q(fifo));
  expect_error(r, 1, {"fifo' is a FIFO (named pipe), not a regular file"});
  r = peft("clip-train --config clip-micro --weights " + q(dir / "clip.safetensors") +
           " --method coop --data procedural:shapes --train-size 24 --epochs 1 --threads 1 --texts " + q(fifo) +
           " --out " + q(dir / "o_fifo"));
  expect_error(r, 1, {"prompt file (--texts)", "FIFO"});
  // A config larger than any real one is refused before it is read.
  {
    std::ofstream f(dir / "big.json", std::ios::binary);
    f << "{\"image_size\": 16" << std::string((16 << 20) + 1, ' ') << "}";
  }
  r = peft("inspect --config " + q(dir / "big.json"));
  expect_error(r, 1, {"big.json", "bytes, more than the 16.0 MiB"});
}

TEST_F(Hardening, HugeImageInAFolderHasItsOwnMessage) {
  // A 20000 x 20000 PNG said "corrupt or wrong format", like a file that is not an image.
  const fs::path data = dir / "huge_folder";
  fs::copy(dir / "folder", data, fs::copy_options::recursive);
  std::string png = "\x89PNG\r\n\x1a\n";
  for (uint32_t v : {13u}) for (int i = 3; i >= 0; --i) png.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  png += "IHDR";
  for (uint32_t v : {20000u, 20000u})
    for (int i = 3; i >= 0; --i) png.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  png += std::string("\x08\x02\x00\x00\x00\x00\x00\x00\x00", 9);
  write(data / "cat" / "huge.png", png);
  Result r = peft("train --config " + q(dir / "micro.json") + " --weights " + q(dir / "base.safetensors") +
           " --method linear --epochs 1 --batch 4 --threads 1 --no-progress --data " + q(data) + " --out " +
           q(dir / "o_huge_img"));
  expect_error(r, 1, {"huge.png", "image too large: 20000 x 20000"});
  EXPECT_EQ(r.err.find("corrupt"), std::string::npos) << r.err;
}

TEST_F(Hardening, ValFolderIsScoredByClassName) {
  // A --val folder with other class names was scored by position.
  const fs::path val = dir / "val_renamed";
  fs::create_directories(val);
  fs::copy(dir / "folder" / "dog", val / "dog", fs::copy_options::recursive);  // a subset: fine, by name
  Result ok = peft(train_args("o_val_subset", "--val " + q(val)));
  EXPECT_EQ(ok.status, 0) << ok.err;
  fs::copy(dir / "folder" / "cat", val / "kitten", fs::copy_options::recursive);
  Result r = peft(train_args("o_val", "--val " + q(val)));
  expect_error(r, 1, {"--val", "class kitten is not among the model's 2 classes (cat, dog)"});
  expect_no_output(dir / "o_val");
}


TEST_F(Hardening, AConfigTooLargeForMemoryIsRefusedBeforeBuilding) {
  // Allocated for 40 s before failing: now the memory guard sizes the model from its config first.
  write(dir / "giant.json", R"({"image_size": 224, "patch_size": 16, "dim": 16384, "depth": 512, "heads": 16})");
  for (const std::string& cmd : std::vector<std::string>{"inspect", "eval --data " + q(dir / "folder")}) {
    SCOPED_TRACE(cmd);
    Result r = peft(cmd + " --config " + q(dir / "giant.json") + " --threads 1");
    expect_error(r, 1, {"memory: config", "giant.json", "for its parameters alone", "is available"});
  }
}

}  // namespace
}  // namespace peft
