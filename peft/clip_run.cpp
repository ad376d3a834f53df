// The shared pieces of `peft clip-train` and `peft clip-eval`: prompts, splits, adapter files.
#include "peft/clip_run.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/io/safetensors.h"

namespace peft {

namespace fs = std::filesystem;

ClassPrompts class_prompts_from_args(const PromptArgs& a) {
  if (!a.texts.empty() && !a.classnames.empty())
    throw ValueError("--texts and --classnames exclude each other (full prompts, or class names put into --templates)");
  if (!a.templates.empty() && a.classnames.empty())
    throw ValueError("--templates needs --classnames (a --texts line is already a full prompt)");
  if (!a.texts.empty()) return ClassPrompts::from_texts(nn::read_text_lines(a.texts));
  if (a.classnames.empty()) throw ValueError("no class prompts: give --texts FILE or --classnames FILE");
  return ClassPrompts::from_classnames(read_class_names(a.classnames), load_templates(a.templates.empty() ? "photo" : a.templates));
}

// ---------------------------------------------------------------- splits

namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

bool has_subfolder(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory()) return true;
  return false;
}

// ROOT/train + ROOT/val (or ROOT/test), each a folder of class folders: the held-out folder, else "".
std::string held_out_folder(const std::string& root) {
  if (!has_subfolder(fs::path(root) / "train")) return "";
  for (const char* v : {"val", "test"})
    if (has_subfolder(fs::path(root) / v)) return (fs::path(root) / v).string();
  return "";
}

void check_same_classes(const data::Dataset& train, const data::Dataset& val) {
  if (train.class_names() != val.class_names())
    throw ValueError(fmt::format("{} and {} have different classes ({} vs {}); the evaluation data must have the "
                                 "training classes in the same order",
                                 train.describe(), val.describe(), train.num_classes(), val.num_classes()));
}

}  // namespace

ClipSplits open_clip_splits(const std::string& data, const std::string& val, const data::Preprocess& S, int64_t C, int64_t train_size,
                            int64_t val_size, uint64_t seed) {
  ClipSplits s;
  const bool builtin = starts_with(data, "procedural:") || starts_with(data, "cifar10:") || starts_with(data, "cifar100:");
  const std::string held_out = builtin ? "" : held_out_folder(data);
  s.train = data::open_dataset(held_out.empty() ? data : (fs::path(data) / "train").string(), data::Split::train, S, C,
                               train_size, seed);
  if (!val.empty()) {
    s.val = data::open_dataset(val, data::Split::val, S, C, val_size, seed);
  } else if (builtin) {  // procedural: its val split (other seeds); CIFAR: the test batches
    s.val = data::open_dataset(data, data::Split::val, S, C, val_size, seed);
  } else if (!held_out.empty()) {
    s.val = data::open_dataset(held_out, data::Split::val, S, C, val_size, seed);
  } else {
    s.no_val_reason = fmt::format("{} has no held-out split (no train/ + val/ or test/ sub-folders) and no --val was "
                                  "given",
                                  data);
  }
  if (s.val) check_same_classes(*s.train, *s.val);
  return s;
}

data::DatasetPtr open_clip_eval_data(const std::string& data, const data::Preprocess& S, int64_t C, int64_t size, uint64_t seed) {
  const bool builtin = starts_with(data, "procedural:") || starts_with(data, "cifar10:") || starts_with(data, "cifar100:");
  const std::string held_out = builtin ? "" : held_out_folder(data);
  return data::open_dataset(held_out.empty() ? data : held_out, data::Split::val, S, C, size, seed);
}

// ---------------------------------------------------------------- adapter files

std::map<std::string, std::string> clip_adapter_metadata(const std::string& method, const ClipMethodOptions& o,
                                                         const ClassPrompts& prompts,
                                                         const std::vector<std::string>& data_classes) {
  std::map<std::string, std::string> md = clip_method_metadata(method, o);
  prompts.to_metadata(md);
  md["data_classes"] = nlohmann::json(data_classes).dump();
  return md;
}

ClipAdapter read_clip_adapter(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  const auto& md = f.metadata();
  ClipAdapter a;
  try {
    a.method = clip_method_from_metadata(md, a.options);
    if (!is_clip_method(a.method))
      throw ValueError(fmt::format("its method '{}' is not a CLIP method (peft eval takes vision adapters)", a.method));
    ClassPrompts p;
    if (ClassPrompts::from_metadata(md, p)) a.prompts = p;
    if (auto it = md.find("data_classes"); it != md.end()) {
      try {
        a.data_classes = nlohmann::json::parse(it->second).get<std::vector<std::string>>();
      } catch (const nlohmann::json::exception& e) {
        throw ValueError(fmt::format("metadata 'data_classes' is malformed ({})", e.what()));
      }
    }
  } catch (const ValueError& e) {
    throw IOError(fmt::format("{}: {}", path, e.what()));
  }
  for (const std::string& n : f.names()) a.tensors[n] = f.get(n);
  return a;
}

