// The method flags shared by every command that attaches a PEFT method (cli.md "Method options").
#include <fmt/format.h>

#include "apps/peft/commands.h"

namespace peft::app {

void add_method_options(CLI::App* cmd, MethodOptions& m) {
  cmd->add_option("--prompts", m.prompts, "prompts (vpt-shallow, vpt-deep, cvpt)")->capture_default_str();
  cmd->add_option("--prompt-dropout", m.prompt_dropout, "prompt dropout (training only)")->capture_default_str();
  cmd->add_option("--rank", m.rank, "LoRA rank")->capture_default_str();
  cmd->add_option("--alpha", m.alpha, "LoRA alpha (default: rank)");
  cmd->add_option("--targets", m.targets, "LoRA target linears (names or globs, comma-separated)")->capture_default_str();
  cmd->add_option("--bottleneck", m.bottleneck, "AdaptFormer bottleneck")->capture_default_str();
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
