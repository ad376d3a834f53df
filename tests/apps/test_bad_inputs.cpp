// The bad-input table (docs/bad-inputs.md): each row runs the real `peft` binary on one bad input
// and checks what the user sees: exactly one stderr line "peft: error: ..." naming the file,
// tensor or option and the problem, exit status 1 (bad data/files/values) or 2 (bad usage), no
// signal, and no output file (or temp file) left behind.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data/image.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/vit.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

struct Result {
  int status = -1;  // exit status (a signal makes the test fail before this is looked at)
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

// Fixtures shared by every row: a small ImageFolder, micro base weights, configs, bad files.
class BadInputs : public ::testing::Test {
 protected:
  static fs::path dir;

  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("peft_bad_inputs_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    // Two classes of four 8x8 images each.
    for (const char* cls : {"cat", "dog"}) {
      fs::create_directories(dir / "folder" / cls);
      for (int i = 0; i < 4; ++i) {
        data::Image img(8, 8, 3);
        for (size_t k = 0; k < img.pixels.size(); ++k) img.pixels[k] = static_cast<float>((k * 7 + i) % 11) / 10.0f;
        data::save_png(img, (dir / "folder" / cls / ("img" + std::to_string(i) + ".png")).string());
      }
    }
    // Base weights for a micro model (16 px, 2 blocks) and weights of a wider model.
    write(dir / "micro.json",
          R"({"image_size": 16, "patch_size": 4, "dim": 16, "depth": 1, "heads": 2, "num_classes": 2})");
    write(dir / "wide.json",
          R"({"image_size": 16, "patch_size": 4, "dim": 24, "depth": 1, "heads": 2, "num_classes": 2})");
    nn::VisionTransformer micro(nn::load_vit_config((dir / "micro.json").string()), 0);
    nn::save_weights(micro, (dir / "base.safetensors").string());
    nn::VisionTransformer wide(nn::load_vit_config((dir / "wide.json").string()), 0);
    nn::save_weights(wide, (dir / "wide.safetensors").string());
    // A truncated copy of the base weights: the header promises more bytes than there are.
    std::string w = slurp(dir / "base.safetensors");
    write(dir / "truncated.safetensors", w.substr(0, w.size() / 2));
    // A lying file: the header says [2, 3] F32 (24 bytes) but gives the tensor 40 bytes.
    std::string hdr = R"({"patch_embed.proj.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 40]}})";
    std::string lie(8, '\0');
    for (int i = 0; i < 8; ++i) lie[i] = static_cast<char>((hdr.size() >> (8 * i)) & 0xff);
    write(dir / "lying.safetensors", lie + hdr + std::string(40, '\1'));
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }

  static void write(const fs::path& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary);
    f << bytes;
  }

  // Copies the good ImageFolder to a fresh folder for a row to damage.
  static fs::path folder_copy(const std::string& name) {
    fs::path d = dir / name;
    fs::remove_all(d);
    fs::copy(dir / "folder", d, fs::copy_options::recursive);
    return d;
  }

  // Runs `peft ARGS` (a shell word list) with stdout and stderr captured.
  static Result peft(const std::string& args) {
    static int n = 0;
    const fs::path out = dir / ("stdout" + std::to_string(n)), err = dir / ("stderr" + std::to_string(++n));
    const std::string cmd = "'" PEFT_BINARY_DIR "/peft' " + args + " >'" + out.string() + "' 2>'" + err.string() + "'";
    const int raw = std::system(cmd.c_str());
    Result r;
    EXPECT_TRUE(WIFEXITED(raw)) << cmd << ": killed by a signal";
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 1000;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

  // The common contract of every row.
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

  // No output file and no temp file in an --out folder after a failed run.
  static void expect_no_output(const fs::path& out, const std::vector<std::string>& names = {"adapter.safetensors"}) {
    if (!fs::exists(out)) return;
    for (const auto& n : names) EXPECT_FALSE(fs::exists(out / n)) << (out / n);
    for (const auto& e : fs::directory_iterator(out))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "temp file left: " << e.path();
  }

  // `peft train` of the micro model with a few overridable parts.
  static std::string train_args(const std::string& out, const std::string& extra, const std::string& weights = "",
                                const std::string& data = "") {
    return "train --config '" + (dir / "micro.json").string() + "' --weights '" +
           (weights.empty() ? (dir / "base.safetensors").string() : weights) + "' --method linear --data '" +
           (data.empty() ? (dir / "folder").string() : data) + "' --batch 4 --threads 1 --no-progress --out '" + (dir / out).string() + "' " +
           (extra.find("--epochs") == std::string::npos ? "--epochs 1 " : "") + extra;
  }
};
fs::path BadInputs::dir;

