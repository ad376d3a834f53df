// Prompt templates, class names and the template-ensemble zero-shot classifier (methods.md "CLIP logits").
#include "peft/zeroshot.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/small_file.h"

namespace peft {

const std::vector<std::string>& imagenet_templates() {
  // OpenAI CLIP, notebooks/Prompt_Engineering_for_ImageNet.ipynb, in the notebook's order.
  static const std::vector<std::string> t = {
      "a bad photo of a {}.",         "a photo of many {}.",          "a sculpture of a {}.",
      "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
      "graffiti of a {}.",            "a bad photo of the {}.",       "a cropped photo of the {}.",
      "a tattoo of a {}.",            "the embroidered {}.",          "a photo of a hard to see {}.",
      "a bright photo of a {}.",      "a photo of a clean {}.",       "a photo of a dirty {}.",
      "a dark photo of the {}.",      "a drawing of a {}.",           "a photo of my {}.",
      "the plastic {}.",              "a photo of the cool {}.",      "a close-up photo of a {}.",
      "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
      "a pixelated photo of the {}.", "a sculpture of the {}.",       "a bright photo of the {}.",
      "a cropped photo of a {}.",     "a plastic {}.",                "a photo of the dirty {}.",
      "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.", "a photo of the {}.",
      "a good photo of the {}.",      "a rendering of the {}.",       "a {} in a video game.",
      "a photo of one {}.",           "a doodle of a {}.",            "a close-up photo of the {}.",
      "a photo of a {}.",             "the origami {}.",              "the {} in a video game.",
      "a sketch of a {}.",            "a doodle of the {}.",          "a origami {}.",
      "a low resolution photo of a {}.", "the toy {}.",               "a rendition of the {}.",
      "a photo of the clean {}.",     "a photo of a large {}.",       "a rendition of a {}.",
      "a photo of a nice {}.",        "a photo of a weird {}.",       "a blurry photo of a {}.",
      "a cartoon {}.",                "art of a {}.",                 "a sketch of the {}.",
      "a embroidered {}.",            "a pixelated photo of a {}.",   "itap of the {}.",
      "a jpeg corrupted photo of the {}.", "a good photo of a {}.",   "a plushie {}.",
      "a photo of the nice {}.",      "a photo of the small {}.",     "a photo of the weird {}.",
      "the cartoon {}.",              "art of the {}.",               "a drawing of the {}.",
      "a photo of the large {}.",     "a black and white photo of a {}.", "the plushie {}.",
      "a dark photo of a {}.",        "itap of a {}.",                "graffiti of the {}.",
      "a toy {}.",                    "itap of my {}.",               "a photo of a cool {}.",
      "a photo of a small {}.",       "a tattoo of the {}.",
  };
  return t;
}

namespace {

const char* kPhoto = "a photo of a {}.";

// Non-blank lines of a UTF-8 file (CR stripped, surrounding whitespace trimmed), with their
// 1-based line numbers. `what` names the option for messages.
std::vector<std::pair<int, std::string>> read_lines(const std::string& path, const char* what) {
  // Bounded, regular files only (a FIFO hung, issue 20).
  std::istringstream f(read_small_file(path, fmt::format("{} file", what), kMaxTextBytes));
  std::vector<std::pair<int, std::string>> out;
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    ++n;
    const size_t a = line.find_first_not_of(" \t\r\v\f"), b = line.find_last_not_of(" \t\r\v\f");
    if (a == std::string::npos) continue;
    out.emplace_back(n, line.substr(a, b - a + 1));
  }
  if (out.empty()) throw IOError(fmt::format("{}: the {} file has no non-blank line", path, what));
  return out;
}

size_t count_holes(const std::string& t) {
  size_t n = 0;
  for (size_t at = t.find("{}"); at != std::string::npos; at = t.find("{}", at + 2)) ++n;
  return n;
}

}  // namespace

TemplateSet load_templates(const std::string& spec) {
  if (spec == "imagenet") return {imagenet_templates(), kPhoto};
  if (spec == "photo") return {{kPhoto}, kPhoto};
  TemplateSet s;
  for (auto& [n, t] : read_lines(spec, "--templates")) {
    if (count_holes(t) != 1)
      throw ValueError(fmt::format("{}:{}: template '{}' must contain exactly one {{}} (the class name), e.g. "
                                   "'a photo of a {{}}.'",
                                   spec, n, t));
    s.templates.push_back(t);
  }
  s.single = s.templates.front();
  return s;
}

std::vector<std::string> read_class_names(const std::string& path) {
  std::vector<std::string> names;
  for (auto& [n, name] : read_lines(path, "--classnames")) names.push_back(name);
  return names;
}

std::string fill_template(const std::string& tmpl, const std::string& classname) {
  const size_t at = tmpl.find("{}");
  if (at == std::string::npos || count_holes(tmpl) != 1)
    throw ValueError(fmt::format("template '{}' must contain exactly one {{}}", tmpl));
  return tmpl.substr(0, at) + classname + tmpl.substr(at + 2);
}

// ---------------------------------------------------------------- ClassPrompts

