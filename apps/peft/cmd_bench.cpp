// `peft bench` (cli.md): times one training step or one inference batch of a ViT with a PEFT
// method, with the same model shapes, batch, loss, optimizer and FLOP count as the PyTorch
// baseline ../bench/torch_vit_bench.py `one`, so that the two print comparable JSON lines, and
// measures sgemm on the step's GEMM shapes beside it. The measurement is library code
// (peft/bench.h); this file registers the options, calls it and prints the lines and the JSON.
#include <fmt/format.h>

#include <string>

#include "apps/peft/commands.h"
#include "core/error.h"
#include "peft/bench.h"
#include "peft/method.h"
#include "peft/script_flops.h"

namespace peft::app {

namespace {

int run_bench_command(const BenchRequest& req, const Common& common) {
  if (!is_vision_method(method_from_script_mode(req.method)))
    throw UsageError(fmt::format("--method: unknown method '{}' (available: {}; also vpt = vpt-deep)", req.method,
                                 vision_method_list()));
  if (common.threads < 0) throw ValueError(fmt::format("--threads: must be >= 0 (got {})", common.threads));
  BenchRequest q = req;
  q.seed = common.seed;
  BenchResult r;
  try {
    r = run_bench(q);
  } catch (const MethodError& e) {  // bad method options, --merged where nothing folds
    throw UsageError(e.what());
  }
  fmt::print("{}", format_bench(r));
  if (common.json) fmt::print("{}\n", bench_json(r).dump());
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Common& common, Runner& run) {
  static BenchRequest a;
  auto* cmd = app.add_subcommand("bench", "time one training step or inference batch (compare: ../bench/torch_vit_bench.py)");
  cmd->add_option("--config", a.config, "tiny (32 px, patch 4, D192 L12 H3, 10 classes, batch 32) | base (224 px, "
                                        "patch 16, D768 L12 H12, 1000 classes, batch 8)")
      ->required()
      ->check(CLI::IsMember({"tiny", "base"}));
  cmd->add_option("--method", a.method, "PEFT method (peft methods; also torch_vit_bench.py's vpt = vpt-deep)")->required();
  cmd->add_option("--prompts", a.prompts, "prompts M (vpt-shallow, vpt-deep, cvpt, prefix; 0 = none, the linear probe)")
      ->capture_default_str();
  cmd->add_option("--phase", a.phase, "train (forward, cross-entropy, backward, AdamW step) | infer (no-grad forward)")
      ->required()
      ->check(CLI::IsMember({"train", "infer"}));
  cmd->add_option("--threads", common.threads, "compute threads (0 = number of cores)")->required();
  cmd->add_option("--warmup", a.warmup, "untimed steps first")->required();
  cmd->add_option("--steps", a.steps, "timed steps (median and min reported)")->required();
  cmd->add_option("--seed", common.seed, "random seed of the weights, method tensors, images and labels");
  cmd->add_flag("--json", common.json, "print the JSON summary (torch_vit_bench.py's keys) as the last stdout line");
  cmd->add_option("--precision", common.precision,
                  "f32 | bf16 (GEMM inputs in bfloat16, float32 accumulation; torch_vit_bench.py --precision bf16 "
                  "is PyTorch's CPU autocast)")
      ->capture_default_str();
  cmd->add_flag("--merged", a.merged,
                "ssf/lora with --phase infer: fold the adapters into the weights and time the plain ViT that results "
                "(compare with --method full --phase infer, the plain ViT)");
  cmd->add_flag("--checkpoint-activations,--grad-checkpointing", a.checkpoint_activations,
                "train: keep only each block's input and recompute the block in backward (less memory, one more "
                "forward per step; same gradients)");
  cmd->add_flag("--no-gemm-probe", [](int64_t) { a.gemm_probe = false; }, "skip the sgemm rate measurement");
  cmd->callback([&run, &common] {
    run = [&common] { return run_bench_command(a, common); };
  });
}

}  // namespace peft::app
