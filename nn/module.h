// Module: named parameters, buffers and children under dotted names (like torch.nn.Module).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace peft::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// What load_state_dict found. Strict loading throws when any list is non-empty.
struct LoadResult {
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the module
  std::vector<std::string> mismatched;  // same name, different shape ("name: file [..] vs model [..]")
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;  // at most 3 names per list, then "and N more"
};

// "a, b, c and N more": the first max_names names of a list, for one-line messages.
std::string name_list(const std::vector<std::string>& names, size_t max_names = 3);

class Module {
 public:
  virtual ~Module() = default;
  virtual std::string type_name() const { return "Module"; }

  // ---- registration (names must be non-empty and contain no '.')
  // Registers t as a leaf parameter; requires_grad defaults to true (trainable).
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);  // state, never trainable
  // Marks a parameter of this module as exempt from weight decay (timm's no_weight_decay()):
  // prompts, context vectors and other tensors whose official recipes do not decay them.
  void no_weight_decay(const std::string& name);
  // The dotted names of every parameter so marked, in the whole tree.
  std::vector<std::string> no_weight_decay_names() const;
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // Swaps a registered child for another (what PEFT methods use to wrap layers): the new module
  // takes the old one's place, so tensor names and their order stay. Classes that keep typed
  // pointers to their children update them in on_child_replaced.
  void replace_module(const std::string& name, std::shared_ptr<Module> m);

  // ---- queries (registration order, dotted names like blocks.3.attn.qkv.weight)
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;
  std::vector<Tensor> trainable_parameters() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  std::vector<std::pair<std::string, Module*>> named_modules();  // "" is this module
  Tensor parameter(const std::string& dotted_name) const;        // throws ValueError when absent
  bool has_parameter(const std::string& dotted_name) const;

  // ---- train / eval: flips the flag only; never touches requires_grad
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- freezing by glob over dotted names (fnmatch; '*' crosses dots). Returns the count
  // matched and throws ValueError when nothing matches (a misspelt pattern must not pass).
  int freeze(const std::string& glob);
  int unfreeze(const std::string& glob);
  void freeze_all();
  int64_t num_parameters(bool trainable_only = false) const;
  void zero_grad();
  // Converts every floating parameter and buffer to dtype in place (handles stay valid).
  void to(DType dtype);

  // ---- state dicts: parameters then buffers, by dotted name
  NamedTensors state_dict() const;
  // Copies values into the existing tensors (so optimizers keep their references). Converts
  // dtype. strict: throws ValueError listing missing/unexpected/mismatched names.
  LoadResult load_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true);

  // One line per module, indented, with its parameter shapes (peft inspect).
  std::string tree(int indent = 0) const;

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  virtual void on_train(bool) {}
  // Called by replace_module after child `name` became m (m is never null).
  virtual void on_child_replaced(const std::string& /*name*/, const std::shared_ptr<Module>& /*m*/) {}
  // Helper for on_child_replaced: field = m when name == expected (ValueError when m is not a T).
  template <class T>
  static void retarget(const std::string& name, const std::string& expected, std::shared_ptr<T>& field,
                       const std::shared_ptr<Module>& m) {
    if (name != expected) return;
    auto typed = std::dynamic_pointer_cast<T>(m);
    if (!typed) throw_wrong_child_type(name, m->type_name());
    field = typed;
  }
  [[noreturn]] static void throw_wrong_child_type(const std::string& name, const std::string& type);

 private:
  void collect(const std::string& prefix, NamedTensors& params, NamedTensors* buffers) const;
  NamedTensors params_, buffers_;
  std::vector<std::string> no_decay_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Container of numbered children ("blocks.0", "blocks.1", ...).
class ModuleList : public Module {
 public:
  std::string type_name() const override { return "ModuleList"; }
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    add_child(std::to_string(items_.size()), m);
    items_.push_back(m);
    return m;
  }
  size_t size() const { return items_.size(); }
  // Replaces item i (its name "i" and place stay).
  void set(size_t i, std::shared_ptr<Module> m);
  std::shared_ptr<Module> operator[](size_t i) const { return items_[i]; }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

bool glob_match(const std::string& pattern, const std::string& name);

}  // namespace peft::nn
