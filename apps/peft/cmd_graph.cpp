// `peft graph`: the tape of one training step (forward + loss) as Graphviz DOT, and a PNG when
// Graphviz's `dot` is installed.
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "apps/peft/commands.h"
#include "autograd/ops.h"
#include "autograd/to_dot.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "nn/config.h"
#include "peft/method.h"

extern char** environ;

namespace peft::app {

namespace {

struct GraphArgs {
  std::string config, method = "linear", out = "graph.dot";
  int64_t batch = 2;
  bool no_png = false;
  MethodOptions method_opts;
};

// Runs `dot -Tpng dot_path -o png_path` without a shell. Returns "" on success, else why not.
std::string render_png(const std::string& dot_path, const std::string& png_path) {
  std::string a0 = "dot", a1 = "-Tpng", a3 = "-o";
  std::string a2 = dot_path, a4 = png_path;
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, "dot", nullptr, nullptr, argv, environ);
  if (rc != 0)
    return rc == ENOENT ? "Graphviz `dot` is not on PATH (install graphviz for a PNG)"
                        : fmt::format("cannot run `dot` ({})", std::strerror(rc));
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return fmt::format("waiting for `dot` failed ({})", std::strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "`dot` failed; the DOT file is still there";
  return "";
}

}  // namespace

void add_graph_command(CLI::App& app, Common& common, Runner& run) {
  static GraphArgs a;
  auto* cmd = app.add_subcommand("graph", "write the autograd graph of one training step (forward + loss) as DOT/PNG");
  cmd->add_option("--config", a.config, "model config: preset name or JSON file")->required();
  cmd->add_option("--method", a.method, "PEFT method (peft methods)")->required();
  cmd->add_option("--out", a.out, "DOT file to write (a PNG beside it when Graphviz is installed)")->capture_default_str();
  cmd->add_option("--batch", a.batch, "images in the random batch")->capture_default_str();
  cmd->add_flag("--no-png", a.no_png, "do not run Graphviz even when it is installed");
  add_method_options(cmd, a.method_opts);
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      require_vision_method_and_batch(a.method, a.batch);
      nn::ViTConfig c = nn::load_vit_config(a.config);
      const int64_t K = c.num_classes > 0 ? c.num_classes : 10;
      auto model = build_model(c, a.method, a.method_opts, K, common.seed);
      nn::VisionTransformer& vit = *model;
      vit.train();  // the graph of a training step: dropout and drop-path as configured

      // One random batch: images [B, C, S, S], labels [B] in [0, K).
      Generator data_gen(common.seed + 2);
      Tensor images = randn({a.batch, c.in_chans, c.image_size, c.image_size}, data_gen);
      std::vector<int64_t> y(a.batch);
      for (auto& v : y) v = static_cast<int64_t>(data_gen.next_u64() % static_cast<uint64_t>(K));
      Tensor labels = from_vector_i64(y, {a.batch});
      Tensor loss = cross_entropy(vit.forward(images), labels);

      std::map<const TensorImpl*, std::string> names;
      for (auto& [n, p] : vit.named_parameters()) names[p.impl()] = n;
      names[images.impl()] = "images";
      names[labels.impl()] = "labels";
      write_text_atomic(a.out, autograd::to_dot(loss, names));
      autograd::TapeStats s = autograd::tape_stats(loss);
      fmt::print("graph: {} on {}: {} ops, {} trainable tensors, {:.1f} KiB saved for backward -> {}\n", a.method,
                 a.config, s.ops, s.trainable_leaves, s.saved_bytes / 1024.0, a.out);
      if (!a.no_png) {
        std::string png = std::filesystem::path(a.out).replace_extension(".png").string();
        std::string why = render_png(a.out, png);
        if (why.empty())
          fmt::print("graph: rendered {}\n", png);
        else
          fmt::print(stderr, "peft graph: note: {}\n", why);
      }
      return 0;
    };
  });
}

}  // namespace peft::app