namespace {
std::string first_difference(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i] != b[i]) return fmt::format("class {}: '{}' vs '{}'", i, a[i], b[i]);
  return fmt::format("{} vs {} classes", a.size(), b.size());
}
}  // namespace

ClassPrompts resolve_eval_prompts(const ClipAdapter& a, const std::string& path, const std::optional<ClassPrompts>& given) {
  if (!a.prompts) {
    if (!given)
      throw ValueError(fmt::format("{} records no class prompts (written before they were recorded): give --texts or "
                                   "--classnames as at training time",
                                   path));
    return *given;
  }
  if (given && !(*given == *a.prompts))
    throw ValueError(fmt::format("the given class prompts ({}) differ from those {} was trained with ({}). Hint: leave "
                                 "out --texts/--classnames to use the recorded ones",
                                 given->describe(), path, a.prompts->describe()));
  return *a.prompts;
}

void check_eval_classes(const ClipAdapter& a, const std::string& path, const ClassPrompts& prompts,
                        const data::Dataset& ds) {
  const std::vector<std::string> got = ds.class_names();
  if (!a.data_classes.empty() && got != a.data_classes)
    throw ValueError(fmt::format("{}'s classes differ from those {} was trained on ({})", ds.describe(), path,
                                 first_difference(got, a.data_classes)));
  if (ds.num_classes() != prompts.num_classes())
    throw ValueError(fmt::format("{} has {} classes but the class prompts of {} name {}", ds.describe(),
                                 ds.num_classes(), path, prompts.num_classes()));
}

std::shared_ptr<ClipHead> head_from_adapter(nn::CLIP& clip, const ClipAdapter& a, const std::string& path,
                                            const PromptTokens& tokens) {
  Tensor keys, labels;
  if (clip_method(a.method).needs_cache) {
    if (!a.tensors.count("tip.cache_keys") || !a.tensors.count("tip.cache_labels"))
      throw IOError(fmt::format("{}: a {} adapter needs tip.cache_keys [NK,E] and tip.cache_labels [NK]", path, a.method));
    keys = a.tensors.at("tip.cache_keys");
    labels = a.tensors.at("tip.cache_labels");
  }
  Generator gen(0);  // every tensor comes from the file
  std::shared_ptr<ClipHead> head;
  try {
    head = make_clip_head(clip, a.method, a.options, tokens, gen, keys, labels);
    head->load_state_dict(a.tensors);  // strict: exactly the method's tensors
  } catch (const ValueError& e) {
    throw IOError(fmt::format("{}: does not fit method {}: {}", path, a.method, e.what()));
  }
  return head;
}

ClipEvalResult evaluate_clip_head(ClipHead& head, const FeatureSet& fs, int64_t batch) {
  NoGradGuard ng;
  ClipEvalResult r;
  const auto t0 = std::chrono::steady_clock::now();
  r.images = fs.features.size(0);
  r.top1 = clip_head_accuracy(head, fs.features, fs.labels, batch);
  const DType dt = head.clip.text_projection.dtype();
  double sum = 0;
  for (int64_t lo = 0; lo < r.images; lo += batch) {
    const int64_t n = std::min(batch, r.images - lo);
    sum += cross_entropy(head.forward(narrow(fs.features, 0, lo, n).to(dt)), narrow(fs.labels, 0, lo, n)).item() *
           static_cast<double>(n);
  }
  r.loss = r.images > 0 ? sum / static_cast<double>(r.images) : 0.0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

ClipEvalResult evaluate_clip_head(ClipHead& head, FeatureCache& cache, const data::Dataset& ds, int64_t image_batch) {
  if (!head.needs_images()) return evaluate_clip_head(head, cache.get(head.clip, ds));
  NoGradGuard ng;
  ClipEvalResult r;
  const auto t0 = std::chrono::steady_clock::now();
  const DType dt = head.clip.text_projection.dtype();
  const int64_t N = ds.size(), B = std::max<int64_t>(1, image_batch);
  int64_t correct = 0;
  double sum = 0;
  for (int64_t lo = 0; lo < N; lo += B) {
    const FeatureSet chunk = load_images(head.clip, ds, lo, B);  // [n, C, S, S]
    const int64_t n = chunk.labels.size(0);
    Tensor logits = head.forward(chunk.features.to(dt));
    sum += cross_entropy(logits, chunk.labels).item() * static_cast<double>(n);
    const std::vector<int64_t> pred = argmax(logits, 1).to_vector<int64_t>(), y = chunk.labels.to_vector<int64_t>();
    for (int64_t i = 0; i < n; ++i) correct += pred[static_cast<size_t>(i)] == y[static_cast<size_t>(i)];
  }
  r.images = N;
  r.top1 = N > 0 ? 100.0 * static_cast<double>(correct) / static_cast<double>(N) : 0.0;
  r.loss = N > 0 ? sum / static_cast<double>(N) : 0.0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace peft
