// `peft augment`: a PNG of augmented training samples (data/augment_grid.h), with the training
// options' names, so a person can see what --augment, --aa, --color-jitter and --reprob do
// before training with them.
#include <fmt/format.h>

#include <algorithm>

#include "apps/peft/commands.h"
#include "apps/peft/model_options.h"
#include "core/error.h"
#include "data/augment_grid.h"
#include "data/dataset.h"
#include "data/train_augment.h"

namespace peft::app {

namespace {

struct AugmentArgs {
  ModelArgs model;
  std::string data, out;
  int64_t train_size = 64;
  data::Augment aug;
  std::string augment = "none";
  data::AugmentGridOptions grid;
};

int run_augment(AugmentArgs& a, const Common& common) {
  // without a model the preprocessing is vit-base's (224 px): what a pretrained ViT would see
  if (a.model.config.empty() && a.model.weights.empty()) a.model.config = "vit-base";
  const nn::ViTConfig c = open_model_or_usage(a.model).config;
  data::Augment aug = data::parse_augment(a.augment);
  aug.aa = a.aug.aa;
  aug.color_jitter = a.aug.color_jitter;
  aug.reprob = a.aug.reprob;
  aug.remode = a.aug.remode;
  aug.recount = a.aug.recount;
  data::TrainAugment(aug, c.preprocess.norm, c.preprocess.interpolation);  // option errors before any decoding
  auto ds = data::open_dataset(a.data, data::Split::train, c.preprocess, c.in_chans, a.train_size, common.seed);
  a.grid.seed = common.seed;
  if (!aug.aa.empty() && aug.color_jitter > 0) fmt::print("augment: --color-jitter is not used with --aa (as in timm)\n");
  const data::Image img = data::augment_grid(ds, aug, c.preprocess, a.grid);
  data::save_png(img, a.out);
  const int64_t rows = (a.grid.samples + a.grid.per_row - 1) / a.grid.per_row;
  fmt::print("augment: {} on {} ({}), seed {}\n", data::augment_str(aug), ds->describe(), c.preprocess.describe(),
             common.seed);
  fmt::print("augment: wrote {} ({}x{} px): {} {}, each the eval image then up to {} augmented views (view v = epoch v+1)\n",
             a.out, img.W, img.H, rows, rows == 1 ? "row" : "rows", std::min(a.grid.per_row, a.grid.samples));
  return 0;
}

}  // namespace

void add_augment_command(CLI::App& app, Common& common, Runner& run) {
  static AugmentArgs a;
  auto* cmd = app.add_subcommand("augment", "a PNG grid of augmented training samples (the train options' augmentation)");
  add_model_options(cmd, a.model, /*config_required=*/false, /*weights_required=*/false);
  cmd->add_option("--data", a.data, "data: FOLDER | cifar10:PATH | cifar100:PATH | procedural:TASK")->required();
  cmd->add_option("--out", a.out, "the PNG to write")->required();
  cmd->add_option("--train-size", a.train_size, "procedural images")->capture_default_str();
  cmd->add_option("--augment", a.augment, "none | flip | shift:N | rrc (comma-separated)")->capture_default_str();
  cmd->add_option("--aa", a.aug.aa, "RandAugment as timm defines it, e.g. rand-m9-mstd0.5");
  cmd->add_option("--color-jitter", a.aug.color_jitter, "colour jitter strength; not used with --aa")->capture_default_str();
  cmd->add_option("--reprob", a.aug.reprob, "random erasing probability")->capture_default_str();
  cmd->add_option("--remode", a.aug.remode, "random erasing fill: const | rand | pixel")->capture_default_str();
  cmd->add_option("--recount", a.aug.recount, "random erasing: up to N boxes")->capture_default_str();
  cmd->add_option("--n", a.grid.samples, "augmented samples in the picture")->capture_default_str();
  cmd->add_option("--per-image", a.grid.per_row, "augmented views of each image (one row per image)")->capture_default_str();
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] { return run_augment(a, common); };
  });
}

}  // namespace peft::app