// Sanity: the fixtures are good, so every failure below is caused by the one bad input.
TEST_F(BadInputs, GoodRunSucceeds) {
  Result r = peft(train_args("good", ""));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir / "good" / "adapter.safetensors"));
}

// ---- missing files
TEST_F(BadInputs, MissingWeights) {
  Result r = peft(train_args("o_missing_w", "", (dir / "nope.safetensors").string()));
  expect_error(r, 1, {"nope.safetensors", "cannot open", "No such file"});
  expect_no_output(dir / "o_missing_w");
}

TEST_F(BadInputs, MissingConfig) {
  Result r = peft("train --config '" + (dir / "nope.json").string() + "' --weights '" +
                  (dir / "base.safetensors").string() + "' --method linear --data '" + (dir / "folder").string() +
                  "' --epochs 1 --out '" + (dir / "o_missing_c").string() + "'");
  expect_error(r, 1, {"nope.json"});
  expect_no_output(dir / "o_missing_c");
}

TEST_F(BadInputs, MissingDataFolder) {
  Result r = peft(train_args("o_missing_d", "", "", (dir / "no_such_folder").string()));
  expect_error(r, 1, {"no_such_folder", "is not a folder (missing)"});
  expect_no_output(dir / "o_missing_d");
}

// ---- broken safetensors
TEST_F(BadInputs, TruncatedSafetensors) {
  Result r = peft(train_args("o_trunc", "", (dir / "truncated.safetensors").string()));
  expect_error(r, 1, {"truncated.safetensors"});
  expect_no_output(dir / "o_trunc");
}

TEST_F(BadInputs, LyingSafetensors) {
  Result r = peft(train_args("o_lie", "", (dir / "lying.safetensors").string()));
  expect_error(r, 1, {"lying.safetensors", "patch_embed.proj.weight"});
  expect_no_output(dir / "o_lie");
}

TEST_F(BadInputs, WeightsOfAnotherConfig) {
  Result r = peft(train_args("o_shape", "", (dir / "wide.safetensors").string()));
  expect_error(r, 1, {"wide.safetensors", "[1, 1, 24]", "[1, 1, 16]"});
  expect_no_output(dir / "o_shape");
}

// ---- bad usage (exit 2)
TEST_F(BadInputs, UnknownMethod) {
  std::string args = train_args("o_method", "");
  args.replace(args.find("--method linear"), 15, "--method bogus");
  Result r = peft(args);
  expect_error(r, 2, {"--method", "unknown method 'bogus'", "linear"});
  expect_no_output(dir / "o_method");
}

TEST_F(BadInputs, UnknownOption) {
  Result r = peft(train_args("o_opt", "--bogus-flag 3"));
  expect_error(r, 2, {"--bogus-flag"});
  expect_no_output(dir / "o_opt");
}

TEST_F(BadInputs, MissingRequiredOption) {
  Result r = peft("train --config '" + (dir / "micro.json").string() + "' --method linear --data '" +
                  (dir / "folder").string() + "' --epochs 1 --out '" + (dir / "o_req").string() + "'");
  expect_error(r, 2, {"--weights", "required"});
  expect_no_output(dir / "o_req");
}

TEST_F(BadInputs, UnknownCommand) {
  Result r = peft("trian --epochs 1");
  expect_error(r, 2, {"unknown command 'trian'"});
}

// ---- bad option values (exit 1)
TEST_F(BadInputs, NegativeEpochs) {
  Result r = peft(train_args("o_epochs", "--epochs -1"));
  expect_error(r, 1, {"--epochs", "positive", "-1"});
  expect_no_output(dir / "o_epochs");
}

TEST_F(BadInputs, NanLearningRate) {
  Result r = peft(train_args("o_lr", "--lr nan"));
  expect_error(r, 1, {"--lr", "nan"});
  expect_no_output(dir / "o_lr");
}

TEST_F(BadInputs, ZeroPrompts) {
  // Method options are checked before any data is read; the CLI treats them as usage (exit 2).
  std::string args = train_args("o_prompts", "--prompts 0");
  args.replace(args.find("--method linear"), 15, "--method vpt-shallow");
  Result r = peft(args);
  expect_error(r, 2, {"--prompts", ">= 1", "vpt-shallow", "got 0"});
  expect_no_output(dir / "o_prompts");
}

// ---- bad data
TEST_F(BadInputs, CorruptImageInImageFolder) {
  fs::path d = folder_copy("corrupt_folder");
  write(d / "dog" / "broken.png", "this is not a png file at all");
  Result r = peft(train_args("o_corrupt", "", "", d.string()));
  expect_error(r, 1, {"broken.png", "not a readable image"});
  expect_no_output(dir / "o_corrupt");
}

