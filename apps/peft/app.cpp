// The `peft` program as a library (apps/peft/app.h): every sub-command on one CLI11 app, and the
// error handling that turns any failure into one line and exit 1 or 2 (cli.md).
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string_view>
#include <thread>

#include "apps/peft/app.h"
#include "apps/peft/commands.h"
#include "apps/peft/model_options.h"
#include "core/blas.h"
#include "core/distributed.h"
#include "core/error.h"
#include "core/threads.h"

namespace peft::app {

// One line always: control characters from arguments or file contents (a newline, ESC of a
// terminal sequence) are written as escapes, so an error is exactly one "peft: error:" line and
// cannot drive the terminal (issue 20).
std::string escape_controls(const std::string& msg) {
  std::string out;
  out.reserve(msg.size());
  for (unsigned char c : msg) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

namespace {

void print_error(const std::string& msg) { std::fprintf(stderr, "peft: error: %s\n", escape_controls(msg).c_str()); }

// Under mpirun (issue 18) the ranks run the same command. An error every rank hits alike (a usage
// error, a missing file) is printed once, by rank 0 (World::fail compares the ranks' messages);
// one rank's own error (its shard of the data, its disk) is printed by that rank, naming itself,
// and ends every rank (MPI_Abort), so none is left waiting in a collective.
int fail(const std::string& msg, int code) {
  dist::World& w = dist::World::get();
  if (!w.distributed()) {
    print_error(msg);
    return code;
  }
  return w.fail(escape_controls(msg), code);
}

// Numbers are taken exactly or refused: CLI11 read an empty string as 0 and clamped a number
// beyond int64 to its maximum. Every INT / UINT / FLOAT option of every command gets this check
// (no help text: the validator's description is empty).
std::string check_number(const std::string& type, const std::string& s) {
  if (s.find_first_not_of(" \t") == std::string::npos) return "empty value (expected a number)";
  const bool is_int = type == "INT", is_uint = type == "UINT";
  if (is_int || is_uint) {
    std::string_view v = s;
    if (!v.empty() && v[0] == '+') v.remove_prefix(1);
    if (v.empty() || v.find_first_not_of("-0123456789") != std::string_view::npos) return "";  // CLI11 judges the rest
    std::errc ec{};
    if (is_uint) {
      if (v[0] == '-') return fmt::format("'{}' is negative (expected an integer >= 0)", s);
      uint64_t x = 0;
      ec = std::from_chars(v.data(), v.data() + v.size(), x).ec;
    } else {
      int64_t x = 0;
      ec = std::from_chars(v.data(), v.data() + v.size(), x).ec;
    }
    if (ec == std::errc::result_out_of_range)
      return fmt::format("'{}' is out of range (an integer from {} to {})", s, is_uint ? "0" : "-9223372036854775808",
                         is_uint ? "18446744073709551615" : "9223372036854775807");
    return "";
  }
  errno = 0;
  const double d = std::strtod(s.c_str(), nullptr);
  if (errno == ERANGE && std::isinf(d)) return fmt::format("'{}' is out of range for a double", s);
  return "";
}

void add_number_checks(CLI::App* app) {
  for (CLI::Option* o : app->get_options()) {
    const std::string type = o->get_type_name();
    if (type != "INT" && type != "UINT" && type != "FLOAT") continue;
    o->check(CLI::Validator([type](std::string& s) { return check_number(type, s); }, "", "number"));
  }
  for (CLI::App* sub : app->get_subcommands([](CLI::App*) { return true; })) add_number_checks(sub);
}

// Every sub-command, in --help order.
void add_commands(CLI::App& app, Common& common, Runner& run) {
  add_info_commands(app, common, run);
  add_inspect_command(app, common, run);
  add_train_commands(app, common, run);
  add_demo_command(app, common, run);
  add_graph_command(app, common, run);
  add_gradcheck_command(app, common, run);
  add_check_command(app, common, run);
  add_merge_command(app, common, run);
  add_predict_command(app, common, run);
  add_clip_commands(app, common, run);  // after add_check_command: adds check's CLIP options
  add_clip_eval_command(app, common, run);
  add_clip_demo_command(app, common, run);
  add_bench_command(app, common, run);
  add_augment_command(app, common, run);
  add_compare_commands(app, common, run);
}

}  // namespace

// --threads and --precision take effect.
void apply_common(Common& common) {
  // More threads than cores only thrash (--threads 9999 started 8,000 threads and did not finish
  // in 100 s, issue 20): capped, with a warning.
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (common.threads > cores) {
    std::fprintf(stderr, "peft: warning: --threads %d is more than the %d cores of this machine; using %d\n",
                 common.threads, cores, cores);
    common.threads = cores;
  }
  set_num_threads(common.threads);
  if (common.precision != "f32" && common.precision != "bf16")
    throw UsageError(fmt::format("--precision must be f32 or bf16 (got '{}')", common.precision));
  blas::set_precision(common.precision == "bf16" ? blas::Precision::bf16 : blas::Precision::f32);
}

void build_app(CLI::App& app, Common& common, Runner& run) {
  app.description("peft: parameter-efficient fine-tuning of vision transformers and CLIP on the CPU");
  app.name("peft");
  app.require_subcommand(1);
  app.set_version_flag("--version", [] { return fmt::format("peft 0.1.0\n{}", thread_policy()); });
  add_commands(app, common, run);
  add_number_checks(&app);
}

bool is_command(CLI::App& app, const std::string& name) {
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
    if (sub->get_name() == name) return true;
  return false;
}

int run_program(int argc, char** argv) {
  // MPI_Init (under mpirun / srun) before any thread starts; only rank 0 prints results.
  dist::World& world = dist::World::get();
  if (!world.is_root() && !std::freopen("/dev/null", "w", stdout)) return 1;
  CLI::App app;
  Common common;
  Runner run;
  build_app(app, common, run);
  if (argc > 1 && argv[1][0] != '-' && !is_command(app, argv[1]))
    return fail(fmt::format("unknown command '{}' (see peft --help)", argv[1]), 2);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(e.what(), 2);  // CLI11's own codes go above 100; cli.md wants 2 for bad usage
  }
  try {
    apply_common(common);
    const int rc = run ? run() : 0;
    world.finalize();
    return rc;
  } catch (const UsageError& e) {
    return fail(e.what(), 2);
  } catch (const std::bad_alloc&) {
    return fail("out of memory", 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
}

}  // namespace peft::app
