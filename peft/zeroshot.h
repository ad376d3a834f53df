// Class names put into prompt templates, and the template-ensemble classifier of methods.md "CLIP logits":
// c_k = norm( mean_t norm(u(template_t(class_k))) ).
//
// A CLIP run gets its class prompts one of two ways (cli.md, methods.md "Conventions"):
//   --texts FILE                     one full prompt per class, used as is by every method;
//   --classnames FILE --templates T  class names put into templates (OpenAI's "{}" format).
// With templates, the methods whose class matrix is frozen text features use the whole ensemble:
// zeroshot (c above), taskres (its raw base is the mean of u over the templates, methods.md "TaskRes")
// and tip-adapter(-f) (its zero-shot part is c). The methods that need exactly one token row per
// class use one template: coop (slots 1..M replace that prompt's first M tokens, methods.md "CoOp")
// and clip-adapter (one prompt per class, as the official code's per-dataset template). That
// single template is the first line of a template file, and "a photo of a {}." for the built-in
// sets (so that coop with M = 4 replaces "a photo of a", as official CoOp).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/clip.h"

namespace peft {

// The 80 ImageNet templates of OpenAI CLIP's notebook Prompt_Engineering_for_ImageNet.ipynb.
const std::vector<std::string>& imagenet_templates();

struct TemplateSet {
  std::vector<std::string> templates;  // each holds exactly one "{}"
  std::string single;                  // the template of the one-prompt-per-class methods
};

// --templates: "imagenet" (the 80 above), "photo" (a photo of a {}.) or a UTF-8 file with one
// template per line (blank lines skipped). A template without exactly one "{}" is an error
// naming the file and line.
TemplateSet load_templates(const std::string& spec);

// --classnames: one class name per line (UTF-8), blank lines skipped, surrounding whitespace
// trimmed. IOError naming the file when it is missing or empty.
std::vector<std::string> read_class_names(const std::string& path);

// OpenAI's template.format(classname): the "{}" replaced by the name.
std::string fill_template(const std::string& tmpl, const std::string& classname);

// The class prompts of a run (and of its adapter's metadata).
struct ClassPrompts {
  std::vector<std::string> texts;       // --texts: one full prompt per class (else empty)
  std::vector<std::string> classnames;  // --classnames (else empty)
  TemplateSet templates;                // with classnames

  static ClassPrompts from_texts(std::vector<std::string> lines);
  static ClassPrompts from_classnames(std::vector<std::string> names, TemplateSet t);

  int64_t num_classes() const;
  int64_t per_class() const;                  // P: templates per class (1 with --texts)
  std::vector<std::string> ensemble() const;  // K*P prompts, class-major: row k*P + p
  std::vector<std::string> single() const;    // K prompts, one per class
  bool operator==(const ClassPrompts& o) const;
  std::string describe() const;  // "3 prompts (--texts)" / "10 class names x 80 templates"

  // Adapter metadata: "class_prompts" = a JSON object ({"texts": [...]} or {"classnames": [...],
  // "templates": [...], "single_template": "..."}). from_metadata: false when the key is absent
  // (adapters written before it was recorded), ValueError when it is malformed.
  void to_metadata(std::map<std::string, std::string>& md) const;
  static bool from_metadata(const std::map<std::string, std::string>& md, ClassPrompts& out);
};

// The tokenized prompts a CLIP head is built from.
struct PromptTokens {
  Tensor ensemble;        // [K*P, T] int64, class-major
  int64_t per_class = 1;  // P
  Tensor single;          // [K, T] int64: one prompt per class
  int64_t num_classes() const { return single.defined() ? single.size(0) : 0; }
  static PromptTokens from_tokens(const Tensor& tokens);  // one prompt per class: P = 1
};
PromptTokens tokenize_prompts(const nn::TextTokenizer& tok, const ClassPrompts& p);

// Raw text features u [R, E] of token rows [R, T], without autograd, `chunk` rows at a time
// (an 80-template ensemble over many classes would not fit the activations at once).
Tensor encode_text_rows(nn::CLIP& clip, const Tensor& tokens, int64_t chunk = 256);
// u [K*P, E] (class-major) -> c [K, E] = norm(mean_p norm(u)); P = 1 gives norm(u).
Tensor ensemble_classifier(const Tensor& u, int64_t per_class);
// u [K*P, E] -> mean_p u [K, E], raw (TaskRes's base, methods.md "TaskRes"); P = 1 gives u.
Tensor ensemble_mean(const Tensor& u, int64_t per_class);

}  // namespace peft
