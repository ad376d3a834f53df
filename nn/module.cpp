// Module registry: dotted names, freezing by glob, strict state-dict loading.
#include "nn/module.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fnmatch.h>

#include <set>

#include "autograd/grad_mode.h"
#include "core/error.h"

namespace peft::nn {

namespace {
void check_name(const std::string& name, const char* what) {
  if (name.empty() || name.find('.') != std::string::npos)
    throw ValueError(fmt::format("register_{}: invalid name '{}' (must be non-empty, without '.')", what, name));
}
}  // namespace

bool glob_match(const std::string& pattern, const std::string& name) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

std::string name_list(const std::vector<std::string>& names, size_t max_names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max_names; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max_names) s += fmt::format(" and {} more", names.size() - max_names);
  return s;
}

// A few names per list, so that a checkpoint of another model gives one readable line, not a
// dump of hundreds of names.
std::string LoadResult::summary() const {
  auto make = [&](size_t k) {
    std::string s;
    if (!missing.empty()) s += fmt::format("missing {}: {}; ", missing.size(), name_list(missing, k));
    if (!unexpected.empty()) s += fmt::format("unexpected {}: {}; ", unexpected.size(), name_list(unexpected, k));
    if (!mismatched.empty()) s += fmt::format("shape mismatch {}: {}; ", mismatched.size(), name_list(mismatched, k));
    if (s.size() > 2) s.resize(s.size() - 2);
    return s;
  };
  std::string s = make(3);
  return s.size() <= 160 ? s : make(1);  // error messages stay one short line
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name, "parameter");
  for (auto& [n, _] : params_)
    if (n == name) throw ValueError(fmt::format("register_parameter: '{}' already registered", name));
  if (!t.is_leaf()) t = t.detach();
  t.requires_grad_(requires_grad);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name, "buffer");
  buffers_.emplace_back(name, t.detach());
  return buffers_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_name(name, "module");
  for (auto& [n, _] : children_)
    if (n == name) throw ValueError(fmt::format("register_module: '{}' already registered", name));
  children_.emplace_back(name, std::move(m));
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  for (auto& [n, c] : children_)
    if (n == name) {
      if (!m) throw ValueError(fmt::format("replace_module: the new module for '{}' is null", name));
      c = m;
      on_child_replaced(name, m);
      return;
    }
  throw ValueError(fmt::format("replace_module: no child named '{}'", name));
}

void Module::no_weight_decay(const std::string& name) {
  for (auto& [n, _] : params_)
    if (n == name) {
      no_decay_.push_back(name);
      return;
    }
  throw ValueError(fmt::format("no_weight_decay: no parameter named '{}' on this {}", name, type_name()));
}

std::vector<std::string> Module::no_weight_decay_names() const {
  std::vector<std::string> out = no_decay_;
  for (auto& [n, c] : children_)
    for (const std::string& d : c->no_weight_decay_names()) out.push_back(n + "." + d);
  return out;
}

void Module::throw_wrong_child_type(const std::string& name, const std::string& type) {
  throw ValueError(fmt::format("replace_module: '{}' cannot take a {} (wrong module type)", name, type));
}

void ModuleList::set(size_t i, std::shared_ptr<Module> m) {
  if (i >= items_.size()) throw ValueError(fmt::format("ModuleList::set: index {} >= size {}", i, items_.size()));
  replace_module(std::to_string(i), m);
  items_[i] = std::move(m);
}

void Module::collect(const std::string& prefix, NamedTensors& params, NamedTensors* buffers) const {
  for (auto& [n, t] : params_) params.emplace_back(prefix + n, t);
  if (buffers)
    for (auto& [n, t] : buffers_) buffers->emplace_back(prefix + n, t);
  for (auto& [n, c] : children_) c->collect(prefix + n + ".", params, buffers);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", out, nullptr);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors p, b;
  collect("", p, &b);
  return b;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::trainable_parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters())
    if (t.requires_grad()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [n, c] : children_)
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, m);
  return out;
}

Tensor Module::parameter(const std::string& name) const {
  for (auto& [n, t] : named_parameters())
    if (n == name) return t;
  throw ValueError(fmt::format("parameter: no parameter named '{}'", name));
}

bool Module::has_parameter(const std::string& name) const {
  for (auto& [n, _] : named_parameters())
    if (n == name) return true;
  return false;
}

void Module::train(bool on) {
  training_ = on;
  on_train(on);
  for (auto& [_, c] : children_) c->train(on);
}

static int set_trainable(Module& m, const std::string& glob, bool on, const char* op) {
  int count = 0;
  for (auto& [n, t] : m.named_parameters())
    if (glob_match(glob, n)) {
      Tensor(t).requires_grad_(on);
      ++count;
    }
  if (count == 0) throw ValueError(fmt::format("{}: pattern '{}' matches no parameter", op, glob));
  return count;
}

int Module::freeze(const std::string& glob) { return set_trainable(*this, glob, false, "freeze"); }
int Module::unfreeze(const std::string& glob) { return set_trainable(*this, glob, true, "unfreeze"); }
void Module::freeze_all() {
  for (auto& [_, t] : named_parameters()) Tensor(t).requires_grad_(false);
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (auto& [_, t] : named_parameters())
    if (!trainable_only || t.requires_grad()) n += t.numel();
  return n;
}

void Module::zero_grad() {
  for (auto& [_, t] : named_parameters()) Tensor(t).zero_grad(true);
}

void Module::to(DType dtype) {
  for (auto& [_, t] : state_dict())
    if (is_floating(t.dtype()) && t.dtype() != dtype) Tensor(t).set_data(t.to(dtype));
}

NamedTensors Module::state_dict() const {
  NamedTensors p, b;
  collect("", p, &b);
  p.insert(p.end(), b.begin(), b.end());
  return p;
}

LoadResult Module::load_state_dict(const std::map<std::string, Tensor>& sd, bool strict) {
  LoadResult r;
  std::set<std::string> used;
  NamedTensors mine = state_dict();
  for (auto& [n, t] : mine) {
    auto it = sd.find(n);
    if (it == sd.end()) {
      r.missing.push_back(n);
      continue;
    }
    used.insert(n);
    if (it->second.sizes() != t.sizes())
      r.mismatched.push_back(fmt::format("{}: file {} vs model {}", n, shape_str(it->second.sizes()), shape_str(t.sizes())));
  }
  for (auto& [n, _] : sd)
    if (!used.count(n)) r.unexpected.push_back(n);
  if (strict && !r.ok()) throw ValueError("load_state_dict: " + r.summary());
  NoGradGuard ng;
  for (auto& [n, t] : mine) {
    auto it = sd.find(n);
    if (it != sd.end() && it->second.sizes() == t.sizes()) Tensor(t).copy_(it->second);
  }
  return r;
}

std::string Module::tree(int indent) const {
  std::string s;
  for (auto& [n, t] : params_)
    s += fmt::format("{}{} {}{}\n", std::string(indent, ' '), n, shape_str(t.sizes()), t.requires_grad() ? "" : " (frozen)");
  for (auto& [n, c] : children_) {
    s += fmt::format("{}{}: {}\n", std::string(indent, ' '), n, c->type_name());
    s += c->tree(indent + 2);
  }
  return s;
}

}  // namespace peft::nn
