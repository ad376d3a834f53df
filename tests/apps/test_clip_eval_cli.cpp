// CLIP as users run it, through the built program: `clip-train --classnames --templates`, the
// held-out split without --val (never the training images), `clip-eval` from the prompts recorded
// in the adapter (refusing other classes or prompts), and CLIP presets in `inspect` / `check`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "data/image.h"
#include "data/procedural.h"
#include "core/io/safetensors.h"
#include "tests/apps/cli_util.h"

namespace peft {
namespace {

namespace fs = std::filesystem;
const std::string kPeft = std::string(PEFT_BINARY_DIR) + "/peft";

struct CmdRun {
  int code = -1;
  std::string out, err;
  int err_lines() const { return static_cast<int>(std::count(err.begin(), err.end(), '\n')); }
  // The --json summary: the last line of stdout.
  nlohmann::json summary() const {
    std::string s = out;
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return nlohmann::json::parse(s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1));
  }
};

class ClipEvalCli : public ::testing::Test {
 protected:
  static fs::path dir;
  static std::string model;  // "--config ... --weights ..." of the quick demo's tiny CLIP
  static std::vector<std::string> folder_classes;

  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("peft_clip_eval_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const fs::path demo = dir / "demo";
    ASSERT_EQ(std::system((kPeft + " clip-demo --quick --threads 1 --out " + demo.string() + " > /dev/null 2>&1").c_str()), 0);
    model = "--config " + (demo / "clip.json").string() + " --weights " + (demo / "clip.safetensors").string();
    // An image folder with train/ and val/ of the colors task (classes sorted by folder name).
    for (auto [split, sp, n] : {std::tuple{"train", data::Split::train, 24}, std::tuple{"val", data::Split::val, 16}}) {
      data::ProceduralDataset ds("colors", n, 32, 3, sp);
      for (int64_t i = 0; i < ds.size(); ++i) {
        const fs::path cls = dir / "folder" / split / ds.class_names()[static_cast<size_t>(ds.label(i))];
        fs::create_directories(cls);
        data::save_png(ds.load(i), (cls / (std::to_string(i) + ".png")).string());
      }
    }
    for (auto& e : fs::directory_iterator(dir / "folder" / "train")) folder_classes.push_back(e.path().filename().string());
    std::sort(folder_classes.begin(), folder_classes.end());
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }

  CmdRun run(const std::string& args) {  // the shared runner of tests/apps/cli_util.h
    const peft::testing::CliResult c = peft::testing::run_peft(args, "clip_eval");
    CmdRun r;
    r.code = c.status;
    r.out = c.out;
    r.err = c.err;
    return r;
  }
  static std::string write(const std::string& name, const std::string& content) {
    std::string p = (dir / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  static std::string lines(const std::vector<std::string>& v) {
    std::string s;
    for (auto& x : v) s += x + "\n";
    return s;
  }
  void expect_one_line_error(const CmdRun& r, int code, const std::string& fragment) {
    EXPECT_EQ(r.code, code) << r.err;
    EXPECT_EQ(r.err_lines(), 1) << r.err;
    EXPECT_EQ(r.err.rfind("peft: error:", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  }
};
fs::path ClipEvalCli::dir;
std::string ClipEvalCli::model;
std::vector<std::string> ClipEvalCli::folder_classes;

const std::vector<std::string> kColors = {"red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"};

TEST_F(ClipEvalCli, ClassNamesWithTemplatesTrainAndEvalOnTheHeldOutSplit) {
  const std::string names = write("colors.txt", lines(kColors));
  const std::string tmpl = write("templates.txt", "a photo of a {}.\na {} object\n");
  for (const std::string method : {"zeroshot", "taskres", "coop", "tip-adapter-f"}) {
    SCOPED_TRACE(method);
    const fs::path out = dir / ("colors_" + method);
    CmdRun t = run("clip-train " + model + " --method " + method +
                   " --data procedural:colors --train-size 48 --val-size 40 --shots 2 --epochs 2 --views 2 --prompts 4 "
                   "--classnames " + names + " --templates " + tmpl + " --out " + out.string() + " --json");
    ASSERT_EQ(t.code, 0) << t.err;
    // Without --val: the val split of the procedural task (40 images), not the 16 training ones.
    EXPECT_NE(t.out.find("40 val images"), std::string::npos) << t.out;
    const nlohmann::json js = t.summary();
    ASSERT_TRUE(js.at("top1").is_number()) << t.out;
    auto f = SafetensorsFile::open((out / "adapter.safetensors").string());
    EXPECT_EQ(f.metadata().at("method"), method);
    const auto cp = nlohmann::json::parse(f.metadata().at("class_prompts"));
    EXPECT_EQ(cp.at("classnames").get<std::vector<std::string>>(), kColors);
    EXPECT_EQ(cp.at("templates").size(), 2u);
    EXPECT_EQ(nlohmann::json::parse(f.metadata().at("data_classes")).get<std::vector<std::string>>(), kColors);
    // clip-eval rebuilds the same head from the adapter alone: the same top-1 and loss.
    CmdRun e = run("clip-eval " + model + " --adapter " + (out / "adapter.safetensors").string() +
                   " --data procedural:colors --val-size 40 --json");
    ASSERT_EQ(e.code, 0) << e.err;
    EXPECT_DOUBLE_EQ(e.summary().at("top1").get<double>(), js.at("top1").get<double>());
    EXPECT_NEAR(e.summary().at("loss").get<double>(), js.at("loss").get<double>(), 1e-6);
    EXPECT_EQ(e.summary().at("method"), method);
  }
  // The built-in ImageNet templates: 80 per class.
  CmdRun in = run("clip-train " + model + " --method zeroshot --data procedural:colors --val-size 16 --classnames " +
                  names + " --templates imagenet --out " + (dir / "imagenet").string());
  ASSERT_EQ(in.code, 0) << in.err;
  EXPECT_NE(in.out.find("8 class names x 80 templates"), std::string::npos) << in.out;
}

TEST_F(ClipEvalCli, FoldersUseTheirValSplitOrReportNoHeldOutTop1) {
  const std::string names = write("folder_classes.txt", lines(folder_classes));
  const fs::path root = dir / "folder";
  // DIR with train/ and val/: trains on train/, evaluates on val/ (16 images).
  CmdRun t = run("clip-train " + model + " --method taskres --epochs 2 --data " + root.string() + " --classnames " + names +
                 " --out " + (dir / "f1").string() + " --json");
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find((root / "val").string()), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("(16 images"), std::string::npos) << t.out;
  EXPECT_TRUE(t.summary().at("top1").is_number());
  // A plain folder and no --val: no top-1 on held-out data, said in one line; the keys stay.
  CmdRun p = run("clip-train " + model + " --method taskres --epochs 2 --data " + (root / "train").string() +
                 " --classnames " + names + " --out " + (dir / "f2").string() + " --json");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.out.find("no held-out top-1"), std::string::npos) << p.out;
  const nlohmann::json js = p.summary();
  EXPECT_TRUE(js.at("top1").is_null());
  EXPECT_TRUE(js.at("loss").is_null());
  EXPECT_TRUE(js.contains("trainable_params"));
  EXPECT_TRUE(fs::exists(dir / "f2" / "adapter.safetensors"));
  // clip-eval on the folder: its val/ split, the same numbers as training reported.
  CmdRun e = run("clip-eval " + model + " --adapter " + (dir / "f1" / "adapter.safetensors").string() + " --data " +
                 root.string() + " --json");
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_DOUBLE_EQ(e.summary().at("top1").get<double>(), t.summary().at("top1").get<double>());
}

TEST_F(ClipEvalCli, EvalRefusesOtherClassesAndOtherPrompts) {
  const std::string names = write("folder_classes2.txt", lines(folder_classes));
  const std::string adapter = (dir / "r" / "adapter.safetensors").string();
  ASSERT_EQ(run("clip-train " + model + " --method zeroshot --data " + (dir / "folder").string() + " --classnames " +
                names + " --out " + (dir / "r").string())
                .code,
            0);
  // A folder with one class renamed.
  const fs::path other = dir / "other";
  fs::create_directories(other);
  fs::copy(dir / "folder" / "val", other, fs::copy_options::recursive);
  fs::rename(other / folder_classes[0], other / "aquamarine");
  expect_one_line_error(run("clip-eval " + model + " --adapter " + adapter + " --data " + other.string()), 1, "differ");
  // The procedural task has the classes in another order.
  expect_one_line_error(run("clip-eval " + model + " --adapter " + adapter + " --data procedural:colors"), 1, "differ");
  // Prompts that differ from the recorded ones; the same ones are accepted.
  expect_one_line_error(run("clip-eval " + model + " --adapter " + adapter + " --data " + (dir / "folder").string() +
                            " --classnames " + names + " --templates imagenet"),
                        1, "differ");
  EXPECT_EQ(run("clip-eval " + model + " --adapter " + adapter + " --data " + (dir / "folder").string() +
                " --classnames " + names)
                .code,
            0);
  // Usage: --texts with --classnames, --templates alone, no prompts, a ViT config.
  const std::string texts = write("t.txt", "a\nb\n");
  expect_one_line_error(run("clip-eval " + model + " --adapter " + adapter + " --data procedural:colors --texts " + texts +
                            " --classnames " + names),
                        2, "--texts");
  expect_one_line_error(run("clip-train " + model + " --method zeroshot --data procedural:colors --templates photo --out " +
                            (dir / "u").string()),
                        2, "--templates");
  expect_one_line_error(run("clip-train " + model + " --method zeroshot --data procedural:colors --out " + (dir / "u").string()),
                        2, "--classnames");
  expect_one_line_error(run("clip-eval --config vit-micro --weights x --adapter " + adapter + " --data procedural:colors"), 2,
                        "not a CLIP model");
  EXPECT_FALSE(fs::exists(dir / "u" / "adapter.safetensors"));
}

TEST_F(ClipEvalCli, ClipPresetsInInspectAndCheck) {
  for (const std::string preset : {"clip-micro", "clip-vit-b32"}) {
    CmdRun r = run("inspect --config " + preset);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("visual.conv1.weight"), std::string::npos);
    EXPECT_NE(r.out.find("token_embedding.weight"), std::string::npos);
    EXPECT_NE(r.out.find("logit_scale"), std::string::npos);
    EXPECT_NE(r.out.find("total "), std::string::npos);
    if (preset == "clip-vit-b32") {
      EXPECT_NE(r.out.find("visual.proj                                      [768, 512]"), std::string::npos);
    }
  }
  expect_one_line_error(run("inspect --config clip-micro --method lora"), 2, "clip-train");
  expect_one_line_error(run("check --config clip-micro --weights x.safetensors --method ssf --inputs x --out " +
                            (dir / "c.safetensors").string()),
                        2, "CLIP model");
}

}  // namespace
}  // namespace peft
