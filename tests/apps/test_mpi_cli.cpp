// Data-parallel `peft train` / `pretrain` under `mpirun -np 2 --oversubscribe` (issue 18):
// the same weights as one process with the same global batch, the --batch check, and a rank
// that fails on its data ending every rank with one line while the last checkpoint stays.
// Skipped in a build without MPI (PEFT_TEST_MPIEXEC comes from CMake when PEFT_HAVE_MPI).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/io/safetensors.h"
#include "tests/apps/cli_util.h"

namespace {

using namespace peft::testing;
namespace fs = std::filesystem;

const std::string kFix = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/peft/";

// Runs a shell command line, stdout and stderr captured separately.
CliResult run_peft_cmd(const std::string& cmdline, const std::string& tag) {
  fs::path dir = fs::temp_directory_path() / ("peft_mpi_cli_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / (tag + ".out")).string(), err = (dir / (tag + ".err")).string();
  const int st = std::system((cmdline + " >" + out + " 2>" + err).c_str());
  CliResult r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

#ifdef PEFT_TEST_MPIEXEC
// `mpirun -np N peft ARGS`. As root (CI) Open MPI needs both variables; libmpi's own leaks are
// not ours (ASan build); a short collective timeout keeps a failing test from waiting long.
CliResult run_mpi(int np, const std::string& args, const std::string& tag) {
  return run_peft_cmd("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 "
                      "PEFT_DIST_TIMEOUT=20 " PEFT_TEST_MPIEXEC " -np " + std::to_string(np) + " --oversubscribe " +
                          peft_binary() + " " + args,
                      tag);
}
#define REQUIRE_MPI()
#else
CliResult run_mpi(int, const std::string&, const std::string&) { return {}; }
#define REQUIRE_MPI() GTEST_SKIP() << "built without MPI (PEFT_MPI)"
#endif

int error_lines(const std::string& err) {
  int n = 0;
  for (size_t p = err.find("peft: error:"); p != std::string::npos; p = err.find("peft: error:", p + 1)) ++n;
  return n;
}

// Largest |a - b| of every tensor of two safetensors files, relative to the tensor's largest |a|.
double max_rel_diff(const std::string& pa, const std::string& pb) {
  auto a = peft::SafetensorsFile::open(pa), b = peft::SafetensorsFile::open(pb);
  EXPECT_EQ(a.names(), b.names());
  double worst = 0;
  for (auto& name : a.names()) {
    peft::Tensor ta = a.get(name), tb = b.get(name);
    const float *x = ta.data<float>(), *y = tb.data<float>();
    double mx = 1e-12, d = 0;
    for (int64_t i = 0; i < ta.numel(); ++i) {
      mx = std::max(mx, std::fabs(static_cast<double>(x[i])));
      d = std::max(d, std::fabs(static_cast<double>(x[i]) - y[i]));
    }
    worst = std::max(worst, d / mx);
  }
  return worst;
}

// SGD, not AdamW: a gradient that is zero in exact arithmetic (the key bias of attention, which
// softmax ignores) is rounding noise whose value depends on the summation order, and AdamW divides
// it by its own RMS, turning it into a full-size step. SGD keeps the noise at its size.
std::string train_args(const std::string& method, const std::string& out, const std::string& optimizer = "sgd") {
  // 40 images, global batch 8, 4 epochs: 20 updates.
  return "train --optimizer " + optimizer + " --config " + kFix + "config.json --weights " + kFix + "base.safetensors --method " + method +
         " --data procedural:shapes --train-size 40 --val procedural:shapes --val-size 12 --batch 8 --epochs 4 "
         "--lr 0.01 --threads 1 --no-progress --out " + out;
}

TEST(MpiCli, TwoRanksTrainTheSameWeightsAsOneProcess) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  for (const char* m : {"linear", "lora", "vpt-deep", "ssf", "full"}) {
    const std::string one = tmp / (std::string(m) + "_1"), two = tmp / (std::string(m) + "_2");
    CliResult r1 = run_peft(train_args(m, one), "one");
    ASSERT_EQ(r1.status, 0) << m << "\n" << r1.err;
    CliResult r2 = run_mpi(2, train_args(m, two), "two");
    ASSERT_EQ(r2.status, 0) << m << "\n" << r2.out << r2.err;
    EXPECT_NE(r2.out.find("data parallel over 2 ranks: 4 examples of every batch of 8"), std::string::npos) << r2.out;
    EXPECT_NE(r2.out.find("all-reduced per update"), std::string::npos) << r2.out;
    // Only the summation order of the gradients differs.
    EXPECT_LT(max_rel_diff(one + "/adapter-last.safetensors", two + "/adapter-last.safetensors"), 1e-6) << m;
    EXPECT_NE(read_file(two + "/summary.json").find("\"world_size\": 2"), std::string::npos);
    EXPECT_NE(read_file(two + "/metrics.jsonl").find("\"world_size\":2"), std::string::npos);
    EXPECT_NE(read_file(one + "/metrics.jsonl").find("\"world_size\":1"), std::string::npos);
    // Rank 0 alone prints: one summary table.
    EXPECT_EQ(std::count(r2.out.begin(), r2.out.end(), '\n'), std::count(r1.out.begin(), r1.out.end(), '\n') + 2)
        << r1.out << "---\n" << r2.out;
  }
}

// AdamW on methods whose trainable tensors have no gradient that is zero in exact arithmetic
// (see above): the head, LoRA's A and B, VPT-deep's prompts.
TEST(MpiCli, TwoRanksTrainTheSameWeightsAsOneProcessWithAdamW) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  for (const char* m : {"linear", "lora", "vpt-deep"}) {
    const std::string one = tmp / (std::string(m) + "_1"), two = tmp / (std::string(m) + "_2");
    CliResult r1 = run_peft(train_args(m, one, "adamw"), "one");
    ASSERT_EQ(r1.status, 0) << m << "\n" << r1.err;
    CliResult r2 = run_mpi(2, train_args(m, two, "adamw"), "two");
    ASSERT_EQ(r2.status, 0) << m << "\n" << r2.out << r2.err;
    // Each rank multiplies half the batch: float32 GEMMs over other row counts round differently
    // (oneDNN's sgemm blocks by M), a few ulps that AdamW's steps carry (measured 1.4e-6).
    EXPECT_LT(max_rel_diff(one + "/adapter-last.safetensors", two + "/adapter-last.safetensors"), 5e-6) << m;
  }
}

// clip-train data parallel: each rank its share of every batch, one allreduce per step (AdamW,
// the command's default); 16 few-shot images, batch 8, 3 epochs: 6 steps.
TEST(MpiCli, TwoRanksClipTrainTheSameAdapterAsOneProcess) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  const std::string texts = tmp / "texts.txt", fix = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/clip/";
  {
    std::ofstream t(texts);
    for (const char* c : {"red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"})
      t << "a photo of a " << c << " object\n";
  }
  for (const char* m : {"coop", "clip-adapter", "taskres"}) {
    const std::string args = "clip-train --config " + fix + "config.json --weights " + fix + "weights.safetensors --method " +
                             m + " --prompts 4 --data procedural:colors --train-size 48 --val-size 16 --shots 2 "
                             "--epochs 3 --batch 8 --threads 1 --texts " + texts + " --out ";
    const std::string one = tmp / (std::string(m) + "_1"), two = tmp / (std::string(m) + "_2");
    CliResult r1 = run_peft(args + one, "one");
    ASSERT_EQ(r1.status, 0) << m << "\n" << r1.err;
    CliResult r2 = run_mpi(2, args + two, "two");
    ASSERT_EQ(r2.status, 0) << m << "\n" << r2.out << r2.err;
    EXPECT_LT(max_rel_diff(one + "/adapter.safetensors", two + "/adapter.safetensors"), 1e-6) << m;
    EXPECT_TRUE(fs::exists(two + "/summary.json"));
  }
  // --batch must divide by the ranks here too, said once.
  CliResult r = run_mpi(2, "clip-train --config " + fix + "config.json --weights " + fix +
                               "weights.safetensors --method coop --prompts 4 --data procedural:colors --batch 7 "
                               "--texts " + texts + " --out " + (tmp / "odd"), "odd");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(error_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--batch: the global batch 7 does not divide by the 2 ranks"), std::string::npos) << r.err;
}

TEST(MpiCli, ResumeWithAnotherNumberOfRanks) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  const std::string a = tmp / "a", b = tmp / "b";
  auto args = [](const std::string& out, int epochs) {
    return "train --config " + kFix + "config.json --weights " + kFix +
           "base.safetensors --method lora --optimizer sgd --sched constant --data procedural:shapes --train-size 16 "
           "--batch 8 --epochs " + std::to_string(epochs) + " --threads 1 --no-progress --out " + out;
  };
  ASSERT_EQ(run_peft(args(a, 2), "a").status, 0);
  // Epoch 1 on two ranks, then --resume in one process.
  CliResult r = run_mpi(2, args(b, 1), "b1");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_peft(args(b, 2) + " --resume --extend", "b2");  // the constant schedule: as if run for 2 epochs
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LT(max_rel_diff(a + "/adapter-last.safetensors", b + "/adapter-last.safetensors"), 1e-6);
}

