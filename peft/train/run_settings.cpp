// Run settings: built from the command's inputs, stored as JSON in the checkpoint's metadata,
// compared on --resume.
#include "peft/train/run_settings.h"

#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/file_hash.h"
#include "core/io/safetensors.h"
#include "peft/method.h"
#include "peft/trainer.h"

namespace peft {

namespace fs = std::filesystem;

namespace {

// Shortest text that reads back to the same double.
std::string num(double v) { return fmt::format("{}", v); }

// A data spec with its path made absolute when it exists ("cifar10:PATH" keeps its prefix), so
// the same folder given another way is the same setting.
std::string data_spec(const std::string& spec) {
  if (spec.empty()) return "(none)";
  const size_t colon = spec.find(':');
  const std::string prefix = colon == std::string::npos ? "" : spec.substr(0, colon + 1);
  const std::string path = colon == std::string::npos ? spec : spec.substr(colon + 1);
  std::error_code ec;
  if (path.empty() || !fs::exists(path, ec)) return spec;
  const fs::path canon = fs::weakly_canonical(path, ec);
  return ec ? spec : prefix + canon.string();
}

std::string flag_of(const std::string& key) {
  if (key == "method") return "--method";
  for (const OptionSpec& o : method_option_specs())
    if (o.key == key) return o.flag;
  return "method option '" + key + "'";
}

// `v` for a one-line message: whole when short, else the part around `at` (where it first
// differs from the other value), so two long class lists or configs show what differs.
std::string shown(const std::string& v, size_t at) {
  if (v.size() <= 100) return v;
  const size_t from = at > 40 ? at - 40 : 0;
  return (from > 0 ? "..." : "") + v.substr(from, 80) + (from + 80 < v.size() ? "..." : "");
}

size_t first_difference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

RunSettings run_settings(const TrainConfig& t, const std::map<std::string, std::string>& method_metadata,
                         const std::string& data, const std::string& val, const data::Dataset& train,
                         const std::string& config_json, const std::string& weights) {
  RunSettings s;
  for (const auto& [k, v] : method_metadata)
    if (k != "class_names" && k != "format") s.push_back({flag_of(k), v});
  s.push_back({"--seed", std::to_string(t.seed)});
  s.push_back({"--batch", std::to_string(t.batch)});
  s.push_back({"--lr", num(t.lr)});
  s.push_back({"--weight-decay", num(t.weight_decay)});
  s.push_back({"--warmup-epochs", num(t.warmup_epochs)});
  s.push_back({"--sched", t.sched});
  s.push_back({"--min-lr", num(t.min_lr)});
  s.push_back({"--warmup-lr", num(t.warmup_lr)});
  if (t.sched == "step" || t.sched == "plateau") {
    s.push_back({"--decay-epochs", num(t.decay_epochs)});
    s.push_back({"--decay-rate", num(t.decay_rate)});
  }
  if (t.sched == "plateau") s.push_back({"--patience-epochs", std::to_string(t.patience_epochs)});
  s.push_back({"--accum-steps", std::to_string(t.accum_steps)});
  s.push_back({"--model-ema", t.model_ema ? "on, decay " + num(t.model_ema_decay) : "off"});
  s.push_back({"--optimizer", t.optimizer});
  s.push_back({"--augment", t.augment});
  s.push_back({"--aa", t.aa.empty() ? "off" : t.aa});
  s.push_back({"--color-jitter", num(t.color_jitter)});
  s.push_back({"--reprob", t.reprob > 0 ? num(t.reprob) + " " + t.remode + " x" + std::to_string(t.recount) : "0"});
  s.push_back({"--label-smoothing", num(t.label_smoothing)});
  const data::MixupOptions& m = t.mixup;  // --workers is not a setting: any N trains the same
  s.push_back({"--mixup/--cutmix", !m.enabled() ? "off"
                                                : num(m.mixup_alpha) + " / " + num(m.cutmix_alpha) + ", prob " +
                                                      num(m.prob) + ", switch " + num(m.switch_prob) + ", " + m.mode});
  s.push_back({"--layer-decay", num(t.layer_decay)});
  s.push_back({"--clip-grad", num(t.clip_grad)});
  s.push_back({"--data", data_spec(data)});
  s.push_back({"--data images", std::to_string(train.size())});
  s.push_back({"--data classes", nlohmann::json(train.class_names()).dump()});
  s.push_back({"--val", data_spec(val)});
  const nlohmann::json cfg = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  s.push_back({"the model config", cfg.is_discarded() ? config_json : cfg.dump()});  // one line
  std::error_code ec;
  if (!weights.empty() && fs::is_regular_file(weights, ec)) s.push_back({"--weights", file_identity(weights, "--weights")});
  return s;
}

std::string settings_to_json(const RunSettings& s) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [n, v] : s) j.push_back({n, v});
  return j.dump();
}

