// `peft augment`: the PNG grid is written with the size its layout implies; bad options are one
// line on stderr with exit 2 (usage) or 1 (a bad value), and nothing is written.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/image.h"
#include "tests/apps/cli_util.h"

namespace peft {
namespace {

namespace fs = std::filesystem;
using testing::run_peft;
using testing::TempDir;

size_t lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

TEST(AugmentCli, WritesTheGrid) {
  TempDir dir("peft_augment_cli");
  const std::string out = dir / "grid.png";
  // 5 samples, 2 per image: 3 rows of (eval image + 2 views) at 32 px with 2 px gaps
  auto r = run_peft("augment --data procedural:shapes --config vit-micro --train-size 12 --out " + out +
                        " --augment rrc,flip --aa rand-m9-mstd0.5 --reprob 0.25 --n 5 --per-image 2 --seed 4",
                    "augment_ok");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("aa:rand-m9-mstd0.5"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::exists(out));
  const data::Image img = data::load_image(out, 3);
  EXPECT_EQ(img.W, 3 * 32 + 4 * 2);
  EXPECT_EQ(img.H, 3 * 32 + 4 * 2);
  // the same seed writes the same picture
  const std::string again = dir / "again.png";
  r = run_peft("augment --data procedural:shapes --config vit-micro --train-size 12 --out " + again +
                   " --augment rrc,flip --aa rand-m9-mstd0.5 --reprob 0.25 --n 5 --per-image 2 --seed 4",
               "augment_again");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(testing::read_file(out), testing::read_file(again));
}

TEST(AugmentCli, BadOptionsAreOneLine) {
  TempDir dir("peft_augment_cli");
  const std::string out = dir / "grid.png";
  auto r = run_peft("augment --data procedural:shapes --config vit-micro --out " + out + " --bogus 1", "augment_bad");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("peft: error: ", 0), 0u) << r.err;
  r = run_peft("augment --data procedural:shapes --config vit-micro --out " + out + " --aa rand-m9-foo", "augment_aa");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("--aa"), std::string::npos) << r.err;
  r = run_peft("augment --data procedural:shapes --config vit-micro --out " + out + " --remode blur --reprob 0.5",
               "augment_remode");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--remode"), std::string::npos) << r.err;
  r = run_peft("augment --data procedural:shapes --config vit-micro --out " + out + " --n 0", "augment_n");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--n"), std::string::npos) << r.err;
  r = run_peft("augment --out " + out, "augment_nodata");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--data"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // the train command refuses a bad --aa before any work, in one line
  r = run_peft("pretrain --config vit-micro --data procedural:shapes --epochs 1 --out " + (dir / "run") +
                   " --aa rand-m9-foo",
               "train_aa");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("--aa"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "run/summary.json"));
}

}  // namespace
}  // namespace peft
