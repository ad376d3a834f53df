// Mapping a dataset's classes onto a model's by name.
#include "peft/class_map.h"

#include <fmt/format.h>

#include <map>

#include "core/error.h"
#include "nn/module.h"

namespace peft {

namespace {

// The same examples with labels translated through `to_model` (data label -> model label).
class Relabeled : public data::Dataset {
 public:
  Relabeled(data::DatasetPtr base, std::vector<int64_t> to_model, std::vector<std::string> names)
      : base_(std::move(base)), to_model_(std::move(to_model)), names_(std::move(names)) {}
  int64_t size() const override { return base_->size(); }
  int64_t num_classes() const override { return static_cast<int64_t>(names_.size()); }
  std::vector<std::string> class_names() const override { return names_; }
  int64_t image_size() const override { return base_->image_size(); }
  int64_t channels() const override { return base_->channels(); }
  int64_t label(int64_t i) const override { return to_model_[static_cast<size_t>(base_->label(i))]; }
  data::Image load(int64_t i) const override { return base_->load(i); }
  data::Image load_original(int64_t i) const override { return base_->load_original(i); }
  std::string describe() const override { return base_->describe(); }

 private:
  data::DatasetPtr base_;
  std::vector<int64_t> to_model_;
  std::vector<std::string> names_;
};

}  // namespace

data::DatasetPtr map_classes_by_name(data::DatasetPtr ds, const std::vector<std::string>& model_classes,
                                     const std::string& what) {
  if (model_classes.empty()) return ds;
  const std::vector<std::string> mine = ds->class_names();
  if (mine == model_classes) return ds;
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < model_classes.size(); ++i) index.emplace(model_classes[i], static_cast<int64_t>(i));
  std::vector<int64_t> to_model;
  std::vector<std::string> unknown;
  for (const std::string& c : mine) {
    auto it = index.find(c);
    if (it == index.end()) {
      unknown.push_back(c);
      to_model.push_back(-1);
    } else {
      to_model.push_back(it->second);
    }
  }
  if (!unknown.empty())
    throw ValueError(fmt::format("{}: {} {} {} not among the model's {} classes ({}); the folders must be named as the "
                                 "classes it was trained on",
                                 what, unknown.size() == 1 ? "class" : "classes", nn::name_list(unknown, 2),
                                 unknown.size() == 1 ? "is" : "are", model_classes.size(), nn::name_list(model_classes, 3)));
  return std::make_shared<Relabeled>(std::move(ds), std::move(to_model), model_classes);
}

}  // namespace peft
