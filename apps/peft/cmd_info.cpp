// `peft presets` and `peft tasks`: what a user can pass to --config and --data procedural:TASK.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "apps/peft/commands.h"
#include "data/procedural.h"
#include "nn/clip.h"
#include "nn/config.h"

namespace peft::app {

void add_info_commands(CLI::App& app, Common& /*common*/, Runner& run) {
  auto* presets = app.add_subcommand("presets", "list the built-in model configs (--config NAME)");
  presets->callback([&run] {
    run = [] {
      fmt::print("{:<12} {:>6} {:>5} {:>5} {:>5} {:>5} {:>8}\n", "preset", "image", "patch", "dim", "depth", "heads", "classes");
      for (const auto& n : nn::vit_preset_names()) {
        nn::ViTConfig c = nn::load_vit_config(n);
        fmt::print("{:<12} {:>6} {:>5} {:>5} {:>5} {:>5} {:>8}\n", n, c.image_size, c.patch_size, c.dim, c.depth, c.heads,
                   c.num_classes);
      }
      for (const auto& n : nn::clip_preset_names()) {
        nn::CLIPConfig c = nn::load_clip_config(n);
        fmt::print("{:<12} {:>6} {:>5} {:>5} {:>5} {:>5} {:>8}  CLIP: text width {}, {} layers, embed {}\n", n,
                   c.vision.image_size, c.vision.patch_size, c.vision.dim, c.vision.depth, c.vision.heads, "-",
                   c.text.width, c.text.layers, c.embed_dim);
      }
      return 0;
    };
  });
  auto* tasks = app.add_subcommand("tasks", "list the built-in procedural tasks (--data procedural:TASK)");
  tasks->callback([&run] {
    run = [] {
      for (const auto& t : data::procedural_tasks())
        fmt::print("{:<16} {} ({} classes: {})\n", t.name, t.description, t.classes.size(), fmt::join(t.classes, ", "));
      return 0;
    };
  });
}

}  // namespace peft::app
