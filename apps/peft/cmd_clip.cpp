// CLIP sub-commands: `peft tokenize` (CLIP BPE ids, cli.md) and `peft clip-train` (few-shot
// adaptation of a frozen CLIP with zeroshot / taskres / coop / clip-adapter / tip-adapter(-f)).
// Also adds the CLIP-only options (--texts, --vocab, --beta) to `peft check` (cmd_check_clip.cpp).
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "apps/peft/commands.h"
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/out_dir.h"
#include "core/process_stats.h"
#include "data/clip_tokenizer.h"
#include "data/loader.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/pretrained.h"
#include "nn/config.h"
#include "core/io/safetensors.h"
#include "peft/clip_methods.h"
#include "peft/clip_run.h"
#include "peft/feature_cache.h"
#include "peft/model_source.h"

namespace peft::app {

namespace {

struct TokenizeArgs {
  std::string vocab;
  int64_t context_length = 77;
  std::vector<std::string> texts;
};

int run_tokenize(const TokenizeArgs& a) {
  if (a.context_length < 1) throw UsageError(fmt::format("--context-length must be >= 1 (got {})", a.context_length));
  const std::string vocab = a.vocab.empty() ? nn::default_bpe_vocab() : a.vocab;
  if (vocab.empty()) throw UsageError("--vocab is required (bpe_simple_vocab_16e6.txt.gz; no repository copy found)");
  ClipTokenizer tok = ClipTokenizer::load(vocab);
  for (const std::string& t : a.texts) {
    std::vector<int64_t> row = tok.tokenize_row(t, a.context_length);
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) line += ' ';
      line += std::to_string(row[i]);
    }
    fmt::print("{}\n", line);
  }
  return 0;
}

struct ClipTrainArgs {
  std::string config, weights, method, data, val, vocab, out, cache_dir;
  PromptArgs prompts;
  int64_t train_size = 2000, val_size = 500, shots = 0, views = 10;
  ClipMethodOptions options;
  std::set<std::string> typed;  // --prompts / --rank when given (else the method's defaults)
  ClipTrainConfig train;
  bool overwrite = false;
};

// What a clip-train run writes into --out (its feature_cache/ is a cache, kept across runs).
const std::vector<std::string>& clip_train_run_files() {
  static const std::vector<std::string> files = {"adapter.safetensors", "summary.json"};
  return files;
}

std::string prompts_source(const PromptArgs& p) { return p.texts.empty() ? p.classnames : p.texts; }

// The usage errors found before any file is read.
void check_clip_train_args(const ClipTrainArgs& a) {
  if (!is_clip_method(a.method)) {
    std::string names;
    for (auto& m : clip_methods()) names += (names.empty() ? "" : ", ") + m.name;
    throw UsageError(fmt::format("--method: '{}' is not a CLIP method (available: {})", a.method, names));
  }
  for (auto [flag, v] : {std::pair<const char*, int64_t>{"--prompts", a.options.prompts}, {"--rank", a.options.rank}})
    if (a.typed.count(flag) && v <= 0) throw UsageError(fmt::format("{} must be positive (got {})", flag, v));
  check_prompt_usage(a.prompts, /*required=*/true);
  if (!a.config.empty()) require_clip_config(a.config, "clip-train");
}

// What the head trains on: cached image features, or the images for a method that changes the
// image tower (maple; clip-lora unless --encoder text); tip-adapter(-f)'s cache of augmented views.
struct ClipTrainInputs {
  FeatureSet train;
  Tensor keys, key_labels;
};

ClipTrainInputs clip_train_inputs(const ClipTrainArgs& a, nn::CLIP& clip, FeatureCache& cache, const data::Dataset& train,
                                  uint64_t seed) {
  const bool images_in = clip_method(a.method).takes_images(resolve_clip_options(a.method, a.options));
  if (images_in)
    fmt::print("clip-train: {} changes the image tower: training and evaluation read the images (the image tower is "
               "not cached; the feature cache is not used for it)\n",
               a.method);
  else
    fmt::print("clip-train: image features from the feature cache (the image tower is frozen for {})\n", a.method);
  ClipTrainInputs in;
  in.train = images_in ? load_images(clip, train) : cache.get(clip, train);
  if (clip_method(a.method).needs_cache) {
    EncodeOptions eo;
    eo.views = a.views;
    eo.seed = seed;
    FeatureSet views = cache.get(clip, train, eo);
    in.keys = tip_cache_keys(views.features);
    in.key_labels = views.labels;
  }
  return in;
}

