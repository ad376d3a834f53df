// The `peft` program's sub-commands: each file registers one family on the CLI11 app.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "peft/method.h"

namespace peft {
struct PromptArgs;         // peft/clip_run.h
struct ClipMethodOptions;  // peft/clip_methods.h
}

namespace peft::app {

// Bad usage (exit 2): unknown method, option values that make no sense together.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Options every command shares (cli.md): --threads, --seed, --json.
struct Common {
  int threads = 0;
  uint64_t seed = 0;
  bool json = false;
  std::string precision = "f32";  // --precision f32|bf16: float32 GEMM inputs, or bfloat16 (core/blas.h)
};

// Each registers its sub-command(s); the callback runs after parsing and returns the exit code.
using Runner = std::function<int()>;
void add_info_commands(CLI::App& app, Common& common, Runner& run);     // presets, tasks
void add_inspect_command(CLI::App& app, Common& common, Runner& run);   // inspect
void add_train_commands(CLI::App& app, Common& common, Runner& run);    // pretrain, train, eval
void add_demo_command(CLI::App& app, Common& common, Runner& run);      // demo
void add_graph_command(CLI::App& app, Common& common, Runner& run);     // graph
void add_gradcheck_command(CLI::App& app, Common& common, Runner& run); // gradcheck
void add_check_command(CLI::App& app, Common& common, Runner& run);     // check
void add_merge_command(CLI::App& app, Common& common, Runner& run);     // merge
void add_clip_commands(CLI::App& app, Common& common, Runner& run);     // tokenize, clip-train (+ check's CLIP options)
void add_clip_demo_command(CLI::App& app, Common& common, Runner& run); // clip-demo
void add_bench_command(CLI::App& app, Common& common, Runner& run);     // bench
void add_augment_command(CLI::App& app, Common& common, Runner& run);   // augment
void add_compare_commands(CLI::App& app, Common& common, Runner& run); // compare, sweep, attention
void add_clip_check_options(CLI::App* check);                          // --texts, --vocab and the CLIP-only method flags on `peft check`
// The flags only CLIP methods read: --beta, --depth, --kg-weight, --kg-texts, --encoder.
void add_clip_only_method_options(CLI::App* cmd, ClipMethodOptions& o);
void add_clip_eval_command(CLI::App& app, Common& common, Runner& run); // clip-eval
// --texts / --classnames / --templates (cmd_clip.cpp); check_prompt_usage: UsageError when both
// or --templates alone are given, or (required) when neither is.
void add_prompt_options(CLI::App* cmd, PromptArgs& p);
// --config (optional: inferred from the weights) and --weights (required) of a CLIP (cmd_clip.cpp).
void add_clip_model_options(CLI::App* cmd, std::string& config, std::string& weights);
void check_prompt_usage(const PromptArgs& p, bool required);
// UsageError when `config` is a ViT preset or a non-CLIP config file (says which commands take it).
void require_clip_config(const std::string& config, const char* command);
// The CLIP branch of `peft check`: -1 when `method` is not a CLIP method, else the exit code.
// `m` carries the shared method flags (--prompts, --rank, --alpha, --targets); those not typed
// take the CLIP method's own defaults.
int run_clip_check(const std::string& config, const std::string& weights, const std::string& method, const MethodOptions& m,
                   const std::string& adapter, const std::string& inputs, const std::string& out, uint64_t seed);

// Adds --threads/--seed/--json to a sub-command.
void add_common_options(CLI::App* cmd, Common& common);
// A comma-separated list option ("1,10,50", split by CLI11); the initial items are its default.
CLI::Option* add_list_option(CLI::App* cmd, const std::string& name, std::vector<std::string>& items,
                             const std::string& help);
// Adds the method flags (--prompts, --prompt-dropout, --rank, --alpha, --targets, --bottleneck).
// with_prompts false: a command that gives --prompts another meaning (sweep: a list of counts).
void add_method_options(CLI::App* cmd, MethodOptions& m, bool with_prompts = true);
// "linear, full, bitfit, ...": the vision method names for messages.
std::string vision_method_list();
// UsageError listing the vision methods when `method` is not one of them.
void require_vision_method(const std::string& method);
// The same, then UsageError unless batch >= 1 (graph, gradcheck: one random batch).
void require_vision_method_and_batch(const std::string& method, int64_t batch);

}  // namespace peft::app
