// Helpers for tests that run the built `peft` program: run a command, capture output and status.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

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

// A fresh folder for one test (named after the process and the running test), removed at the end.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() / (tag + "_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

}  // namespace peft::testing
