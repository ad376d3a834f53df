// `peft predict`: top-k classes by name, with probabilities, for new images (a folder or files),
// preprocessed as the checkpoint says; the CSV goes to --out.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "apps/peft/model_options.h"
#include "core/error.h"
#include "peft/adapter.h"
#include "peft/predict.h"

namespace peft::app {

namespace {
struct PredictArgs {
  ModelArgs model;
  std::string adapter, out;
  std::vector<std::string> data;
  int64_t topk = 5, batch = 32;
};
}  // namespace

void add_predict_command(CLI::App& app, Common& common, Runner& run) {
  static PredictArgs a;
  auto* cmd = app.add_subcommand("predict", "classify new images: top-k classes by name with probabilities, as CSV");
  add_model_options(cmd, a.model, /*config_required=*/false, /*weights_required=*/true);
  cmd->add_option("--adapter", a.adapter, "adapter.safetensors written by peft train (default: the checkpoint's own head)");
  cmd->add_option("--data", a.data, "image folder (searched recursively) or image files")->required()->expected(1, -1);
  cmd->add_option("--out", a.out, "predictions CSV: file,class_1,prob_1,...")->required();
  cmd->add_option("--topk", a.topk, "classes per image")->capture_default_str();
  cmd->add_option("--batch", a.batch, "batch size")->capture_default_str();
  add_common_options(cmd, common);
  cmd->callback([&run, &common] {
    run = [&common] {
      if (a.topk <= 0) throw UsageError(fmt::format("--topk must be positive (got {})", a.topk));
      if (a.batch <= 0) throw UsageError(fmt::format("--batch must be positive (got {})", a.batch));
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
      if (!vit.head)
        throw ValueError(fmt::format("predict: {} has no classifier head; give --adapter", a.model.weights));
      const std::vector<std::string> files = image_files(a.data);
      fmt::print("predict: model {}{}\n", src.describe(), a.adapter.empty() ? "" : fmt::format(" + {} ({})", a.adapter, method));
      fmt::print("predict: preprocessing {}\n", src.config.preprocess.describe());
      if (names.empty()) fmt::print("note: the model records no class names: the CSV gives class indices\n");
      auto preds = predict_files(vit, files, a.topk, a.batch);
      write_predictions_csv(a.out, preds, names);
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
      return 0;
    };
  });
}

}  // namespace peft::app
