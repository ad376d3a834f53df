// `peft predict`: top-k classes by name, with probabilities, for new images (a folder or files),
// preprocessed as the checkpoint says; the CSV goes to --out.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "apps/peft/model_options.h"
#include "core/error.h"
#include "nn/pretrained.h"
#include "core/io/safetensors.h"
#include "peft/adapter.h"
#include "autograd/grad_mode.h"
#include "peft/clip_methods.h"
#include "peft/clip_run.h"
#include "peft/predict.h"

namespace peft::app {

namespace {
struct PredictArgs {
  ModelArgs model;
  std::string adapter, out, vocab;
  std::vector<std::string> data;
  int64_t topk = 5, batch = 32;
  PromptArgs prompts;  // CLIP zero-shot: the classes to choose from
};

// The class names of CLIP prompts: --classnames as given, else the --texts lines.
std::vector<std::string> prompt_class_names(const ClassPrompts& p) { return p.classnames.empty() ? p.texts : p.classnames; }

// A whole CLIP: a clip-train adapter (its method, options and recorded prompts), or zero-shot
// over --classnames / --texts.
std::vector<Prediction> predict_clip(const PredictArgs& a, const std::vector<std::string>& files, uint64_t seed,
                                     std::vector<std::string>& names) {
  data::Preprocess pp;
  std::string what;
  auto clip = open_clip_model(a.model.config, a.model.weights, seed, &pp, &what);
  clip->cfg.vision.preprocess = pp;
  clip->eval();
  nn::TextTokenizer tok(clip->cfg.text, a.vocab);
  std::optional<ClassPrompts> given;
  if (a.prompts.given()) given = class_prompts_from_args(a.prompts);
  std::shared_ptr<ClipHead> head;
  std::string method = "zeroshot";
  if (!a.adapter.empty()) {
    const ClipAdapter ad = read_clip_adapter(a.adapter);
    const ClassPrompts prompts = resolve_eval_prompts(ad, a.adapter, given);
    head = head_from_adapter(*clip, ad, a.adapter, tokenize_prompts(tok, prompts));
    names = ad.data_classes.empty() ? prompt_class_names(prompts) : ad.data_classes;
    method = ad.method;
  } else {
    if (!given) throw UsageError("predict: a CLIP without --adapter needs the classes: --classnames FILE or --texts FILE");
    Generator gen(seed);
    head = make_clip_head(*clip, "zeroshot", ClipMethodOptions{}, tokenize_prompts(tok, *given), gen);
    names = prompt_class_names(*given);
  }
  head->eval();
  fmt::print("predict: model {} + {}{}\n", what, method, a.adapter.empty() ? "" : fmt::format(" ({})", a.adapter));
  fmt::print("predict: preprocessing {}\n", pp.describe());
  // A method that changed the image tower (maple, clip-lora) takes the images themselves.
  return predict_files(
      [&](const Tensor& x) {
        NoGradGuard ng;  // the adapted towers hold trainable tensors: no graph at inference
        return head->forward(head->needs_images() ? x : clip->encode_image(x));
      },
      pp, clip->cfg.vision.in_chans, files, a.topk, a.batch);
}

bool is_clip_adapter(const std::string& path) {
  if (path.empty()) return false;
  SafetensorsFile f = SafetensorsFile::open(path);
  auto it = f.metadata().find("method");
  return it != f.metadata().end() && is_clip_method(it->second);
}

// Prints the CSV's path, the first five predictions by name and the --json line.
void report_predictions(const PredictArgs& a, const std::vector<Prediction>& preds, const std::vector<std::string>& names,
                        const std::string& method, const Common& common) {
  fmt::print("predict: {} images -> {}\n", preds.size(), a.out);
  for (size_t i = 0; i < preds.size() && i < 5; ++i) {
    const auto& p = preds[i];
    const int64_t c = p.classes[0];
    fmt::print("  {}  {} ({:.1f}%)\n", p.file, c < static_cast<int64_t>(names.size()) ? names[c] : std::to_string(c),
               100.0 * p.probabilities[0]);
  }
  if (preds.size() > 5) fmt::print("  ... and {} more\n", preds.size() - 5);
  if (common.json) {
    nlohmann::json j = {{"method", method}, {"images", preds.size()}, {"out", a.out}};
    fmt::print("{}\n", j.dump());
  }
}

// A ViT with its own head or a peft train adapter.
int run_predict_vit(const PredictArgs& a, const Common& common) {
  ModelSource src = open_model_or_usage(a.model);
  nn::VisionTransformer vit(src.config, common.seed);
  src.load_into(vit);
  std::vector<std::string> names = src.config.class_names;
  std::string method = "base";
  if (!a.adapter.empty()) {
    AdapterInfo info = read_adapter_info(a.adapter);
    attach_adapter(vit, info, common.seed);
    names = info.class_names;
    method = info.method;
  }
  if (!vit.head) {
    if (src.pretrained && src.pretrained->is_clip)
      throw UsageError(fmt::format("predict: {} is a CLIP: give the classes (--classnames FILE [--templates imagenet] "
                                   "or --texts FILE) for zero-shot, or a clip-train --adapter",
                                   a.model.weights));
    throw ValueError(fmt::format("predict: {} has no classifier head; give --adapter", a.model.weights));
  }
  const std::vector<std::string> files = image_files(a.data);
  fmt::print("predict: model {}{}\n", src.describe(), a.adapter.empty() ? "" : fmt::format(" + {} ({})", a.adapter, method));
  fmt::print("predict: preprocessing {}\n", src.config.preprocess.describe());
  if (names.empty()) fmt::print("note: the model records no class names: the CSV gives class indices\n");
  auto preds = predict_files(vit, files, a.topk, a.batch);
  write_predictions_csv(a.out, preds, names);
  report_predictions(a, preds, names, method, common);
  return 0;
}

int run_predict(const PredictArgs& a, const Common& common) {
  if (a.topk <= 0) throw UsageError(fmt::format("--topk must be positive (got {})", a.topk));
  if (a.batch <= 0) throw UsageError(fmt::format("--batch must be positive (got {})", a.batch));
  check_prompt_usage(a.prompts, /*required=*/false);
  if (!is_clip_adapter(a.adapter) && !(a.adapter.empty() && a.prompts.given())) return run_predict_vit(a, common);
  // A whole CLIP.
  const std::vector<std::string> files = image_files(a.data);
  std::vector<std::string> names;
  auto preds = predict_clip(a, files, common.seed, names);
  write_predictions_csv(a.out, preds, names);
  fmt::print("predict: {} images -> {}\n", preds.size(), a.out);
  if (common.json) fmt::print("{}\n", nlohmann::json({{"images", preds.size()}, {"out", a.out}}).dump());
  return 0;
}
}  // namespace

void add_predict_command(CLI::App& app, Common& common, Runner& run) {
  static PredictArgs a;
  auto* cmd = app.add_subcommand("predict",
                                 "classify new images: top-k classes by name with probabilities, as CSV (a ViT with its "
                                 "head or a peft train adapter; a CLIP with a clip-train adapter or zero-shot over "
                                 "--classnames)");
  add_model_options(cmd, a.model, /*config_required=*/false, /*weights_required=*/true);
  cmd->add_option("--adapter", a.adapter, "adapter.safetensors written by peft train (default: the checkpoint's own head)");
  cmd->add_option("--data", a.data, "image folder (searched recursively) or image files")->required()->expected(1, -1);
  cmd->add_option("--out", a.out, "predictions CSV: file,class_1,prob_1,...")->required();
  cmd->add_option("--topk", a.topk, "classes per image")->capture_default_str();
  cmd->add_option("--batch", a.batch, "batch size")->capture_default_str();
  add_prompt_options(cmd, a.prompts);
  cmd->add_option("--vocab", a.vocab, "CLIP: BPE merges file (default: the repository's assets/clip copy)");
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] { return run_predict(a, common); };
  });
}

}  // namespace peft::app