ClassPrompts ClassPrompts::from_texts(std::vector<std::string> lines) {
  if (lines.empty()) throw ValueError("class prompts: no prompt (--texts needs one prompt per class)");
  ClassPrompts p;
  p.texts = std::move(lines);
  return p;
}

ClassPrompts ClassPrompts::from_classnames(std::vector<std::string> names, TemplateSet t) {
  if (names.empty()) throw ValueError("class prompts: no class name (--classnames needs one name per class)");
  if (t.templates.empty()) throw ValueError("class prompts: no template (--templates)");
  for (const std::string& tmpl : t.templates) fill_template(tmpl, "");  // exactly one {} each
  fill_template(t.single, "");
  ClassPrompts p;
  p.classnames = std::move(names);
  p.templates = std::move(t);
  return p;
}

int64_t ClassPrompts::num_classes() const {
  return static_cast<int64_t>(texts.empty() ? classnames.size() : texts.size());
}

int64_t ClassPrompts::per_class() const {
  return texts.empty() ? static_cast<int64_t>(templates.templates.size()) : 1;
}

std::vector<std::string> ClassPrompts::ensemble() const {
  if (!texts.empty()) return texts;
  std::vector<std::string> out;
  out.reserve(classnames.size() * templates.templates.size());
  for (const std::string& c : classnames)
    for (const std::string& t : templates.templates) out.push_back(fill_template(t, c));
  return out;
}

std::vector<std::string> ClassPrompts::single() const {
  if (!texts.empty()) return texts;
  std::vector<std::string> out;
  for (const std::string& c : classnames) out.push_back(fill_template(templates.single, c));
  return out;
}

bool ClassPrompts::operator==(const ClassPrompts& o) const {
  return texts == o.texts && classnames == o.classnames && templates.templates == o.templates.templates &&
         templates.single == o.templates.single;
}

std::string ClassPrompts::describe() const {
  if (!texts.empty()) return fmt::format("{} prompts (--texts)", texts.size());
  return fmt::format("{} class names x {} template{}", classnames.size(), templates.templates.size(),
                     templates.templates.size() == 1 ? "" : "s");
}

void ClassPrompts::to_metadata(std::map<std::string, std::string>& md) const {
  nlohmann::json j;
  if (!texts.empty()) {
    j["texts"] = texts;
  } else {
    j["classnames"] = classnames;
    j["templates"] = templates.templates;
    j["single_template"] = templates.single;
  }
  md["class_prompts"] = j.dump();
}

bool ClassPrompts::from_metadata(const std::map<std::string, std::string>& md, ClassPrompts& out) {
  auto it = md.find("class_prompts");
  if (it == md.end()) return false;
  try {
    const nlohmann::json j = nlohmann::json::parse(it->second);
    if (j.contains("texts")) {
      out = from_texts(j.at("texts").get<std::vector<std::string>>());
    } else {
      TemplateSet t{j.at("templates").get<std::vector<std::string>>(), j.at("single_template").get<std::string>()};
      out = from_classnames(j.at("classnames").get<std::vector<std::string>>(), std::move(t));
    }
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(fmt::format("adapter: metadata 'class_prompts' is malformed ({})", e.what()));
  }
  return true;
}

// ---------------------------------------------------------------- tokens and features

PromptTokens PromptTokens::from_tokens(const Tensor& tokens) {
  PromptTokens p;
  p.ensemble = tokens;
  p.single = tokens;
  return p;
}

PromptTokens tokenize_prompts(const nn::TextTokenizer& tok, const ClassPrompts& p) {
  PromptTokens t;
  t.single = tok.tokenize(p.single());
  t.per_class = p.per_class();
  t.ensemble = p.texts.empty() ? tok.tokenize(p.ensemble()) : t.single;
  return t;
}

Tensor encode_text_rows(nn::CLIP& clip, const Tensor& tokens, int64_t chunk) {
  NoGradGuard ng;
  const int64_t R = tokens.size(0);
  if (R <= chunk) return clip.encode_text(tokens);
  std::vector<Tensor> parts;
  for (int64_t lo = 0; lo < R; lo += chunk) parts.push_back(clip.encode_text(narrow(tokens, 0, lo, std::min(chunk, R - lo))));
  return cat(parts, 0);
}

namespace {
Tensor per_class_view(const Tensor& u, int64_t P) {
  if (P < 1 || u.dim() != 2 || u.size(0) % P != 0)
    throw ShapeError(fmt::format("ensemble: text features {} do not split into groups of {} prompts",
                                 shape_str(u.sizes()), P));
  return reshape(u, {u.size(0) / P, P, u.size(1)});  // [K, P, E]
}
}  // namespace

Tensor ensemble_classifier(const Tensor& u, int64_t P) {
  if (P == 1) return l2_normalize(u);  // norm(mean of one norm(u)) = norm(u), without a second rounding
  return l2_normalize(mean(l2_normalize(per_class_view(u, P)), {1}));
}

Tensor ensemble_mean(const Tensor& u, int64_t P) {
  if (P == 1) return u;
  return mean(per_class_view(u, P), {1});
}

}  // namespace peft
