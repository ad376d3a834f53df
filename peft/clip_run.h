// What `peft clip-train` and `peft clip-eval` share: the class prompts from the command line,
// the held-out split of a dataset, the adapter file (tensors + method + the prompts and class
// names it was trained with) and the evaluation of a head on cached image features.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "nn/clip.h"
#include "peft/clip_methods.h"
#include "peft/feature_cache.h"
#include "peft/zeroshot.h"

namespace peft {

// --texts FILE | --classnames FILE [--templates imagenet|photo|FILE]. Exactly one of texts and
// classnames; templates (default "photo") only with classnames. ValueError naming the option.
struct PromptArgs {
  std::string texts, classnames, templates;
  bool given() const { return !texts.empty() || !classnames.empty(); }
};
ClassPrompts class_prompts_from_args(const PromptArgs& a);

// The data a CLIP run trains and evaluates on. Without --val, the held-out split of --data:
// procedural tasks their Split::val, CIFAR its test batches, a folder with train/ and val/ (or
// test/) sub-folders of class folders those two. A plain folder has none: val is null and
// `no_val_reason` says why (the run then reports no held-out top-1, never the training images).
struct ClipSplits {
  data::DatasetPtr train, val;
  std::string no_val_reason;
};
ClipSplits open_clip_splits(const std::string& data, const std::string& val, const data::Preprocess& preprocess, int64_t in_chans,
                            int64_t train_size, int64_t val_size, uint64_t seed);
// The evaluation data of `peft clip-eval --data D`: D's held-out split when it has one, else all of D.
data::DatasetPtr open_clip_eval_data(const std::string& data, const data::Preprocess& preprocess, int64_t in_chans, int64_t size,
                                     uint64_t seed);

// An adapter file of a CLIP method.
struct ClipAdapter {
  std::string method;
  ClipMethodOptions options;
  std::optional<ClassPrompts> prompts;    // recorded at training time (absent in older files)
  std::vector<std::string> data_classes;  // the training data's class names (empty when not recorded)
  std::map<std::string, Tensor> tensors;
};
// Metadata written by clip-train: method + options, the class prompts and the data's classes.
std::map<std::string, std::string> clip_adapter_metadata(const std::string& method, const ClipMethodOptions& o,
                                                         const ClassPrompts& prompts,
                                                         const std::vector<std::string>& data_classes);
ClipAdapter read_clip_adapter(const std::string& path);

// The prompts to evaluate an adapter with: the recorded ones; prompts given on the command line
// must equal them (ValueError otherwise), and are required when the file records none.
ClassPrompts resolve_eval_prompts(const ClipAdapter& a, const std::string& adapter_path,
                                  const std::optional<ClassPrompts>& given);
// ValueError when `ds`'s class names differ from those the adapter was trained on (or, when none
// were recorded, when its class count differs from the prompts').
void check_eval_classes(const ClipAdapter& a, const std::string& adapter_path, const ClassPrompts& prompts,
                        const data::Dataset& ds);

// Rebuilds the trained head: the method on `clip` for `tokens`, its tensors from the file
// (tip-adapter(-f): the cache from the file). IOError naming the file when they do not fit.
std::shared_ptr<ClipHead> head_from_adapter(nn::CLIP& clip, const ClipAdapter& a, const std::string& adapter_path,
                                            const PromptTokens& tokens);

struct ClipEvalResult {
  double top1 = 0, loss = 0;  // percent, mean cross-entropy
  int64_t images = 0;
  double seconds = 0;  // the head over the cached features (encoding excluded)
};
ClipEvalResult evaluate_clip_head(ClipHead& head, const FeatureSet& fs, int64_t batch = 512);
// The same on `ds`: its cached image features, or, for a head that needs images (a method that
// changes the image tower, whose features cannot be cached), its images loaded `image_batch` at a
// time. The cache is never asked for features once such a head has changed the tower.
ClipEvalResult evaluate_clip_head(ClipHead& head, FeatureCache& cache, const data::Dataset& ds, int64_t image_batch = 64);

}  // namespace peft
