// `peft check` (interop.md "The check command"): one forward and backward written to a file
// that a PyTorch reference compares against.
#include <fmt/format.h>

#include "apps/peft/commands.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "peft/method.h"
#include "peft/methods/vision_check.h"

namespace peft::app {

namespace {

struct CheckArgs {
  VisionCheckRequest req;
  std::string out;
};

// The vision path: ViT methods (methods.md "Linear probe" to "AdaptFormer"). CLIP methods branch beside it in run_check.
int check_vision(const CheckArgs& a) {
  nn::NamedTensors result;
  try {
    result = run_vision_check(a.req);
  } catch (const MethodError& e) {
    throw UsageError(e.what());
  }
  save_safetensors(a.out, result, {{"method", a.req.method}});
  fmt::print("check: {} -> {} ({} tensors, loss {:.6f})\n", a.req.method, a.out, result.size(), result[1].second.item());
  return 0;
}

int run_check(const CheckArgs& a) {
  // CLIP methods (cmd_check_clip.cpp)
  if (int rc = run_clip_check(a.req.config, a.req.weights, a.req.method, a.req.options, a.req.adapter, a.req.inputs, a.out, a.req.seed); rc >= 0)
    return rc;
  if (is_vision_method(a.req.method)) return check_vision(a);
  std::string names;
  for (auto& m : vision_methods()) names += (names.empty() ? "" : ", ") + m.name;
  throw UsageError(fmt::format("--method: unknown method '{}' (available: {})", a.req.method, names));
}

}  // namespace

void add_check_command(CLI::App& app, Common& common, Runner& run) {
  static CheckArgs a;
  auto* cmd = app.add_subcommand("check", "one eval-mode forward + backward written for a reference comparison");
  cmd->add_option("--config", a.req.config, "model config: preset name or JSON file (default: inferred from --weights)");
  cmd->add_option("--weights", a.req.weights, "base weights (safetensors)")->required();
  cmd->add_option("--method", a.req.method, "PEFT method (peft methods)")->required();
  add_method_options(cmd, a.req.options);  // prompt dropout is training-only: off here
  cmd->add_option("--adapter", a.req.adapter, "initial values of the trainable tensors (safetensors)");
  cmd->add_option("--inputs", a.req.inputs, "images [B,C,S,S] (F32) and labels [B] (I64)")->required();
  cmd->add_option("--out", a.out, "result: logits, loss, grad.{name} (safetensors)")->required();
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      a.req.seed = common.seed;
      return run_check(a);
    };
  });
}

}  // namespace peft::app
