// `peft pretrain`, `peft train`, `peft eval` and `peft methods` (cli.md).
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/peft/commands.h"
#include "apps/peft/model_options.h"
#include "autograd/anomaly.h"
#include "core/atomic_file.h"
#include "core/distributed.h"
#include "core/out_dir.h"
#include "core/error.h"
#include "core/process_stats.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/mixup.h"
#include "data/train_augment.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "core/io/safetensors.h"
#include "peft/memory_guard.h"
#include "peft/clip_methods.h"
#include "peft/cost.h"
#include "peft/head_cache.h"
#include "peft/method.h"
#include "peft/adapter.h"
#include "peft/class_map.h"
#include "peft/model_source.h"
#include "peft/trainer.h"
#include "peft/train/batch_source.h"

namespace peft::app {

namespace {

namespace fs = std::filesystem;

struct Args {
  ModelArgs model;
  std::string method = "linear", data, val, out, adapter;
  bool overwrite = false;
  int64_t train_size = 2000, val_size = 500, shots = 0, batch = 32;
  TrainConfig train;
  MethodOptions method_opts;
  bool checkpoint_activations = false;  // --checkpoint-activations (nn::VisionTransformer)
};

void add_data_options(CLI::App* cmd, Args& a, bool need_val) {
  cmd->add_option("--data", a.data, "training data: FOLDER | cifar10:PATH | cifar100:PATH | procedural:TASK")->required();
  if (need_val) cmd->add_option("--val", a.val, "validation data (same forms as --data)");
  cmd->add_option("--train-size", a.train_size, "procedural training images")->capture_default_str();
  cmd->add_option("--val-size", a.val_size, "procedural validation images")->capture_default_str();
  cmd->add_option("--shots", a.shots, "sample K training images per class (seeded)");
}

// timm's --mixup/--cutmix family, --layer-decay and --workers (data/mixup.h, nn/optim/layer_decay.h,
// data/loader.h).
void add_mixup_decay_worker_options(CLI::App* cmd, TrainConfig& t) {
  data::MixupOptions& m = t.mixup;
  cmd->add_option("--mixup", m.mixup_alpha, "mixup alpha: Beta(A, A) mixing of each batch with its reverse (0 = off)")->capture_default_str();
  cmd->add_option("--cutmix", m.cutmix_alpha, "cutmix alpha: a box of the reversed batch pasted in (0 = off)")->capture_default_str();
  cmd->add_option("--mixup-prob", m.prob, "probability of mixing a batch (or pair, element)")->capture_default_str();
  cmd->add_option("--mixup-switch-prob", m.switch_prob, "with both on: probability of cutmix instead of mixup")->capture_default_str();
  cmd->add_option("--mixup-mode", m.mode, "batch | pair | elem: one lambda per batch, pair or element")->capture_default_str();
  cmd->add_option("--layer-decay", t.layer_decay, "lr x D^(depth+1-layer) per block: head and norm x1, patch embedding least (0 = off)")->capture_default_str();
  cmd->add_option("--workers", t.workers, "image decoding threads (any N gives the same result)")->capture_default_str();
}

void add_training_options(CLI::App* cmd, Args& a) {
  TrainConfig& t = a.train;
  add_mixup_decay_worker_options(cmd, t);
  cmd->add_option("--epochs", t.epochs, "epochs")->required();
  cmd->add_option("--out", a.out, "output folder")->required();
  cmd->add_option("--batch", t.batch, "batch size")->capture_default_str();
  cmd->add_option("--lr", t.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", t.weight_decay, "weight decay (not on biases, norms, prompts, embeddings)")->capture_default_str();
  cmd->add_option("--warmup-epochs", t.warmup_epochs, "linear warm-up epochs (from --warmup-lr), then the schedule")->capture_default_str();
  cmd->add_option("--sched", t.sched, "learning-rate schedule after the warm-up: cosine | step | plateau | constant")->capture_default_str();
  cmd->add_option("--min-lr", t.min_lr, "lowest learning rate of cosine, step and plateau")->capture_default_str();
  cmd->add_option("--warmup-lr", t.warmup_lr, "learning rate the warm-up starts from")->capture_default_str();
  cmd->add_option("--decay-epochs", t.decay_epochs, "step: epochs between decays")->capture_default_str();
  cmd->add_option("--decay-rate", t.decay_rate, "step, plateau: factor of each decay")->capture_default_str();
  cmd->add_option("--patience-epochs", t.patience_epochs, "plateau: epochs without a better val top-1 before a decay")->capture_default_str();
  cmd->add_option("--patience", t.patience, "early stopping: stop after N epochs without a better val top-1 (0 = off)")->capture_default_str();
  cmd->add_option("--accum-steps", t.accum_steps, "gradient accumulation: one update per N batches (= a batch N times larger)")->capture_default_str();
  cmd->add_flag("--model-ema", t.model_ema, "keep an EMA of the trainable weights; it is validated and saved");
  cmd->add_option("--model-ema-decay", t.model_ema_decay, "EMA decay per update")->capture_default_str();
  cmd->add_option("--optimizer", t.optimizer, "adamw | sgd")->capture_default_str();
  cmd->add_option("--augment", t.augment, "none | flip | shift:N | rrc (comma-separated)")->capture_default_str();
  cmd->add_option("--aa", t.aa, "RandAugment as timm defines it, e.g. rand-m9-mstd0.5 (keys m n p mstd mmax inc)");
  cmd->add_option("--color-jitter", t.color_jitter, "colour jitter strength (brightness, contrast, saturation); not used with --aa, as in timm")->capture_default_str();
  cmd->add_option("--reprob", t.reprob, "random erasing probability (on the normalised image)")->capture_default_str();
  cmd->add_option("--remode", t.remode, "random erasing fill: const | rand | pixel")->capture_default_str();
  cmd->add_option("--recount", t.recount, "random erasing: up to N boxes per image")->capture_default_str();
  cmd->add_option("--label-smoothing,--smoothing", t.label_smoothing, "label smoothing (also of the mixup/cutmix targets)")->capture_default_str();
  cmd->add_option("--clip-grad", t.clip_grad, "clip the global gradient norm (0 = off)")->capture_default_str();
  cmd->add_flag("--no-progress", [&t](int64_t) { t.progress = false; }, "no progress bar");
  cmd->add_flag("--detect-anomaly", [](int64_t) { set_detect_anomaly(true); }, "stop at the first op whose output or gradient is NaN/Inf, naming it (slower)");
  cmd->add_flag("--resume", t.resume, "continue from DIR/checkpoint.safetensors (bit-identical to an uninterrupted run)");
  cmd->add_flag("--extend", t.extend, "with --resume: more --epochs than the run's (the schedule is recomputed for the new total from where it stands)");
  cmd->add_flag("--overwrite", a.overwrite, "a fresh run into a folder that holds another run: remove that run's files first");
  cmd->add_option("--checkpoint-steps", t.save_every, "also write the resume checkpoint every N steps (default: at the end of each epoch)");
  cmd->add_flag("--checkpoint-activations,--grad-checkpointing", a.checkpoint_activations,
                "keep only each block's input and recompute the block in backward: less memory, one more forward "
                "per step, the same gradients");
  cmd->add_option("--save-every", t.save_every_epochs, "also keep the weights of every Nth epoch (adapter-epochN.safetensors)");
}

// Bad values are exit 1 (cli.md) and must be refused before any work, naming the option:
// a NaN learning rate would otherwise only show up as a NaN loss many steps later.
void check_training_values(const TrainConfig& t) {
  auto bad = [](const char* opt, double v, const char* want) {
    throw ValueError(fmt::format("{}: must be {} (got {})", opt, want, v));
  };
  if (t.epochs <= 0) bad("--epochs", static_cast<double>(t.epochs), "positive");
  if (t.batch <= 0) bad("--batch", static_cast<double>(t.batch), "positive");
  if (!std::isfinite(t.lr) || t.lr <= 0) bad("--lr", t.lr, "a positive finite number");
  if (!std::isfinite(t.weight_decay) || t.weight_decay < 0) bad("--weight-decay", t.weight_decay, "finite and >= 0");
  if (!std::isfinite(t.warmup_epochs) || t.warmup_epochs < 0) bad("--warmup-epochs", t.warmup_epochs, "finite and >= 0");
  if (!(t.label_smoothing >= 0 && t.label_smoothing < 1)) bad("--label-smoothing", t.label_smoothing, "in [0, 1)");
  if (!std::isfinite(t.clip_grad) || t.clip_grad < 0) bad("--clip-grad", t.clip_grad, "finite and >= 0");
  data::check_mixup_options(t.mixup);
  if (t.layer_decay != 0 && !(t.layer_decay > 0 && t.layer_decay <= 1)) bad("--layer-decay", t.layer_decay, "in (0, 1] (0 = off)");
  if (t.workers < 1) bad("--workers", static_cast<double>(t.workers), ">= 1");
  // --aa, --color-jitter, --reprob, --remode, --recount: parsed and checked here, before any work
  data::TrainAugment(train_augment(t), data::imagenet_normalization(), "bicubic");
}

data::DatasetPtr open_train(const Args& a, const nn::ViTConfig& c, uint64_t seed) {
  auto ds = data::open_dataset(a.data, data::Split::train, c.preprocess, c.in_chans, a.train_size, seed);
  if (a.shots > 0) ds = std::make_shared<data::Subset>(ds, data::few_shot_indices(*ds, a.shots, seed));
  return ds;
}

data::DatasetPtr open_val(const std::string& spec, const Args& a, const nn::ViTConfig& c, uint64_t seed) {
  if (spec.empty()) return nullptr;
  return data::open_dataset(spec, data::Split::val, c.preprocess, c.in_chans, a.val_size, seed);
}

// Prints the summary table and writes DIR/summary.json; with --json the same object is the last stdout line.
void finish(const std::string& method, const TrainResult& r, const nn::VisionTransformer& vit, const Args& a,
            const Common& common, bool has_val, const std::string& model) {
  nlohmann::json s = {{"method", method},
                      {"model", model},
                      {"preprocess", nn::preprocess_to_json(vit.cfg.preprocess)},
                      {"top1", r.val.top1},
                      {"loss", r.val.loss},
                      {"trainable_params", vit.num_parameters(true)},
                      {"total_params", vit.num_parameters(false)},
                      {"train_time_s", r.train_time_s},
                      {"images_per_s", r.images_per_s},
                      {"peak_rss_mb", peak_rss_mb()},
                      {"best_epoch", r.best_epoch},
                      {"epochs_run", r.epochs_run}};
  if (has_val) s["last_top1"] = r.last_val.top1;
  fmt::print("\n{:<12} {:>12} {:>10} {:>9} {:>9} {:>11} {:>9}\n", "method", "trainable", "total", has_val ? "val top1" : "top1",
             "loss", "train time", "img/s");
  fmt::print("{:<12} {:>12} {:>10} {:>8.2f}% {:>9.4f} {:>10.1f}s {:>9.0f}\n", method, vit.num_parameters(true),
             vit.num_parameters(false), r.val.top1, r.val.loss, r.train_time_s, r.images_per_s);
  s["world_size"] = dist::World::get().size();
  s["augment"] = data::augment_str(train_augment(a.train));
  if (dist::World::get().is_root()) write_text_atomic((fs::path(a.out) / "summary.json").string(), s.dump(2) + "\n");
  if (common.json) fmt::print("{}\n", s.dump());
}

// --resume of a run that has trained all its epochs: say so; nothing is written.
bool already_finished(const TrainResult& r, const Args& a) {
  if (!r.finished_before) return false;
  fmt::print("{}: the run is finished ({} epochs{}); nothing changed\n", a.out, r.epochs_run,
             r.best_epoch > 0 ? fmt::format(", best epoch {}: val top1 {:.2f}%", r.best_epoch, r.val.top1) : "");
  return true;
}

// Data parallel under mpirun / srun (issue 18, core/distributed.h): every rank trains its share
// of each global batch of --batch, which must divide by the ranks (a usage error, said once).
// Feature caching is off: every epoch moves the examples to other ranks.
void join_world(Args& a, const char* cmd) {
  dist::World& w = dist::World::get();
  if (!w.distributed()) return;
  if (a.train.batch % w.size() != 0)
    throw UsageError(fmt::format("--batch: the global batch {} does not divide by the {} ranks; use a multiple of {}",
                                 a.train.batch, w.size(), w.size()));
  a.train.world = &w;
  a.train.feature_cache = false;
  fmt::print("{}: data parallel over {} ranks: {} examples of every batch of {} per rank\n", cmd, w.size(),
             a.train.batch / w.size(), a.train.batch);
}

// Bytes each rank all-reduces per update: the trainable gradients, one flag per tensor and the
// batch's 3 statistics (peft/train/grad_sync.h).
void print_traffic(const nn::VisionTransformer& vit, const char* cmd) {
  if (!dist::World::get().distributed()) return;
  const int64_t tensors = static_cast<int64_t>(trainable_names(vit).size());
  fmt::print("{}: {} all-reduced per update ({} trainable values in {} tensors)\n", cmd,
             format_bytes(4 * (vit.num_parameters(true) + tensors + 3)), vit.num_parameters(true), tensors);
}

// A frozen backbone (linear): say whether its features are computed once and cached
// (peft/head_cache.h), or why not. Methods that train the backbone never cache.
void print_feature_cache_plan(const nn::VisionTransformer& vit, const data::DatasetPtr& train,
                              const data::DatasetPtr& val, const TrainConfig& t) {
  auto names = trainable_names(vit);
  if (!std::all_of(names.begin(), names.end(), [](const std::string& n) { return n.rfind("head.", 0) == 0; })) return;
  HeadCachePlan plan = plan_head_cache(vit, train, val, train_augment(t), t.feature_cache, t.feature_cache_limit);
  if (t.mixup.enabled()) plan = {false, "--mixup/--cutmix change the images in every batch", 0};
  if (plan.on)
    fmt::print("train: frozen backbone: features computed once per image in epoch 1 and cached ({}); "
               "later epochs train the head only\n",
               format_bytes(plan.bytes));
  else
    fmt::print("train: frozen backbone, but features are not cached: {}\n", plan.why_not);
}

// --layer-decay D: the range of lr scales, and the rule (nn/optim/layer_decay.h).
void print_layer_decay(const nn::VisionTransformer& vit, double decay, const char* cmd) {
  if (decay <= 0) return;
  const int64_t L = vit.cfg.depth;
  fmt::print("{}: layer decay {}: lr x{}^({} - layer): head and final norm x1, block i x{}^({} - i), "
             "patch/position embedding x{:.3g}\n",
             cmd, decay, decay, L + 1, decay, L, std::pow(decay, static_cast<double>(L + 1)));
}

// Creates and locks --out (a second run into it fails in one line), refusing an --out that is or
// holds an input (core/out_dir.h, issue 20).
void make_out_dir(const Args& a) {
  if (!dist::World::get().is_root()) return;  // data parallel: rank 0 owns --out
  auto path_of = [](const std::string& d) { return d.find(':') != std::string::npos ? d.substr(d.find(':') + 1) : d; };
  claim_out_dir(a.out, {{"--weights", a.model.weights}, {"--config", a.model.config}, {"--data", path_of(a.data)},
                        {"--val", path_of(a.val)}});
  if (!a.train.resume) clear_previous_run(a.out, training_run_files(), a.overwrite);  // no mix of two runs' files
}

// The run's settings, recorded in its checkpoint; a --resume must match them (exit 2 otherwise).
void record_settings(Args& a, const std::map<std::string, std::string>& method_md, const data::Dataset& train,
                     const nn::ViTConfig& c, uint64_t seed) {
  a.train.seed = seed;
  a.train.settings = run_settings(a.train, method_md, a.data, a.val, train, nn::vit_config_to_json(c), a.model.weights);
  if (!a.train.resume || !dist::World::get().is_root()) return;
  try {
    if (auto note = check_resume(a.out, a.train.settings, a.train.epochs, a.train.extend, a.train.sched); !note.empty())
      fmt::print("{}\n", note);
  } catch (const ResumeMismatch& e) {
    throw UsageError(e.what());
  }
}

// The parsed options of whichever of these commands runs (CLI11 binds to them at registration).
Args a;

// The lines every training run prints before its first step: model, preprocessing, augmentation,
// checkpointing, traffic and layer decay.
void print_run_header(const nn::VisionTransformer& vit, const char* cmd, const std::string& model,
                      const data::Preprocess& pre) {
  fmt::print("{}: {}\n", cmd, model);
  fmt::print("{}: preprocessing {}\n", cmd, pre.describe());
  fmt::print("{}: augmentation {}\n", cmd, data::augment_str(train_augment(a.train)));
  if (!a.train.aa.empty() && a.train.color_jitter > 0)
    fmt::print("{}: --color-jitter is not used with --aa (as in timm)\n", cmd);
  if (vit.checkpoint_activations) fmt::print("{}: activations checkpointed per block (one more forward per step)\n", cmd);
}

void print_after_header(const nn::VisionTransformer& vit, const char* cmd) {
  print_traffic(vit, cmd);
  print_layer_decay(vit, a.train.layer_decay, cmd);
}

int run_pretrain(const Common& common) {
  check_training_values(a.train);
  if (!a.model.weights.empty()) throw UsageError("pretrain: --weights is not used (it trains from scratch); use peft train");
  join_world(a, "pretrain");
  nn::ViTConfig c = open_model_or_usage(a.model).config;
  auto train = open_train(a, c, common.seed);
  auto val = open_val(a.val, a, c, common.seed);
  if (val) val = map_classes_by_name(val, train->class_names(), "--val");
  c.num_classes = train->num_classes();
  c.class_names = train->class_names();
  record_settings(a, {{"method", "pretrain"}}, *train, c, common.seed);
  nn::VisionTransformer vit(c, common.seed);
  vit.checkpoint_activations = a.checkpoint_activations;
  check_memory(vit, std::min<int64_t>(a.train.batch, train->size()), a.train.optimizer);
  make_out_dir(a);
  print_run_header(vit, "pretrain",
                   fmt::format("{} on {} ({} parameters)", a.model.config, train->describe(), vit.num_parameters()),
                   c.preprocess);
  print_after_header(vit, "pretrain");
  a.train.seed = common.seed;
  a.train.out_dir = a.out;
  a.train.best_name = "weights.safetensors";
  a.train.last_name = "weights-last.safetensors";
  a.train.save_weights = [&vit](const std::string& path) { nn::save_weights(vit, path, {{"format", "pt"}}); };
  TrainResult r = train_model(vit, train, val, a.train);
  if (already_finished(r, a)) return 0;
  // The default preprocessing is not written: model.json stays a plain interop config.
  nn::ViTConfig written = c;
  if (a.model.mean.empty() && a.model.std.empty() && a.model.interpolation.empty() && a.model.crop_pct == 0)
    written.preprocess = data::Preprocess{};
  if (dist::World::get().is_root())
    write_text_atomic((fs::path(a.out) / "model.json").string(), nn::vit_config_to_json(written) + "\n");
  finish("pretrain", r, vit, a, common, val != nullptr, a.model.config);
  return 0;
}

// The base model with the method attached (bad method options are usage errors, exit 2).
void attach_method(nn::VisionTransformer& vit, int64_t num_classes, uint64_t seed) {
  Generator gen(seed + 1);
  try {
    apply_method(vit, a.method, a.method_opts, num_classes, gen);
  } catch (const MethodError& e) {  // e.g. a --targets entry that matches no linear
    throw UsageError(e.what());
  }
}

// The method's cost on this model: trainable share, FLOPs, step and inference time, memory
// (before the summary, whose JSON must stay the last stdout line).
void print_cost(nn::VisionTransformer& vit) {
  CostReport cost = measure_cost(vit, std::min<int64_t>(a.train.batch, 8), 2);
  cost.method = a.method;
  if (vision_method(a.method).uses("prompts")) cost.prompts = a.method_opts.prompts;
  fmt::print("\n{}", format_cost_table({cost}));
}

int run_train(const Common& common) {
  require_vision_method(a.method);
  check_training_values(a.train);
  join_world(a, "train");
  try {  // bad method options are usage errors (exit 2), found before any data is read
    validate_method_options(a.method, a.method_opts);
  } catch (const MethodError& e) {
    throw UsageError(e.what());
  }
  ModelSource src = open_model_or_usage(a.model);
  const nn::ViTConfig& c = src.config;
  auto train = open_train(a, c, common.seed);
  auto val = open_val(a.val, a, c, common.seed);
  if (val) val = map_classes_by_name(val, train->class_names(), "--val");  // scored by class name, never by position
  record_settings(a, adapter_metadata(a.method, a.method_opts, {}), *train, c, common.seed);
  nn::VisionTransformer vit(c, common.seed);
  vit.checkpoint_activations = a.checkpoint_activations;
  std::string note;
  src.load_into(vit, &note);
  attach_method(vit, train->num_classes(), common.seed);
  vit.cfg.class_names = train->class_names();
  check_memory(vit, std::min<int64_t>(a.train.batch, train->size()), a.train.optimizer);
  make_out_dir(a);
  print_run_header(vit, "train", "model " + src.describe(), c.preprocess);
  if (!note.empty()) fmt::print("train: {}\n", note);
  fmt::print("train: {} on {}: {} of {} parameters trainable ({:.2f}%)\n", a.method, train->describe(),
             vit.num_parameters(true), vit.num_parameters(), 100.0 * vit.num_parameters(true) / vit.num_parameters());
  a.train.seed = common.seed;
  a.train.out_dir = a.out;
  print_traffic(vit, "train");
  print_feature_cache_plan(vit, train, val, a.train);
  print_layer_decay(vit, a.train.layer_decay, "train");
  const auto meta = adapter_metadata(a.method, a.method_opts, train->class_names());
  a.train.save_weights = [&vit, &meta](const std::string& path) { nn::save_weights(vit, path, meta, /*trainable_only=*/true); };
  TrainResult r = train_model(vit, train, val, a.train);
  if (already_finished(r, a)) return 0;
  print_cost(vit);
  finish(a.method, r, vit, a, common, val != nullptr, src.describe());
  return 0;
}

// Attaches --adapter (its method must match --method when given); returns the method's name
// and fills the class names the adapter records.
std::string attach_eval_adapter(nn::VisionTransformer& vit, bool method_given, uint64_t seed,
                                std::vector<std::string>& classes) {
  AdapterInfo info = read_adapter_info(a.adapter);
  const std::string method = method_given ? a.method : info.method;
  if (method != info.method)
    throw UsageError(fmt::format("--method {} does not match the adapter's method {}", method, info.method));
  attach_adapter(vit, info, seed);
  classes = info.class_names;
  if (classes.empty())
    fmt::print("note: {} records no class names (written by an older peft): folders are matched by position\n",
               a.adapter);
  return method;
}

int run_eval(const Common& common, bool method_given) {
  ModelSource src = open_model_or_usage(a.model);
  const nn::ViTConfig& c = src.config;
  nn::VisionTransformer vit(c, common.seed);
  src.load_into(vit);
  std::string method = "base";
  std::vector<std::string> classes = c.class_names;
  if (!a.adapter.empty()) {
    method = attach_eval_adapter(vit, method_given, common.seed, classes);
  } else if (!vit.head) {
    throw ValueError(fmt::format("eval: {} has no classifier head; give --adapter",
                                 a.model.weights.empty() ? a.model.config : a.model.weights));
  }
  auto ds = data::open_dataset(a.data, data::Split::val, c.preprocess, c.in_chans, a.val_size, common.seed);
  ds = map_classes_by_name(ds, classes, "--data");
  fmt::print("eval: model {}\neval: preprocessing {}\n", src.describe(), c.preprocess.describe());
  EvalResult r = evaluate(vit, ds, a.batch);
  fmt::print("{:<12} {:>8} {:>9} {:>9} {:>9}\n", "method", "images", "top1", "loss", "img/s");
  fmt::print("{:<12} {:>8} {:>8.2f}% {:>9.4f} {:>9.0f}\n", method, r.n, r.top1, r.loss, r.images_per_s);
  if (common.json) {
    nlohmann::json s = {{"method", method}, {"top1", r.top1}, {"loss", r.loss},
                        {"trainable_params", vit.num_parameters(true)}, {"total_params", vit.num_parameters(false)},
                        {"images_per_s", r.images_per_s}, {"peak_rss_mb", peak_rss_mb()}};
    fmt::print("{}\n", s.dump());
  }
  return 0;
}

void add_methods_command(CLI::App& app, Runner& run) {
  auto* methods = app.add_subcommand("methods", "list the PEFT methods and their options");
  methods->callback([&run] {
    run = [] {
      fmt::print("ViT methods (peft train --method M):\n");
      for (auto& m : vision_methods())
        fmt::print("  {:<14} {}{}\n", m.name, m.description, m.options.empty() ? "" : fmt::format(" [{}]", m.options));
      fmt::print("CLIP methods (peft clip-train --method M):\n");
      for (auto& m : clip_methods())
        fmt::print("  {:<14} {}{}\n", m.name, m.description, m.options.empty() ? "" : fmt::format(" [{}]", m.options));
      return 0;
    };
  });
}

void add_pretrain_command(CLI::App& app, Common& common, Runner& run) {
  auto* pre = app.add_subcommand("pretrain", "train a model from scratch (all parameters)");
  add_model_options(pre, a.model, /*config_required=*/true, /*weights_required=*/false);
  add_data_options(pre, a, true);
  add_training_options(pre, a);
  add_common_options(pre, common);
  pre->callback([&run, &common] { run = [&common] { return run_pretrain(common); }; });
}

void add_train_command(CLI::App& app, Common& common, Runner& run) {
  auto* tr = app.add_subcommand("train", "fine-tune a base model with a PEFT method");
  add_model_options(tr, a.model, /*config_required=*/false, /*weights_required=*/true);
  tr->add_option("--method", a.method, "PEFT method (peft methods)")->required();
  add_data_options(tr, a, true);
  add_training_options(tr, a);
  add_method_options(tr, a.method_opts);
  tr->add_flag("--no-feature-cache", [](int64_t) { a.train.feature_cache = false; },
               "head-only methods (linear): run the backbone every epoch instead of caching its features");
  add_common_options(tr, common);
  tr->callback([&run, &common] { run = [&common] { return run_train(common); }; });
}

void add_eval_command(CLI::App& app, Common& common, Runner& run) {
  auto* ev = app.add_subcommand("eval", "top-1 accuracy and loss of a model (optionally with an adapter)");
  add_model_options(ev, a.model, /*config_required=*/false, /*weights_required=*/false);
  ev->add_option("--method", a.method, "the adapter's method (default: read from the adapter)");
  ev->add_option("--adapter", a.adapter, "adapter.safetensors written by peft train");
  ev->add_option("--data", a.data, "evaluation data: FOLDER | cifar10:PATH | cifar100:PATH | procedural:TASK")->required();
  ev->add_option("--val-size", a.val_size, "procedural images")->capture_default_str();
  ev->add_option("--batch", a.batch, "batch size")->capture_default_str();
  add_common_options(ev, common);
  ev->callback([&run, &common, ev] {
    run = [&common, ev] { return run_eval(common, ev->count("--method") > 0); };
  });
}

}  // namespace

void add_train_commands(CLI::App& app, Common& common, Runner& run) {
  add_methods_command(app, run);
  add_pretrain_command(app, common, run);
  add_train_command(app, common, run);
  add_eval_command(app, common, run);
}

}  // namespace peft::app
