// The method flags shared by every command that attaches a PEFT method (cli.md "Method options").
#include <fmt/format.h>

#include "apps/peft/commands.h"

namespace peft::app {

void add_method_options(CLI::App* cmd, MethodOptions& m, bool with_prompts) {
  // A typed flag is recorded in m.given; the others take the chosen method's default.
  m.use_method_defaults = true;
  auto given = [&m](const char* key) { return [&m, key](const std::string&) { m.given.insert(key); }; };
  std::string prompt_methods, rank_methods, bottleneck_methods;
  for (const MethodDescriptor& d : vision_method_registry()) {
    if (d.uses("prompts")) prompt_methods += (prompt_methods.empty() ? "" : ", ") + d.name;
    if (d.uses("rank")) rank_methods += (rank_methods.empty() ? "" : ", ") + d.name;
    if (d.uses("bottleneck")) bottleneck_methods += (bottleneck_methods.empty() ? "" : ", ") + d.name;
  }
  if (with_prompts)
    cmd->add_option("--prompts", m.prompts, "prompts M (" + prompt_methods + ")")->capture_default_str()->each(given("prompts"));
  cmd->add_option("--prompt-dropout", m.prompt_dropout, "prompt dropout (training only)")
      ->capture_default_str()
      ->each(given("prompt_dropout"));
  cmd->add_option("--rank", m.rank, "rank r (" + rank_methods + ")")->capture_default_str()->each(given("rank"));
  cmd->add_option("--alpha", m.alpha, "LoRA/DoRA alpha (default: rank); FacT scale (default 1)")->each(given("alpha"));
  cmd->add_option("--targets", m.targets, "LoRA/DoRA target linears (names or globs, comma-separated)")
      ->capture_default_str()
      ->each(given("targets"));
  cmd->add_option("--bottleneck", m.bottleneck, "bottleneck b (" + bottleneck_methods + "; default per method)")
      ->each(given("bottleneck"));
}

std::string vision_method_list() {
  std::string names;
  for (auto& mi : vision_methods()) names += (names.empty() ? "" : ", ") + mi.name;
  return names;
}

void require_vision_method(const std::string& method) {
  if (!is_vision_method(method))
    throw UsageError(fmt::format("--method: unknown method '{}' (available: {})", method, vision_method_list()));
}

}  // namespace peft::app