TEST(MpiCli, BatchThatDoesNotDivideByTheRanksFailsInOneLine) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  CliResult r = run_mpi(2,
                        "train --config " + kFix + "config.json --weights " + kFix +
                            "base.safetensors --method lora --data procedural:shapes --train-size 16 --batch 7 "
                            "--epochs 1 --threads 1 --no-progress --out " + (tmp / "o"),
                        "batch");
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(error_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("peft: error: --batch: the global batch 7 does not divide by the 2 ranks"), std::string::npos)
      << r.err;
}

// A 24-bit BMP of w x h pixels of one colour.
void write_bmp(const std::string& path, int w, int h, unsigned char r, unsigned char g, unsigned char b) {
  const int row = (3 * w + 3) / 4 * 4, size = 54 + row * h;
  std::string f(static_cast<size_t>(size), '\0');
  auto put32 = [&](int at, uint32_t v) {
    for (int i = 0; i < 4; ++i) f[static_cast<size_t>(at + i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  f[0] = 'B';
  f[1] = 'M';
  put32(2, static_cast<uint32_t>(size));
  put32(10, 54);
  put32(14, 40);
  put32(18, static_cast<uint32_t>(w));
  put32(22, static_cast<uint32_t>(h));
  f[26] = 1;
  f[28] = 24;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const size_t p = static_cast<size_t>(54 + y * row + 3 * x);
      f[p] = static_cast<char>(b);
      f[p + 1] = static_cast<char>(g);
      f[p + 2] = static_cast<char>(r);
    }
  std::ofstream(path, std::ios::binary) << f;
}

TEST(MpiCli, RankThatFailsOnItsDataStopsEveryRankAndKeepsTheCheckpoint) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  const std::string data = tmp / "data", out = tmp / "out";
  for (int c = 0; c < 2; ++c) {
    fs::create_directories(data + "/c" + std::to_string(c));
    for (int i = 0; i < 8; ++i)
      write_bmp(data + "/c" + std::to_string(c) + "/" + std::to_string(i) + ".bmp", 8, 8,
                static_cast<unsigned char>(200 * c), static_cast<unsigned char>(20 * i), 90);
  }
  auto args = [&](int epochs) {
    return "train --config " + kFix + "config.json --weights " + kFix + "base.safetensors --method lora --data " +
           data + " --batch 4 --epochs " + std::to_string(epochs) + " --threads 1 --no-progress --out " + out;
  };
  CliResult r = run_mpi(2, args(1), "clean");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string ckpt = read_file(out + "/checkpoint.safetensors");
  ASSERT_FALSE(ckpt.empty());
  // One image goes bad: a PNG whose header is fine (the folder's probe at open passes on every
  // rank) but whose pixels are missing, so only the rank whose shard holds it fails, in epoch 2.
  fs::remove(data + "/c1/5.bmp");
  {
    const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                 0, 0, 0, 8, 0, 0, 0, 8, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    std::ofstream(data + "/c1/5.png", std::ios::binary).write(reinterpret_cast<const char*>(png), sizeof png);
  }
  const auto t0 = std::chrono::steady_clock::now();
  r = run_mpi(2, args(2) + " --resume --extend", "fault");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.status, 0);
  EXPECT_LT(s, 20) << "the other rank waited for the collective timeout";
  EXPECT_EQ(error_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("peft: error: rank "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("5.png"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(out + "/checkpoint.safetensors"), ckpt);
}

// The table that starts at the line beginning with `header` (that line, then the following lines
// with as many fields as the first of them), without the row fields at `drop` (measured times and
// memory, which differ from run to run and with the ranks' sharing of the machine).
std::string table_of(const std::string& out, const std::string& header, std::vector<size_t> drop) {
  std::istringstream in(out);
  std::string line, table;
  bool in_table = false;
  size_t fields = 0;
  while (std::getline(in, line)) {
    if (!in_table) {
      in_table = line.rfind(header, 0) == 0;
      if (in_table) table += line + "\n";
      continue;
    }
    std::istringstream ls(line);
    std::vector<std::string> f;
    for (std::string w; ls >> w;) f.push_back(w);
    if (fields == 0) fields = f.size();
    if (f.size() != fields || fields == 0) break;
    for (size_t i = 0; i < f.size(); ++i)
      if (std::find(drop.begin(), drop.end(), i) == drop.end()) table += f[i] + " ";
    table += "\n";
  }
  return table;
}

TEST(MpiCli, SweepOverTwoRanksPrintsTheTableOfOneProcess) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  // 4 points (linear, vpt-deep M = 1, 2, 4), trained and evaluated: each rank runs two.
  const std::string args = "sweep --config " + kFix + "config.json --weights " + kFix +
                           "base.safetensors --methods vpt-deep --prompts 1,2,4 --data procedural:shapes "
                           "--train-size 24 --val-size 16 --epochs 2 --lr 0.01 --batch 4 --steps 1 --threads 1 --out ";
  CliResult r1 = run_peft(args + (tmp / "one"), "sweep1");
  ASSERT_EQ(r1.status, 0) << r1.err;
  CliResult r2 = run_mpi(2, args + (tmp / "two"), "sweep2");
  ASSERT_EQ(r2.status, 0) << r2.out << r2.err;
  const std::string t1 = table_of(r1.out, "method ", {4}), t2 = table_of(r2.out, "method ", {4});
  EXPECT_EQ(std::count(t1.begin(), t1.end(), '\n'), 5) << r1.out;  // header + 4 points
  EXPECT_EQ(t1, t2) << r1.out << "---\n" << r2.out;
  // Rank 0 alone prints the table and writes the files.
  EXPECT_EQ(r2.out.find("sweep: "), r2.out.rfind("sweep: ")) << r2.out;
  EXPECT_TRUE(fs::exists(tmp / "two/sweep.csv"));
}

TEST(MpiCli, DemoMethodLoopOverTwoRanksPrintsTheTableOfOneProcess) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  CliResult r1 = run_peft("demo --quick --threads 1 --out " + (tmp / "one"), "demo1");
  ASSERT_EQ(r1.status, 0) << r1.err;
  CliResult r2 = run_mpi(2, "demo --quick --threads 1 --out " + (tmp / "two"), "demo2");
  ASSERT_EQ(r2.status, 0) << r2.out << r2.err;
  // Every column but the train time and the peak memory.
  const std::string t1 = table_of(r1.out, "method ", {5, 6}), t2 = table_of(r2.out, "method ", {5, 6});
  EXPECT_GT(std::count(t1.begin(), t1.end(), '\n'), 10) << r1.out;
  EXPECT_EQ(t1, t2) << r1.out << "---\n" << r2.out;
  EXPECT_TRUE(fs::exists(tmp / "two/demo.json"));
  EXPECT_EQ(r2.out.find("results: "), r2.out.rfind("results: ")) << r2.out;
}

