// `peft clip-eval`: top-1 and loss of a trained CLIP adapter (written by clip-train) on a dataset.
// The method, its options and the class prompts come from the adapter's metadata; the logic is
// in peft/clip_run.h.
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "apps/peft/commands.h"
#include "core/error.h"
#include "core/process_stats.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/pretrained.h"
#include "peft/clip_run.h"
#include "peft/model_source.h"

namespace peft::app {

namespace {

struct ClipEvalArgs {
  std::string config, weights, adapter, data, vocab, cache_dir;
  PromptArgs prompts;
  int64_t size = 500;
};

int run_clip_eval(const ClipEvalArgs& a, const Common& common) {
  check_prompt_usage(a.prompts, /*required=*/false);
  if (!a.config.empty()) require_clip_config(a.config, "clip-eval");
  const ClipAdapter ad = read_clip_adapter(a.adapter);
  std::optional<ClassPrompts> given;
  if (a.prompts.given()) given = class_prompts_from_args(a.prompts);
  const ClassPrompts prompts = resolve_eval_prompts(ad, a.adapter, given);

  data::Preprocess preprocess;
  auto clip_ptr = open_clip_model(a.config, a.weights, common.seed, &preprocess);
  nn::CLIP& clip = *clip_ptr;
  clip.cfg.vision.preprocess = preprocess;
  const nn::CLIPConfig& cfg = clip.cfg;
  clip.eval();
  data::DatasetPtr ds = open_clip_eval_data(a.data, preprocess, cfg.vision.in_chans, a.size, common.seed);
  check_eval_classes(ad, a.adapter, prompts, *ds);
  nn::TextTokenizer tok(cfg.text, a.vocab);
  auto head = head_from_adapter(clip, ad, a.adapter, tokenize_prompts(tok, prompts));

  FeatureCache cache(a.cache_dir);  // "" = memory only
  const auto t0 = std::chrono::steady_clock::now();
  // Cached image features, or the images for a method that changed the image tower (maple, clip-lora).
  const ClipEvalResult r = evaluate_clip_head(*head, cache, *ds);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t trainable = head->num_parameters(true), total = clip.num_parameters() + head->num_parameters();
  fmt::print("{} on {} ({} images, {}): top1 {:.2f}%  loss {:.4f}\n", ad.method, ds->describe(), r.images,
             prompts.describe(), r.top1, r.loss);
  if (common.json) {
    nlohmann::json js = {{"method", ad.method},
                         {"top1", r.top1},
                         {"loss", r.loss},
                         {"trainable_params", trainable},
                         {"total_params", total},
                         {"images_per_s", secs > 0 ? static_cast<double>(r.images) / secs : 0.0},
                         {"peak_rss_mb", peak_rss_mb()}};
    fmt::print("{}\n", js.dump());
  }
  return 0;
}

}  // namespace

void add_clip_eval_command(CLI::App& app, Common& common, Runner& run) {
  static ClipEvalArgs a;
  auto* cmd = app.add_subcommand("clip-eval", "top-1 and loss of a CLIP adapter written by peft clip-train");
  add_clip_model_options(cmd, a.config, a.weights);
  cmd->add_option("--adapter", a.adapter, "adapter.safetensors of peft clip-train (method, options, class prompts)")
      ->required();
  cmd->add_option("--data", a.data,
                  "evaluation data: its held-out split when it has one (procedural val, CIFAR test, DIR/val or "
                  "DIR/test beside DIR/train), else all of it")
      ->required();
  add_prompt_options(cmd, a.prompts);  // only for adapters without recorded prompts; else must match them
  cmd->add_option("--vocab", a.vocab, "BPE merges file (configs with the bpe tokenizer)");
  cmd->add_option("--val-size", a.size, "procedural evaluation images")->capture_default_str();
  cmd->add_option("--cache-dir", a.cache_dir, "feature cache folder (default: none)");
  add_common_options(cmd, common);
  cmd->callback([&run, &common] { run = [&common] { return run_clip_eval(a, common); }; });
}

}  // namespace peft::app
