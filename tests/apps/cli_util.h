// Helpers for tests that run the built `peft` program: run a command, capture output and status.
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace peft::testing {

struct CliResult {
  int status = -1;  // exit status, or 128 + signal
  std::string out, err;
};

inline std::string peft_binary() { return std::string(PEFT_BINARY_DIR) + "/peft"; }

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `peft ARGS` through the shell, stdout and stderr captured separately.
inline CliResult run_peft(const std::string& args, const std::string& tag = "cli") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("peft_cli_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string out = (dir / (tag + ".out")).string(), err = (dir / (tag + ".err")).string();
  std::string cmd = peft_binary() + " " + args + " >" + out + " 2>" + err;
  int st = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace peft::testing
