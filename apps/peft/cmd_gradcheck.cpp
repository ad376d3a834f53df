// `peft gradcheck`: float64 central-difference check of a method's trainable tensors and of the
// input, on a whole model built from a config. Every element costs two forward passes, so it is
// meant for small configs (a few thousand trainable elements: seconds; vit-micro full: minutes).
#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "apps/peft/commands.h"
#include "autograd/backward.h"
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/config.h"
#include "nn/module.h"
#include "peft/method.h"
#include "peft/methods/adapted.h"
#include "peft/methods/adapted.h"

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

// The absolute tolerance for one tensor: --atol scaled by its largest gradient when that is below 1.
// A model's input gradients are often ~1e-4, where a fixed atol of 1e-5 would let a 10% error
// through; the floor of 1e-9 stays above float64 central-difference round-off (~1e-10 for a loss
// of order 1 and eps 1e-6).
double scaled_atol(const GradcheckFn& fn, const Tensor& t, double atol) {
  Tensor(t).zero_grad(true);
  backward(fn({t}));
  double gmax = 0;
  if (t.grad().defined())
    for (double v : t.grad().to_vector<double>()) gmax = std::max(gmax, std::fabs(v));
  Tensor(t).zero_grad(true);
  return std::max(1e-9, atol * std::min(1.0, gmax));
}

struct Row {
  std::string name;
  Tensor t;
};

}  // namespace

void add_gradcheck_command(CLI::App& app, Common& common, Runner& run) {
  static GradcheckArgs a;
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
      require_vision_method(a.method);
      if (a.batch < 1) throw UsageError(fmt::format("--batch: must be at least 1 (got {})", a.batch));
      nn::ViTConfig c = nn::load_vit_config(a.config);
      const int64_t K = c.num_classes > 0 ? c.num_classes : 10;
      auto model = build_model(c, a.method, a.method_opts, K, common.seed);
      nn::VisionTransformer& vit = *model;
      vit.to(DType::f64);
      vit.eval();  // dropout, drop-path and prompt dropout off: the checked function must be deterministic

      // Trainable tensors get a small seeded nudge, so that a zero-initialised one (LoRA B,
      // AdaptFormer's up projection) does not make the gradients of the others exactly zero.
      std::vector<Row> rows;
      for (auto& [n, p] : vit.named_parameters())
        if (p.requires_grad() && nn::glob_match(a.tensors, n)) rows.push_back({n, p});
      if (!a.no_perturb) {
        NoGradGuard ng;
        Generator nudge(common.seed + 3);
        for (auto& [n, p] : vit.named_parameters())
          if (p.requires_grad()) Tensor(p).copy_(add(p, randn(p.sizes(), nudge, DType::f64, 0.0, 0.02)));
      }
      // Values a method detaches in backward (DoRA's row norm) stay fixed while checking, so the
      // differences measure the gradient the method defines (peft/methods/adapted.h).
      for (methods::Adapted* m : methods::adapted_modules(vit)) m->hold_detached(true);
      // Values a method detaches in backward (DoRA's row norm) stay fixed while checking, so the
      // differences measure the gradient the method defines (peft/methods/adapted.h).
      for (methods::Adapted* m : methods::adapted_modules(vit)) m->hold_detached(true);

      // One random batch: images [B, C, S, S] float64, labels [B] in [0, K).
      Generator data_gen(common.seed + 2);
      Tensor images = randn({a.batch, c.in_chans, c.image_size, c.image_size}, data_gen, DType::f64);
      std::vector<int64_t> y(a.batch);
      for (auto& v : y) v = static_cast<int64_t>(data_gen.next_u64() % static_cast<uint64_t>(K));
      Tensor labels = from_vector_i64(y, {a.batch});
      if (!a.no_input) rows.push_back({"input (images)", images});
      if (rows.empty()) throw ValueError(fmt::format("--tensors '{}': matches no trainable tensor of method '{}'", a.tensors, a.method));

      int64_t elements = 0;
      for (auto& r : rows) elements += r.t.numel();
      fmt::print("gradcheck: {} on {} (float64, batch {}, eps {}, atol {}, rtol {}): {} elements, about {} forward passes\n",
                 a.method, a.config, a.batch, a.check.eps, a.check.atol, a.check.rtol, elements, 2 * elements);
      fmt::print("{:<44} {:<18} {:>10} {:>12} {:>12} {:>9}  {}\n", "tensor", "shape", "elements", "max abs err", "max rel err",
                 "atol", "result");

      BreakOpGuard broken(a.break_op, a.break_scale);
      // The loss of one training step; gradcheck perturbs the checked tensor in place.
      GradcheckFn loss = [&](const std::vector<Tensor>&) { return cross_entropy(vit.forward(images), labels); };
      int failed = 0;
      double worst_abs = 0, worst_rel = 0;
      for (auto& r : rows) {
        const bool is_input = r.t.impl() == images.impl();
        if (is_input) images.requires_grad_(true);  // only now: parameter checks see the real training tape
        GradcheckOptions opt = a.check;
        opt.atol = scaled_atol(loss, r.t, a.check.atol);
        GradcheckResult res = gradcheck(loss, {r.t}, opt);
        if (is_input) images.requires_grad_(false);
        worst_abs = std::max(worst_abs, res.max_abs_error);
        worst_rel = std::max(worst_rel, res.max_rel_error);
        failed += !res.ok;
        fmt::print("{:<44} {:<18} {:>10} {:>12.3g} {:>12.3g} {:>9.2g}  {}\n", r.name, shape_str(r.t.sizes()), r.t.numel(),
                   res.max_abs_error, res.max_rel_error, opt.atol, res.ok ? "PASS" : "FAIL");
        if (!res.ok) fmt::print("    {}\n", res.message);
      }
      vit.zero_grad();
      const int total = static_cast<int>(rows.size());
      if (failed == 0)
        fmt::print("gradcheck: PASS ({} tensors)\n", total);
      else
        fmt::print("gradcheck: FAIL ({} of {} tensors)\n", failed, total);
      if (common.json)
        fmt::print("{}\n", nlohmann::json{{"method", a.method},
                                          {"config", a.config},
                                          {"tensors", total},
                                          {"failed", failed},
                                          {"elements", elements},
                                          {"max_abs_error", worst_abs},
                                          {"max_rel_error", worst_rel},
                                          {"ok", failed == 0}}
                               .dump());
      return failed == 0 ? 0 : 1;
    };
  });
}

}  // namespace peft::app
