// libFuzzer harness: argv from the fuzzer, parsed by the `peft` program's own CLI11 app
// (apps/peft/app.h), every sub-command and option. The input is the arguments after "peft",
// separated by NUL bytes (seeds in tests/fuzz/corpus/cli). Parsing may only fail with a CLI11
// ParseError; --threads / --precision may only fail with a UsageError. `presets`, `tasks`,
// `methods` and `inspect --config vit-micro|vit-tiny` are also run (no files: inspect builds the
// ViT and attaches --method with the fuzzed options, where `--rank 72057594037927937` once ended
// in SIGSEGV) and may only fail with a peft::Error or a UsageError. Other commands read files,
// train or write output: they are parsed, not run.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/peft/app.h"
#include "core/error.h"

namespace {

std::vector<std::string> split_args(const uint8_t* data, size_t size) {
  std::vector<std::string> args;
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  if (!cur.empty()) args.push_back(cur);
  return args;
}

// inspect attaches the method for real: --rank, --bottleneck and --prompts are capped at 2^16 by
// the method options (larger values must be refused in one line: that is what is fuzzed), but a
// value near the cap legitimately allocates gigabytes (rank 65536 LoRA on every linear), which
// only trips the fuzzer's memory limit. Those inputs are parsed, not run.
bool sizes_small_or_refused(CLI::App* cmd) {
  for (const char* name : {"--rank", "--bottleneck", "--prompts"}) {
    CLI::Option* o = cmd->get_option_no_throw(name);
    if (o == nullptr || o->count() == 0) continue;
    try {
      const int64_t v = o->as<int64_t>();
      if (v > 512 && v <= (int64_t{1} << 16)) return false;
    } catch (const CLI::Error&) {
      return false;
    }
  }
  return true;
}

bool runnable(CLI::App& app) {
  for (const char* name : {"presets", "tasks", "methods"})
    if (app.got_subcommand(name)) return true;
  if (!app.got_subcommand("inspect")) return false;
  CLI::App* cmd = app.get_subcommand("inspect");
  CLI::Option* config = cmd->get_option_no_throw("--config");
  CLI::Option* weights = cmd->get_option_no_throw("--weights");
  if (config == nullptr || config->count() != 1) return false;
  const std::string name = config->as<std::string>();
  if (name != "vit-micro" && name != "vit-tiny") return false;
  if (weights != nullptr && weights->count() > 0) return false;
  return sizes_small_or_refused(cmd);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // the commands that run print their tables; libFuzzer reports on stderr
  if (!std::freopen("/dev/null", "w", stdout)) return 1;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  std::vector<std::string> args = split_args(data, size);
  std::vector<char*> argv;
  std::string program = "peft";
  argv.push_back(program.data());
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  CLI::App app;
  app::Common common;
  app::Runner run;
  app::build_app(app, common, run);
  try {
    app.parse(static_cast<int>(argv.size() - 1), argv.data());
  } catch (const CLI::ParseError&) {
    return 0;  // usage error, --help or --version: the program prints it and exits
  }
  try {
    app::apply_common(common);
  } catch (const app::UsageError&) {
    return 0;
  }
  if (!run || !runnable(app)) return 0;
  try {
    run();
  } catch (const Error&) {
  } catch (const app::UsageError&) {
  }
  return 0;
}
