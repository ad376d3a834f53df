// `peft demo`: the embedded default experiment, no downloads (README, scripts/demo.sh); the
// experiment itself is peft/demo.h.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/peft/commands.h"
#include "core/atomic_file.h"
#include "peft/demo.h"

namespace peft::app {

void add_demo_command(CLI::App& app, Common& common, Runner& run) {
  static DemoConfig o;
  auto* cmd = app.add_subcommand("demo", "the built-in experiment: pretrain on procedural data, then adapt with each method");
  cmd->add_option("--out", o.out, "output folder")->capture_default_str();
  cmd->add_option("--source", o.source, "procedural source task (peft tasks)")->capture_default_str();
  cmd->add_option("--target", o.target, "procedural target task")->capture_default_str();
  cmd->add_flag("--quick", o.quick, "tiny sizes (smoke test)");
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      namespace fs = std::filesystem;
      o.seed = common.seed;
      o.world = &dist::World::get();  // under mpirun the methods are spread over the ranks
      const DemoReport r = run_demo(o, [](const std::string& line) { fmt::print("{}\n", line); });
      if (!o.world->is_root()) return 0;  // rank 0 has every row: it prints and writes
      fmt::print("\n{}", demo_table(o, r));
      write_text_atomic((fs::path(o.out) / "demo.json").string(), demo_json(r) + "\n");
      write_text_atomic((fs::path(o.out) / "demo.csv").string(), demo_csv(r));
      fmt::print("results: {}/demo.json, {}/demo.csv\n", o.out, o.out);
      if (common.json) fmt::print("{}\n", nlohmann::json::parse(demo_json(r)).dump());
      return 0;
    };
  });
}

}  // namespace peft::app