// summary.json, the result line and the --json line.
void report_clip_train(const ClipTrainArgs& a, const ClipHead& head, const ClipTrainResult& tr,
                       const std::optional<ClipEvalResult>& ev, const std::string& what, const Common& common) {
  const int64_t trainable = head.num_parameters(true), total = head.clip.num_parameters() + head.num_parameters();
  const nlohmann::json null_json(nullptr);
  nlohmann::json js = {{"method", a.method},
                       {"top1", ev ? nlohmann::json(ev->top1) : null_json},
                       {"loss", ev ? nlohmann::json(ev->loss) : null_json},
                       {"trainable_params", trainable},
                       {"total_params", total},     {"train_time_s", tr.train_time_s},
                       {"images_per_s", tr.train_time_s > 0 ? static_cast<double>(tr.steps * a.train.batch) / tr.train_time_s : 0.0},
                       {"peak_rss_mb", peak_rss_mb()}};
  write_text_atomic((std::filesystem::path(a.out) / "summary.json").string(), js.dump(2) + "\n");
  if (ev)
    fmt::print("{} on {}: top1 {:.2f}%  loss {:.4f}  trainable {}  ({:.1f}s)\n", a.method, what, ev->top1, ev->loss,
               trainable, tr.train_time_s);
  else
    fmt::print("{} trained on {}; trainable {}  ({:.1f}s)\n", a.method, what, trainable, tr.train_time_s);
  if (common.json) fmt::print("{}\n", js.dump());
}