RunSettings settings_from_json(const std::string& text) {
  RunSettings s;
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return s;
  for (const auto& e : j)
    if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string())
      s.push_back({e[0].get<std::string>(), e[1].get<std::string>()});
  return s;
}

std::string check_resume(const std::string& out_dir, const RunSettings& now, int64_t epochs, bool extend,
                         const std::string& sched) {
  const fs::path ckpt = fs::path(out_dir) / "checkpoint.safetensors";
  std::error_code ec;
  if (!fs::exists(ckpt, ec)) return "";
  SafetensorsFile f = SafetensorsFile::open(ckpt.string());
  const auto& md = f.metadata();
  const auto run = md.find("run");
  if (run == md.end()) return "";  // an older checkpoint: nothing recorded to compare
  const RunSettings was = settings_from_json(run->second);
  for (const auto& [name, old] : was)
    for (const auto& [n, v] : now)
      if (n == name && v != old)
        throw ResumeMismatch(fmt::format(
            "--resume: {} differs from the run in {}: the run has {}, this call gives {}. Hint: resume with the "
            "run's settings, or start a fresh run (another --out, or --overwrite)",
            name, out_dir, shown(old, first_difference(old, v)), shown(v, first_difference(old, v))));

  const int64_t was_epochs = f.has("extra.epochs") ? f.get("extra.epochs", DType::i64).to_vector<int64_t>()[0] : epochs;
  const int64_t done = f.get("progress", DType::i64).to_vector<int64_t>()[0];
  const bool finished = done >= was_epochs;
  if (epochs == was_epochs || (finished && epochs < was_epochs && !extend)) return "";
  if (!extend) {
    if (finished)
      throw ResumeMismatch(fmt::format(
          "--epochs {}: the run in {} finished its {} epoch{}. Hint: add --extend to train {} with the {} schedule "
          "recomputed for {} epochs from where it stands, or start a fresh run",
          epochs, out_dir, was_epochs, was_epochs == 1 ? "" : "s",
          epochs == was_epochs + 1 ? fmt::format("epoch {}", epochs) : fmt::format("epochs {}..{}", was_epochs + 1, epochs),
          sched, epochs));
    throw ResumeMismatch(fmt::format(
        "--epochs {}: the run in {} was started with --epochs {} and its learning-rate schedule depends on it. Hint: "
        "resume with --epochs {}, or add --extend to recompute the {} schedule for {} epochs from where it stands",
        epochs, out_dir, was_epochs, was_epochs, sched, epochs));
  }
  if (epochs < was_epochs)
    throw ResumeMismatch(fmt::format("--extend: --epochs {} is not more than the {} epochs of the run in {}", epochs,
                                     was_epochs, out_dir));
  return fmt::format(
      "resume: extending the run in {} from {} to {} epochs: the {} schedule is recomputed for {} epochs and continues "
      "at epoch {} (epochs 1..{} keep the learning rates they were trained with)",
      out_dir, was_epochs, epochs, sched, epochs, done + 1, done);
}

const std::vector<std::string>& training_run_files() {
  static const std::vector<std::string> files = {
      "checkpoint.safetensors", "metrics.jsonl", "metrics.csv", "curves.png", "summary.json", "model.json",
      "adapter.safetensors", "adapter-last.safetensors", "adapter-epoch*.safetensors", "weights.safetensors",
      "weights-last.safetensors", "weights-epoch*.safetensors"};
  return files;
}

}  // namespace peft
