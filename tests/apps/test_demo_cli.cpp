// Smoke test of the embedded default (`peft demo --quick`): every method trains end to end and the
// table and result files come out.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "peft/method.h"
#include "tests/apps/cli_util.h"

using namespace peft::testing;
namespace fs = std::filesystem;

TEST(DemoCli, QuickDemoRunsEveryMethod) {
  fs::path out = fs::temp_directory_path() / ("peft_demo_" + std::to_string(::getpid()));
  fs::remove_all(out);
  auto r = run_peft("demo --quick --threads 2 --out " + out.string(), "demo");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("method"), std::string::npos);
  auto js = nlohmann::json::parse(read_file((out / "demo.json").string()));
  ASSERT_EQ(js.size(), peft::vision_method_registry().size() + 1);  // a random-backbone probe + every method
  for (size_t i = 1; i < js.size(); ++i) EXPECT_EQ(js[i]["method"], peft::vision_method_registry()[i - 1].name);
  for (auto& row : js) {
    EXPECT_GT(row["trainable_params"].get<int64_t>(), 0) << row.dump();
    EXPECT_GE(row["top1"].get<double>(), 0.0);
    EXPECT_LE(row["top1"].get<double>(), 100.0);
  }
  EXPECT_EQ(js[0]["backbone"], "random");
  EXPECT_EQ(js[2]["method"], "full");
  EXPECT_TRUE(fs::exists(out / "demo.csv"));
  EXPECT_TRUE(fs::exists(out / "pretrain" / "weights.safetensors"));
  fs::remove_all(out);
}
