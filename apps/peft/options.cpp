// The option groups shared by the commands: --threads/--seed/--json/--precision, and the method
// flags of every command that attaches a PEFT method (cli.md "Method options").
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "apps/peft/commands.h"

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

CLI::Option* add_list_option(CLI::App* cmd, const std::string& name, std::vector<std::string>& items,
                             const std::string& help) {
  // One argument per occurrence (allow_extra_args false): `--prompts 1 10` stays an error.
  CLI::Option* o = cmd->add_option(name, items, help)->delimiter(',')->allow_extra_args(false);
  if (!items.empty()) o->default_str(fmt::format("{}", fmt::join(items, ",")));
  return o;
}

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

void require_vision_method_and_batch(const std::string& method, int64_t batch) {
  require_vision_method(method);
  if (batch < 1) throw UsageError(fmt::format("--batch: must be at least 1 (got {})", batch));
}

}  // namespace peft::app