int run_clip_train(const ClipTrainArgs& a, const Common& common) {
  namespace fs = std::filesystem;
  check_clip_train_args(a);
  // Data parallel under mpirun (issue 18): rank 0 owns --out and fills the feature cache, then the
  // others read it; each rank trains its share of every batch; rank 0 evaluates and writes.
  dist::World& w = dist::World::get();
  if (w.distributed() && a.train.batch % w.size() != 0)
    throw UsageError(fmt::format("--batch: the global batch {} does not divide by the {} ranks; use a multiple of {}",
                                 a.train.batch, w.size(), w.size()));
  // --out before the model and the data are read: a folder that is an input, is locked by another
  // run or holds an earlier run fails in one line at once.
  if (w.is_root()) {
    claim_out_dir(a.out, {{"--weights", a.weights}, {"--config", a.config}});  // created + locked
    // no mix of two runs' files: an earlier run's adapter is kept unless --overwrite
    clear_previous_run(a.out, clip_train_run_files(), a.overwrite, "--out", /*resumable=*/false);
  }
  data::Preprocess preprocess;
  std::string model;
  auto clip_ptr = open_clip_model(a.config, a.weights, common.seed, &preprocess, &model);
  nn::CLIP& clip = *clip_ptr;
  clip.cfg.vision.preprocess = preprocess;  // encode_dataset normalises as the checkpoint says
  clip.eval();
  fmt::print("clip-train: model {}\nclip-train: preprocessing {}\n", model, preprocess.describe());
  const ClassPrompts prompts = class_prompts_from_args(a.prompts);
  nn::TextTokenizer tok(clip.cfg.text, a.vocab);
  const PromptTokens tokens = tokenize_prompts(tok, prompts);
  // kgcoop: the hand-crafted prompts of --kg-texts (default: the class prompts); checked before any image is encoded.
  const Tensor kg_tokens = kg_prompt_tokens(a.method, a.options, tok, prompts.num_classes(), prompts_source(a.prompts));
  // Without --val: the held-out split of --data, or none (never the training images).
  ClipSplits splits =
      open_clip_splits(a.data, a.val, preprocess, clip.cfg.vision.in_chans, a.train_size, a.val_size, common.seed);
  data::DatasetPtr train = splits.train, val = splits.val;
  if (train->num_classes() != prompts.num_classes())
    throw ValueError(fmt::format("{} has {} classes but {} has {} classes (one per class, in class order)",
                                 prompts_source(a.prompts), prompts.num_classes(), train->describe(),
                                 train->num_classes()));
  const std::vector<std::string> data_classes = train->class_names();
  if (a.shots > 0) train = std::make_shared<data::Subset>(train, data::few_shot_indices(*train, a.shots, common.seed));
  if (!w.is_root()) w.barrier("the wait for rank 0's feature cache", std::max(w.timeout_s(), 86400.0));
  FeatureCache cache(a.cache_dir.empty() ? (fs::path(a.out) / "feature_cache").string() : a.cache_dir);
  const ClipTrainInputs in = clip_train_inputs(a, clip, cache, *train, common.seed);
  if (w.is_root()) w.barrier("the wait for rank 0's feature cache", std::max(w.timeout_s(), 86400.0));
  Generator gen(common.seed);
  auto head = make_clip_head(clip, a.method, a.options, tokens, gen, in.keys, in.key_labels, kg_tokens);
  ClipTrainConfig tc = a.train;
  tc.seed = common.seed;
  tc.world = &w;
  ClipTrainResult tr = train_clip_head(*head, in.train.features, in.train.labels, tc);
  if (!w.is_root()) return 0;
  std::optional<ClipEvalResult> ev;
  if (val) ev = evaluate_clip_head(*head, cache, *val);  // the images when the head changed the image tower
  // The prompts and the data's class names go into the metadata: peft clip-eval rebuilds the
  // classifier from them and refuses data with other classes.
  save_safetensors((fs::path(a.out) / "adapter.safetensors").string(), head->state_dict(),
                   clip_adapter_metadata(a.method, a.options, prompts, data_classes));
  const std::string what = ev ? fmt::format("{} ({} images, {} classes, {})", val->describe(), val->size(),
                                            prompts.num_classes(), prompts.describe())
                              : fmt::format("{} ({}): no held-out top-1: {}", train->describe(), prompts.describe(),
                                            splits.no_val_reason);
  report_clip_train(a, *head, tr, ev, what, common);
  return 0;
}

}  // namespace

void require_clip_config(const std::string& config, const char* command) {
  if (nn::is_clip_config(config)) return;
  const auto vit = nn::vit_preset_names();
  if (std::find(vit.begin(), vit.end(), config) != vit.end() || std::filesystem::exists(config))
    throw UsageError(fmt::format("--config {} is not a CLIP model: peft {} takes a CLIP config (clip-micro, "
                                 "clip-vit-b32 or a JSON file with \"arch\": \"clip\"); ViT models go to peft "
                                 "train / eval",
                                 config, command));
  // Neither: load_clip_config names the presets.
}

void add_clip_model_options(CLI::App* cmd, std::string& config, std::string& weights) {
  cmd->add_option("--config", config,
                  "CLIP config: preset (clip-micro, clip-vit-b32) or JSON file (default: inferred from --weights)");
  cmd->add_option("--weights", weights, "CLIP weights (safetensors: OpenAI / open_clip or Hugging Face CLIPModel names)")
      ->required();
}

void add_prompt_options(CLI::App* cmd, PromptArgs& p) {
  cmd->add_option("--texts", p.texts, "one full class prompt per line, in class order");
  cmd->add_option("--classnames", p.classnames, "one class name per line, in class order (put into --templates)");
  cmd->add_option("--templates", p.templates,
                  "with --classnames: imagenet (OpenAI's 80 ImageNet templates), photo ('a photo of a {}.', the "
                  "default) or a file with one template per line containing {}");
}