TEST_F(BadInputs, TruncatedImageInImageFolder) {
  // The header is fine (it passes the probe when the folder is opened); decoding fails mid-epoch.
  fs::path d = folder_copy("truncated_folder");
  std::string png = slurp(d / "dog" / "img0.png");
  write(d / "dog" / "img0.png", png.substr(0, 40));
  Result r = peft(train_args("o_trunc_img", "", "", d.string()));
  expect_error(r, 1, {"img0.png", "cannot decode"});
  expect_no_output(dir / "o_trunc_img");
}

TEST_F(BadInputs, EmptyDataset) {
  fs::path d = dir / "empty_folder";
  fs::create_directories(d);
  Result r = peft(train_args("o_empty", "", "", d.string()));
  expect_error(r, 1, {"empty_folder", "no class sub-folders"});
  expect_no_output(dir / "o_empty");
}

TEST_F(BadInputs, EmptyClassFolder) {
  fs::path d = folder_copy("empty_class_folder");
  fs::create_directories(d / "zebra");
  Result r = peft(train_args("o_empty_class", "", "", d.string()));
  expect_error(r, 1, {"zebra", "has no images"});
  expect_no_output(dir / "o_empty_class");
}

TEST_F(BadInputs, CifarLabelOutOfRange) {
  fs::path d = dir / "cifar";
  fs::create_directories(d);
  std::string rec(1 + 3072, '\x10');
  rec[0] = static_cast<char>(200);  // cifar10 has labels 0..9
  write(d / "data_batch_1.bin", rec);
  write(d / "test_batch.bin", rec);
  Result r = peft(train_args("o_cifar", "", "", "cifar10:" + d.string()));
  expect_error(r, 1, {"data_batch_1.bin", "label 200"});
  expect_no_output(dir / "o_cifar");
}

TEST_F(BadInputs, MoreClassesThanTheHead) {
  // The base model's head has 2 classes; evaluating it on 3 classes cannot be right.
  fs::path d = folder_copy("three_classes");
  fs::copy(d / "dog", d / "eel", fs::copy_options::recursive);
  Result r = peft("eval --config '" + (dir / "micro.json").string() + "' --weights '" +
                  (dir / "base.safetensors").string() + "' --data '" + d.string() + "' --threads 1");
  expect_error(r, 1, {"3 classes", "head has 2"});
}

// ---- non-finite loss: training stops, the last good checkpoint and the outputs stay intact
TEST_F(BadInputs, NonFiniteLossKeepsTheLastCheckpoint) {
  // The run diverges after its first step's checkpoint; resuming it (the same settings: --resume
  // refuses another --lr) diverges again and leaves that checkpoint as it was.
  const fs::path out = dir / "o_nan";
  Result first = peft(train_args("o_nan", "--epochs 3 --lr 1e30 --checkpoint-steps 1"));
  expect_error(first, 1, {"loss became", "checkpoint.safetensors", "--lr"});
  const std::string ckpt = slurp(out / "checkpoint.safetensors"), adapter = slurp(out / "adapter.safetensors");
  ASSERT_FALSE(ckpt.empty());
  Result r = peft(train_args("o_nan", "--epochs 3 --lr 1e30 --checkpoint-steps 1 --resume"));
  expect_error(r, 1, {"loss became", "checkpoint.safetensors", "--lr"});
  EXPECT_EQ(slurp(out / "checkpoint.safetensors"), ckpt);
  EXPECT_EQ(slurp(out / "adapter.safetensors"), adapter);
  expect_no_output(out, {});
}

TEST_F(BadInputs, NonFiniteLossFromScratchWritesNoAdapter) {
  Result r = peft(train_args("o_nan2", "--epochs 2 --lr 1e30"));
  expect_error(r, 1, {"loss became", "--lr"});
  expect_no_output(dir / "o_nan2");
}

// ---- a run that cannot fit in memory is refused before it starts
TEST_F(BadInputs, TooLargeForMemory) {
  // 1024 px with 4 px patches: 65537 tokens, so one batch of attention scores alone is ~275 GB.
  write(dir / "huge.json", R"({"image_size": 1024, "patch_size": 4, "dim": 16, "depth": 1, "heads": 2})");
  const fs::path out = dir / "o_huge";
  Result r = peft("pretrain --config '" + (dir / "huge.json").string() +
                  "' --data procedural:shapes --train-size 8 --batch 8 --epochs 1 --threads 1 --out '" + out.string() + "'");
  expect_error(r, 1, {"memory: training needs about", "activations", "is available", "--batch"});
  expect_no_output(out, {"weights.safetensors", "model.json", "checkpoint.safetensors"});
}

// ---- anomaly mode names the op
TEST_F(BadInputs, DetectAnomalyNamesTheOp) {
  Result r = peft(train_args("o_anomaly", "--epochs 2 --lr 1e30 --detect-anomaly"));
  expect_error(r, 1, {"anomaly:", "of '"});
  expect_no_output(dir / "o_anomaly");
}

}  // namespace
}  // namespace peft