// An error every rank hits alike is printed once, as one process prints it (no rank named): at
// start (a missing weights file) and mid-run (the global batch's loss became NaN on every rank).
TEST(MpiCli, ErrorCommonToAllRanksIsPrintedOnce) {
  REQUIRE_MPI();
  TempDir tmp("peft_mpi");
  const std::string base = "train --config " + kFix + "config.json --method lora --data procedural:shapes "
                           "--train-size 16 --batch 8 --epochs 2 --threads 1 --no-progress ";
  const auto t0 = std::chrono::steady_clock::now();
  CliResult r = run_mpi(2, base + "--weights " + (tmp / "missing.safetensors") + " --out " + (tmp / "a"), "missing");
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(error_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("missing.safetensors"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("rank "), std::string::npos) << r.err;
  CliResult one = run_peft(base + "--weights " + kFix + "base.safetensors --optimizer sgd --lr 1e30 --out " + (tmp / "b1"), "nan1");
  ASSERT_NE(one.status, 0);
  r = run_mpi(2, base + "--weights " + kFix + "base.safetensors --optimizer sgd --lr 1e30 --out " + (tmp / "b2"), "nan2");
  EXPECT_EQ(r.status, one.status);
  EXPECT_EQ(error_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("the loss became"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("rank "), std::string::npos) << r.err;
  // Agreed at once, not after the 10 s a rank waits for the others' word.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15);
}

}  // namespace