void check_prompt_usage(const PromptArgs& p, bool required) {
  if (!p.texts.empty() && !p.classnames.empty())
    throw UsageError("--texts and --classnames exclude each other (full prompts, or class names put into --templates)");
  if (!p.templates.empty() && p.classnames.empty())
    throw UsageError("--templates needs --classnames (a --texts line is already a full prompt)");
  if (required && !p.given()) throw UsageError("--texts FILE or --classnames FILE is required (the class prompts)");
}

void add_clip_commands(CLI::App& app, Common& common, Runner& run) {
  static TokenizeArgs t;
  auto* tokc = app.add_subcommand("tokenize", "CLIP BPE token ids, one line per text: 49406 ids... 49407");
  tokc->add_option("--vocab", t.vocab, "bpe_simple_vocab_16e6.txt.gz (default: the repository's assets/clip copy)");
  tokc->add_option("--context-length", t.context_length, "truncate rows to this many ids")->capture_default_str();
  tokc->add_option("texts", t.texts, "texts to tokenize")->required();
  tokc->callback([&run] { run = [] { return run_tokenize(t); }; });

  static ClipTrainArgs a;
  auto* cmd = app.add_subcommand("clip-train", "few-shot adaptation of a frozen CLIP (peft methods: the CLIP ones)");
  add_clip_model_options(cmd, a.config, a.weights);
  std::string names;
  for (const ClipMethodDescriptor& d : clip_method_registry()) names += (names.empty() ? "" : " | ") + d.name;
  cmd->add_option("--method", a.method, names)->required();
  cmd->add_option("--data", a.data, "training data (folder, cifar10:PATH, procedural:TASK)")->required();
  cmd->add_option("--val", a.val,
                  "evaluation data (default: the held-out split of --data: procedural val, CIFAR test, DIR/val or "
                  "DIR/test beside DIR/train; none for a plain folder)");
  add_prompt_options(cmd, a.prompts);
  cmd->add_option("--vocab", a.vocab, "BPE merges file (default: the repository's assets/clip copy)");
  cmd->add_option("--out", a.out, "output folder: adapter.safetensors, summary.json")->required();
  cmd->add_flag("--overwrite", a.overwrite, "--out holds an earlier run: remove its adapter and summary first");
  cmd->add_option("--shots", a.shots, "K training images per class (0 = all)")->capture_default_str();
  cmd->add_option("--train-size", a.train_size, "procedural training images")->capture_default_str();
  cmd->add_option("--val-size", a.val_size, "procedural evaluation images")->capture_default_str();
  cmd->add_option("--epochs", a.train.epochs, "epochs over the few-shot features")->capture_default_str();
  cmd->add_option("--batch", a.train.batch, "batch size")->capture_default_str();
  cmd->add_option("--lr", a.train.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", a.train.weight_decay, "weight decay")->capture_default_str();
  cmd->add_option("--optimizer", a.train.optimizer, "adamw | sgd")->capture_default_str();
  cmd->add_option("--alpha", a.options.alpha,
                  "taskres residual scale (0.5), clip-adapter ratio (0.2), tip alpha (1.17), clip-lora alpha (1)");
  cmd->add_option("--prompts", a.options.prompts, "context length M (default: the method's, e.g. coop 16)")
      ->each([](const std::string&) { a.typed.insert("--prompts"); });
  cmd->add_option("--rank", a.options.rank, "clip-lora rank (default 2)")->each([](const std::string&) { a.typed.insert("--rank"); });
  cmd->add_option("--targets", a.options.targets, "clip-lora targets: any of q,k,v,o (default q,k,v)");
  add_clip_only_method_options(cmd, a.options);
  cmd->add_option("--views", a.views, "tip-adapter: augmented views per cache image")->capture_default_str();
  cmd->add_option("--cache-dir", a.cache_dir, "feature cache folder (default: OUT/feature_cache)");
  add_common_options(cmd, common);
  cmd->callback([&run, &common] { run = [&common] { return run_clip_train(a, common); }; });

  // `peft check` is registered by cmd_check.cpp; the CLIP branch needs three more options.
  for (CLI::App* sub : app.get_subcommands([](CLI::App* s) { return s->get_name() == "check"; }))
    add_clip_check_options(sub);
}

}  // namespace peft::app
