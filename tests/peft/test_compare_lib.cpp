// peft/compare.h, peft/prompt_sweep.h, peft/prompt_attention.h on a tiny config (image 16,
// patch 4, dim 16, depth 2, heads 2, 3 classes: T = 17) with one timed step: the structure of
// each result (rows, order, M, what is NaN without data), the renderings, and the numbers that
// follow from the model (VPT-deep's FLOPs grow with M, the CLS query's mass on the prompts).
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "peft/compare.h"
#include "peft/prompt_attention.h"
#include "peft/prompt_sweep.h"

namespace peft {
namespace {

BaseModel tiny() {
  BaseModel b;
  b.config.image_size = 16;
  b.config.patch_size = 4;
  b.config.dim = 16;
  b.config.depth = 2;
  b.config.heads = 2;
  b.config.num_classes = 3;
  b.seed = 5;
  return b;
}

size_t count_lines(const std::string& s) {
  std::stringstream ss(s);
  size_t n = 0;
  for (std::string l; std::getline(ss, l);) n += !l.empty();
  return n;
}

TEST(CompareLib, OneReportPerMethodInOrder) {
  MethodOptions o;
  o.prompts = 4;
  const std::vector<CostReport> r = compare_methods(tiny(), {"linear", "vpt-deep", "lora"}, o, 2, 1);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].method, "linear");
  EXPECT_EQ(r[1].method, "vpt-deep");
  EXPECT_EQ(r[2].method, "lora");
  EXPECT_EQ(r[0].prompts, 0);
  EXPECT_EQ(r[1].prompts, 4);  // only the methods that read --prompts report M
  EXPECT_EQ(r[2].prompts, 0);
  EXPECT_EQ(r[0].trainable, 16 * 3 + 3);              // the head
  EXPECT_EQ(r[1].trainable, 16 * 3 + 3 + 2 * 4 * 16);  // + prompts [depth, M, D]
  EXPECT_GT(r[1].flops_per_image, r[0].flops_per_image);  // 4 more tokens in every block
  for (const auto& k : r) {
    EXPECT_EQ(k.batch, 2);
    EXPECT_EQ(k.backbone, r[0].backbone + (k.trainable - r[0].trainable));  // what a method adds is backbone
  }
  const nlohmann::json j = cost_json(r[1]);
  EXPECT_EQ(j["method"], "vpt-deep");
  EXPECT_EQ(j["M"], 4);
  EXPECT_EQ(j["flops_per_image"], r[1].flops_per_image);
  EXPECT_THROW(compare_methods(tiny(), {"nosuch"}, o, 2, 1), MethodError);
}

TEST(CompareLib, SweepRowsWithoutData) {
  SweepRequest q;
  q.base = tiny();
  q.methods = {"vpt-deep", "cvpt"};
  q.counts = {1, 3};
  q.batch = 2;
  q.steps = 1;
  const SweepData d = open_sweep_data(q.base.config, "", 16, 16, 0);
  EXPECT_EQ(d.classes, 3);
  EXPECT_FALSE(d.train);
  const SweepResult r = run_sweep(q, d);
  EXPECT_FALSE(r.trained);
  EXPECT_EQ(r.base.cost.method, "linear");
  EXPECT_EQ(r.base.cost.prompts, 0);
  ASSERT_EQ(r.rows.size(), 4u);  // by method, then by M
  const char* methods[] = {"vpt-deep", "vpt-deep", "cvpt", "cvpt"};
  const int64_t counts[] = {1, 3, 1, 3};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r.rows[i].cost.method, methods[i]);
    EXPECT_EQ(r.rows[i].cost.prompts, counts[i]);
    EXPECT_TRUE(std::isnan(r.rows[i].top1));
  }
  EXPECT_LT(r.base.cost.flops_per_image, r.rows[0].cost.flops_per_image);
  EXPECT_LT(r.rows[0].cost.flops_per_image, r.rows[1].cost.flops_per_image);
  // Renderings: header + 5 rows each; no accuracy shows as "-", an empty CSV field and null.
  EXPECT_EQ(count_lines(format_sweep_table(r)), 6u);
  EXPECT_NE(format_sweep_table(r).find(" -\n"), std::string::npos);
  const std::string csv = sweep_csv(r);
  EXPECT_EQ(count_lines(csv), 6u);
  EXPECT_EQ(csv.substr(csv.find('\n') + 1, 9), "linear,0,");  // the baseline first
  EXPECT_EQ(csv.back(), '\n');
  EXPECT_EQ(csv[csv.size() - 2], ',');  // top1 left empty
  const nlohmann::json j = sweep_json_rows(r);
  ASSERT_EQ(j.size(), 5u);
  EXPECT_TRUE(j[4]["top1"].is_null());
  EXPECT_EQ(j[4]["M"], 3);
}

TEST(CompareLib, SweepTrainsAndEvaluatesWithData) {
  SweepRequest q;
  q.base = tiny();
  q.methods = {"vpt-deep"};
  q.counts = {2};
  q.batch = 4;
  q.steps = 1;
  q.epochs = 1;
  const SweepData d = open_sweep_data(q.base.config, "procedural:shapes", 8, 8, 0);
  ASSERT_TRUE(d.train && d.val);
  const SweepResult r = run_sweep(q, d);
  EXPECT_TRUE(r.trained);
  ASSERT_EQ(r.rows.size(), 1u);
  for (const SweepRow* row : {&r.base, &r.rows[0]}) {
    EXPECT_GE(row->top1, 0.0);
    EXPECT_LE(row->top1, 100.0);
  }
}

TEST(CompareLib, PromptAttentionShares) {
  PromptAttentionRequest q;
  q.base = tiny();
  q.counts = {0, 2, 6};
  q.batch = 3;
  const PromptAttentionResult r = prompt_attention(q);
  EXPECT_EQ(r.images, 3);
  EXPECT_FALSE(r.trained);
  EXPECT_EQ(r.counts, q.counts);
  ASSERT_EQ(r.share.size(), 2u);  // one row per layer
  for (const auto& layer : r.share) {
    ASSERT_EQ(layer.size(), 3u);
    EXPECT_EQ(layer[0], 0.0);  // the plain model has no prompts
    EXPECT_GT(layer[1], 0.0);  // softmax: every prompt key gets some mass
    EXPECT_LT(layer[1], layer[2]);
    EXPECT_LE(layer[2], 1.0);
  }
  EXPECT_EQ(count_lines(prompt_attention_csv(r)), 1u + 2 * 3);
  const std::string table = format_prompt_attention(r);
  EXPECT_EQ(count_lines(table), 3u);
  EXPECT_NE(table.find("M=6"), std::string::npos);
}

}  // namespace
}  // namespace peft
