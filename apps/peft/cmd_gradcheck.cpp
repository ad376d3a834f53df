// `peft gradcheck`: float64 central-difference check of a method's trainable tensors and of the
// input, on a whole model built from a config. Every element costs two forward passes, so it is
// meant for small configs (a few thousand trainable elements: seconds; vit-micro full: minutes).
#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "apps/peft/commands.h"
#include "autograd/backward.h"
#include "core/error.h"
#include "nn/config.h"
#include "nn/module.h"
#include "peft/method.h"
#include "peft/method_gradcheck.h"

namespace peft::app {

namespace {

struct GradcheckArgs {
  std::string config, method = "linear", tensors = "*";
  int64_t batch = 2;
  bool no_input = false, no_perturb = false;
  GradcheckOptions check;
  std::string break_op;      // testing aid: scale this op's gradients (autograd/backward.h)
  double break_scale = 1.01;
  MethodOptions method_opts;
};

// Clears the broken-backward hook however the command ends.
struct BreakOpGuard {
  explicit BreakOpGuard(const std::string& op, double scale) {
    if (!op.empty()) set_debug_grad_scale(op, scale);
  }
  ~BreakOpGuard() { clear_debug_grad_scale(); }
  BreakOpGuard(const BreakOpGuard&) = delete;
  BreakOpGuard& operator=(const BreakOpGuard&) = delete;
};

GradcheckArgs a;  // the parsed options (one command per process)

void print_header(int64_t elements) {
  fmt::print("gradcheck: {} on {} (float64, batch {}, eps {}, atol {}, rtol {}): {} elements, about {} forward passes\n",
             a.method, a.config, a.batch, a.check.eps, a.check.atol, a.check.rtol, elements, 2 * elements);
  fmt::print("{:<44} {:<18} {:>10} {:>12} {:>12} {:>9}  {}\n", "tensor", "shape", "elements", "max abs err", "max rel err",
             "atol", "result");
}

void print_row(const MethodGradcheckRow& r) {
  fmt::print("{:<44} {:<18} {:>10} {:>12.3g} {:>12.3g} {:>9.2g}  {}\n", r.name, shape_str(r.shape), r.numel,
             r.result.max_abs_error, r.result.max_rel_error, r.atol, r.result.ok ? "PASS" : "FAIL");
  if (!r.result.ok) fmt::print("    {}\n", r.result.message);
}

}  // namespace

void add_gradcheck_command(CLI::App& app, Common& common, Runner& run) {
  auto* cmd = app.add_subcommand(
      "gradcheck", "float64 gradient check of a method's trainable tensors and the input (for small configs)");
  cmd->add_option("--config", a.config, "model config: preset name or JSON file (keep it small)")->required();
  cmd->add_option("--method", a.method, "PEFT method (peft methods)")->required();
  cmd->add_option("--batch", a.batch, "images in the random batch")->capture_default_str();
  cmd->add_option("--tensors", a.tensors, "check only the trainable tensors matching this glob")->capture_default_str();
  cmd->add_flag("--no-input", a.no_input, "do not check the gradient of the input images");
  cmd->add_flag("--no-perturb", a.no_perturb,
                "keep the method's initial values (zero-initialised tensors such as LoRA B then hide other gradients)");
  cmd->add_option("--eps", a.check.eps, "central-difference step")->capture_default_str();
  cmd->add_option("--atol", a.check.atol, "absolute tolerance, scaled by a tensor's largest gradient when that is below 1 (floor 1e-9)")->capture_default_str();
  cmd->add_option("--rtol", a.check.rtol, "relative tolerance")->capture_default_str();
  // Hidden testing aids: prove that the check fails on a wrong backward.
  cmd->add_option("--break-op", a.break_op, "scale the gradients of this op by --break-scale")->group("");
  cmd->add_option("--break-scale", a.break_scale, "factor for --break-op")->group("");
  add_method_options(cmd, a.method_opts);
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      require_vision_method_and_batch(a.method, a.batch);
      MethodGradcheckRequest r;
      r.config = nn::load_vit_config(a.config);
      r.method = a.method;
      r.options = a.method_opts;
      r.tensors = a.tensors;
      r.batch = a.batch;
      r.input = !a.no_input;
      r.perturb = !a.no_perturb;
      r.check = a.check;
      r.seed = common.seed;
      BreakOpGuard broken(a.break_op, a.break_scale);
      const MethodGradcheckReport rep = gradcheck_method(r, print_header, print_row);
      const int total = static_cast<int>(rep.rows.size());
      if (rep.ok())
        fmt::print("gradcheck: PASS ({} tensors)\n", total);
      else
        fmt::print("gradcheck: FAIL ({} of {} tensors)\n", rep.failed, total);
      if (common.json)
        fmt::print("{}\n", nlohmann::json{{"method", a.method},
                                          {"config", a.config},
                                          {"tensors", total},
                                          {"failed", rep.failed},
                                          {"elements", rep.elements},
                                          {"max_abs_error", rep.worst_abs},
                                          {"max_rel_error", rep.worst_rel},
                                          {"ok", rep.ok()}}
                               .dump());
      return rep.ok() ? 0 : 1;
    };
  });
}

}  // namespace peft::app
