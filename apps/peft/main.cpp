// `peft`: one binary, git-style sub-commands (cli.md). Errors become one line and exit 1 or 2.
#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "apps/peft/commands.h"
#include "apps/peft/model_options.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/threads.h"

namespace peft::app {
void add_common_options(CLI::App* cmd, Common& common) {
  cmd->add_option("--threads", common.threads, "compute threads (default: number of cores)");
  cmd->add_option("--seed", common.seed, "random seed (same seed + machine + threads = same result)");
  cmd->add_flag("--json", common.json, "print a one-line JSON summary as the last line of stdout");
  cmd->add_option("--precision", common.precision,
                  "f32 | bf16: GEMM inputs in bfloat16 with float32 accumulation (oneDNN backend); norms, "
                  "softmax, loss and optimizer stay float32")
      ->capture_default_str();
}
}  // namespace peft::app

int main(int argc, char** argv) {
  using namespace peft;
  CLI::App app{"peft: parameter-efficient fine-tuning of vision transformers and CLIP on the CPU", "peft"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] { return fmt::format("peft 0.1.0\n{}", thread_policy()); });
  app::Common common;
  app::Runner run;
  app::add_info_commands(app, common, run);
  app::add_inspect_command(app, common, run);
  app::add_train_commands(app, common, run);
  app::add_demo_command(app, common, run);
  app::add_graph_command(app, common, run);
  app::add_gradcheck_command(app, common, run);
  app::add_check_command(app, common, run);
  app::add_merge_command(app, common, run);
  app::add_predict_command(app, common, run);
  app::add_clip_commands(app, common, run);  // after add_check_command: adds check's CLIP options
  app::add_clip_eval_command(app, common, run);
  app::add_clip_demo_command(app, common, run);
  app::add_bench_command(app, common, run);
  app::add_compare_commands(app, common, run);
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) known = known || sub->get_name() == argv[1];
    if (!known) {
      std::fprintf(stderr, "peft: error: unknown command '%s' (see peft --help)\n", argv[1]);
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "peft: error: %s\n", e.what());
    return 2;  // CLI11's own codes go above 100; cli.md wants 2 for bad usage
  }
  try {
    set_num_threads(common.threads);
    if (common.precision != "f32" && common.precision != "bf16")
      throw app::UsageError(fmt::format("--precision must be f32 or bf16 (got '{}')", common.precision));
    blas::set_precision(common.precision == "bf16" ? blas::Precision::bf16 : blas::Precision::f32);
    return run ? run() : 0;
  } catch (const app::UsageError& e) {
    std::fprintf(stderr, "peft: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "peft: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (auto& c : msg)
      if (c == '\n') c = ' ';
    std::fprintf(stderr, "peft: error: %s\n", msg.c_str());
    return 1;
  }
}
