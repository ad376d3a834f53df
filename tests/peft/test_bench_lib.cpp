// peft/script_flops.h and peft/bench.h: torch_vit_bench.py's FLOP formula against numbers worked
// out by hand for the tiny bench config (image 32, patch 4, D 192, L 12, 10 classes: N = 64
// patches, T = 65 tokens), the method -> script mode map, and run_bench on one inference step
// (which count it reports, the probe's rows, the errors).
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "nn/config.h"
#include "peft/bench.h"
#include "peft/method.h"
#include "peft/script_flops.h"

namespace peft {
namespace {

ScriptFlopsInput tiny(const std::string& mode, int64_t M = 0) {
  return {nn::load_vit_config("bench-tiny"), 32, mode, M, 8, 64};
}

// By hand, per image: pe = 2*64*48*192 = 1,179,648; lin = 12*2*65*192*(12*192) = 690,094,080;
// att = 12*2*2*65^2*192 = 38,937,600; head = 2*192*10 = 3,840. Sum 730,215,168 (the script
// prints 0.730215168 GFLOP/img).
TEST(ScriptFlops, ForwardTermsOfTheTinyConfig) {
  const ScriptFwdFlops f = script_fwd_flops_per_image(tiny("linear"));
  EXPECT_EQ(f.pe, 1179648.0);
  EXPECT_EQ(f.lin, 690094080.0);
  EXPECT_EQ(f.att, 38937600.0);
  EXPECT_EQ(f.head, 3840.0);
  EXPECT_EQ(f.lora + f.extra_lin + f.extra_att + f.adapter, 0.0);
  EXPECT_EQ(f.sum(), 730215168.0);
}

TEST(ScriptFlops, TrainRulesPerMode) {
  // linear: the backbone runs without a graph: forward + the head's backward (2 x head).
  EXPECT_EQ(script_train_flops_per_image(tiny("linear")), 730215168.0 + 7680.0);
  // full: fwd + lin + 2 att + 2 head (data grads) + lin + pe (weight grads)
  //     = 730,215,168 + 690,094,080 + 77,875,200 + 7,680 + 690,094,080 + 1,179,648.
  EXPECT_EQ(script_train_flops_per_image(tiny("full")), 2189465856.0);
  // ssf: the data grads only.
  EXPECT_EQ(script_train_flops_per_image(tiny("ssf")), 730215168.0 + 690094080.0 + 77875200.0 + 7680.0);
  // lora (r = 8 on qkv): 12*2*65*8*(192 + 576) = 9,584,640 forward, once more for the data grad
  // and once for the weight grads of A and B.
  EXPECT_EQ(script_fwd_flops_per_image(tiny("lora")).lora, 9584640.0);
  EXPECT_EQ(script_train_flops_per_image(tiny("lora")), 730215168.0 + 9584640.0 + 690094080.0 + 9584640.0 + 77875200.0 +
                                                            7680.0 + 9584640.0);
  // A prompt mode with M = 0 is the linear probe.
  EXPECT_EQ(script_train_flops_per_image(tiny("vpt", 0)), script_train_flops_per_image(tiny("linear")));
  EXPECT_EQ(script_train_flops_per_image(tiny("cvpt", 0)), script_train_flops_per_image(tiny("linear")));
}

TEST(ScriptFlops, PromptModes) {
  // vpt, M = 1: T = 66 in every block.
  const ScriptFwdFlops v = script_fwd_flops_per_image(tiny("vpt", 1));
  EXPECT_EQ(v.lin, 12.0 * 2 * 66 * 192 * 12 * 192);
  EXPECT_EQ(v.att, 12.0 * 2 * 2 * 66 * 66 * 192);
  // cvpt, M = 10, batch 32: q and out projections per image (12*2*65*192*192*2 = 115,015,680) and
  // the prompts' k/v projection once per batch (12*2*10*192*2*192/32 = 552,960): 115,568,640;
  // cross-attention 12*2*2*65*10*192 = 5,990,400. The sequence keeps T = 65.
  const ScriptFwdFlops c = script_fwd_flops_per_image(tiny("cvpt", 10));
  EXPECT_EQ(c.extra_lin, 115568640.0);
  EXPECT_EQ(c.extra_att, 5990400.0);
  EXPECT_EQ(c.lin, 690094080.0);
}

TEST(ScriptFlops, WhichMethodsTheScriptCounts) {
  EXPECT_EQ(method_from_script_mode("vpt"), "vpt-deep");
  EXPECT_EQ(method_from_script_mode("lora"), "lora");
  for (const char* m : {"full", "linear", "ssf", "lora", "cvpt"}) EXPECT_EQ(script_flops_mode(m), std::string(m));
  EXPECT_EQ(script_flops_mode("vpt-deep"), "vpt");
  EXPECT_EQ(script_flops_mode("vpt-shallow"), "vpt");
  EXPECT_EQ(script_flops_mode("bitfit"), "ssf");
  EXPECT_EQ(script_flops_mode("adaptformer"), "adaptformer");
  // No formula of ours for what the script lacks: the bench reports the counted GEMM FLOPs.
  for (const char* m : {"adapter", "prefix", "lntune", "nosuch"}) EXPECT_FALSE(script_flops_mode(m).has_value()) << m;
  // Every registered method is either counted by a script rule or by its GEMMs: nothing throws.
  for (const MethodDescriptor& d : vision_method_registry()) (void)script_flops_mode(d.name);
}

BenchRequest one_infer_step(const std::string& method) {
  BenchRequest q;
  q.config = "tiny";
  q.method = method;
  q.phase = "infer";
  q.steps = 1;
  q.gemm_probe = false;
  return q;
}

TEST(Bench, ScriptModeReportsTheScriptCount) {
  const BenchResult r = run_bench(one_infer_step("linear"));
  EXPECT_TRUE(r.flops_from_script);
  EXPECT_EQ(r.batch, 32);
  EXPECT_EQ(r.M, 0);
  EXPECT_NEAR(r.flops_per_step, 32 * 730215168.0, 1.0);
  EXPECT_EQ(r.params, 5362762);
  EXPECT_EQ(r.trainable, 1930);
  ASSERT_EQ(r.step_s.size(), 1u);
  EXPECT_EQ(r.median_s, r.step_s[0]);
  EXPECT_GT(r.gemm_flops_counted_per_step, 0.0);
  const auto j = bench_json(r);
  EXPECT_EQ(j["mode"], "linear");
  EXPECT_FALSE(j.contains("sgemm_gflops"));
  EXPECT_NE(format_bench(r).find("bench tiny linear M=0"), std::string::npos);
}

TEST(Bench, OtherMethodsReportTheCountedGemmFlops) {
  // prefix reads --prompts (M = 2 here) but the script has no formula for it.
  BenchRequest q = one_infer_step("prefix");
  q.prompts = 2;
  const BenchResult r = run_bench(q);
  EXPECT_FALSE(r.flops_from_script);
  EXPECT_EQ(r.M, 2);
  EXPECT_EQ(r.flops_per_step, r.gemm_flops_counted_per_step);
  EXPECT_GT(r.flops_per_step, 0.0);
}

TEST(Bench, ProbeRowsCountThePromptTokens) {
  BenchRequest q = one_infer_step("vpt");  // the script's name
  q.prompts = 2;
  q.gemm_probe = true;
  const BenchResult r = run_bench(q);
  EXPECT_EQ(r.method, "vpt-deep");
  ASSERT_EQ(r.gemm_rates.size(), 4u);  // inference: the forward GEMM of each block linear
  EXPECT_EQ(r.gemm_rates[0].name, "attn.qkv");
  EXPECT_EQ(r.gemm_rates[0].M, 32 * (65 + 2));
  EXPECT_GT(r.gemm_gflops, 0.0);
}

TEST(Bench, CheckpointActivationsTradesAForwardForTensorMemory) {
  // Full fine-tuning of the tiny config, one training step each way. Checkpointed: the GEMMs of
  // one more block forward (recompute), and fewer tensor bytes alive at the peak (each block keeps
  // its input only). Counters, not times: both are exact.
  BenchRequest q = one_infer_step("full");
  q.phase = "train";
  const BenchResult plain = run_bench(q);
  q.checkpoint_activations = true;
  const BenchResult ckpt = run_bench(q);
  EXPECT_FALSE(bench_json(plain)["checkpoint_activations"].get<bool>());
  EXPECT_TRUE(bench_json(ckpt)["checkpoint_activations"].get<bool>());
  EXPECT_EQ(ckpt.flops_per_step, plain.flops_per_step);  // the script's count: useful work only
  EXPECT_GT(ckpt.gemm_flops_counted_per_step, 1.2 * plain.gemm_flops_counted_per_step);
  EXPECT_LT(ckpt.gemm_flops_counted_per_step, 1.4 * plain.gemm_flops_counted_per_step);
  EXPECT_LT(ckpt.peak_tensor_mb, 0.9 * plain.peak_tensor_mb);
}

TEST(Bench, BadRequestsThrow) {
  BenchRequest q = one_infer_step("nosuch");
  EXPECT_THROW(run_bench(q), MethodError);
  q = one_infer_step("linear");
  q.steps = 0;
  try {
    run_bench(q);
    ADD_FAILURE() << "steps 0 accepted";
  } catch (const MethodError&) {
    ADD_FAILURE() << "steps 0 is a bad value, not a method error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("--steps"), std::string::npos);
  }
  q = one_infer_step("lora");
  q.phase = "train";
  q.merged = true;
  EXPECT_THROW(run_bench(q), MethodError);  // --merged needs inference
  q = one_infer_step("vpt-deep");
  q.merged = true;
  EXPECT_THROW(run_bench(q), MethodError);  // and a method that folds
}

}  // namespace
}  // namespace peft
