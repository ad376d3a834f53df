// The `peft` program's sub-commands: each file registers one family on the CLI11 app.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

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
};

// Each registers its sub-command(s); the callback runs after parsing and returns the exit code.
using Runner = std::function<int()>;
void add_info_commands(CLI::App& app, Common& common, Runner& run);     // presets, tasks
void add_inspect_command(CLI::App& app, Common& common, Runner& run);   // inspect
void add_train_commands(CLI::App& app, Common& common, Runner& run);    // pretrain, train, eval
void add_demo_command(CLI::App& app, Common& common, Runner& run);      // demo

// Adds --threads/--seed/--json to a sub-command.
void add_common_options(CLI::App* cmd, Common& common);

}  // namespace peft::app
