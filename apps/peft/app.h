// The `peft` program as a library: the CLI11 app with every sub-command, built without running
// anything, so that tests and the argv fuzz harness (tests/fuzz/fuzz_cli.cpp) parse exactly what
// the program parses. main.cpp only calls run_program.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "apps/peft/commands.h"

namespace peft::app {

// Registers every sub-command (in --help order), --version, and the exact-number check of every
// INT / UINT / FLOAT option on `app`. Parsing sets `common` and, for the chosen command, `run`.
void build_app(CLI::App& app, Common& common, Runner& run);
// Whether `name` is one of the app's sub-commands.
bool is_command(CLI::App& app, const std::string& name);
// --threads (capped at the core count, with a warning) and --precision take effect.
void apply_common(Common& common);
// Control characters written as escapes (\n, \x1b): an error message stays one line.
std::string escape_controls(const std::string& msg);
// The whole program: parse, run the command, one "peft: error:" line and exit 1 or 2 on failure.
int run_program(int argc, char** argv);

}  // namespace peft::app
