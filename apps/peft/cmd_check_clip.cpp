// The CLIP branch of `peft check` (interop.md "The check command", methods.md "Conventions"): for the CLIP
// methods, the inputs are image_features [B,E] (or images) and labels, and --texts/--vocab give
// the class prompts. The vision path lives in cmd_check.cpp; it calls run_clip_check first.
#include <fmt/format.h>

#include "apps/peft/commands.h"
#include "core/error.h"
#include "nn/clip.h"
#include "core/io/safetensors.h"
#include "peft/clip_methods.h"

namespace peft::app {

namespace {
struct ClipOnlyOptions {
  std::string texts, vocab;
  ClipMethodOptions method;  // the CLIP-only flags (--beta, --depth, --kg-weight, --kg-texts, --encoder)
};
ClipOnlyOptions& clip_only() {
  static ClipOnlyOptions o;
  return o;
}
}  // namespace

void add_clip_check_options(CLI::App* check) {
  ClipOnlyOptions& o = clip_only();
  check->add_option("--texts", o.texts, "CLIP methods: one class prompt per line");
  check->add_option("--vocab", o.vocab, "CLIP methods: BPE merges file (bpe_simple_vocab_16e6.txt.gz)");
  add_clip_only_method_options(check, o.method);
}

void add_clip_only_method_options(CLI::App* cmd, ClipMethodOptions& o) {
  cmd->add_option("--beta", o.beta, "tip-adapter(-f) beta")->capture_default_str();
  cmd->add_option("--depth", o.depth, "maple: prompt depth J")->capture_default_str();
  cmd->add_option("--kg-weight", o.kg_weight, "kgcoop: weight w of the knowledge term")->capture_default_str();
  cmd->add_option("--kg-texts", o.kg_texts, "kgcoop: hand-crafted prompts, one per class (default: the --texts lines)");
  cmd->add_option("--encoder", o.encoder, "clip-lora: both | vision | text")->capture_default_str();
}

int run_clip_check(const std::string& config, const std::string& weights, const std::string& method, const MethodOptions& m,
                   const std::string& adapter, const std::string& inputs, const std::string& out, uint64_t seed) {
  if (!is_clip_method(method)) {
    // A CLIP config with a vision method: say which methods fit instead of a failed ViT load.
    if (nn::is_clip_config(config)) {
      std::string names;  // every CLIP method of the registry
      for (const auto& d : clip_methods()) names += (names.empty() ? "" : ", ") + d.name;
      throw UsageError(fmt::format("--config {} is a CLIP model: peft check takes the CLIP methods with it ({}); '{}' "
                                   "needs a ViT config",
                                   config, names, method));
    }
    return -1;  // not ours: the vision path handles it
  }
  const ClipOnlyOptions& o = clip_only();
  if (o.texts.empty()) throw UsageError(fmt::format("--texts is required for the CLIP method '{}'", method));
  ClipCheckRequest r;
  r.config = config;
  r.weights = weights;
  r.method = method;
  // The shared flags count only when typed; the others take the CLIP method's defaults.
  r.options = o.method;
  r.options.alpha = m.alpha;
  if (m.given.count("prompts")) {
    if (m.prompts <= 0) throw UsageError(fmt::format("--prompts must be positive (got {})", m.prompts));
    r.options.prompts = m.prompts;
  }
  if (m.given.count("rank")) {
    if (m.rank <= 0) throw UsageError(fmt::format("--rank must be positive (got {})", m.rank));
    r.options.rank = m.rank;
  }
  if (m.given.count("targets")) r.options.targets = m.targets;
  r.adapter = adapter;
  r.inputs = inputs;
  r.texts = o.texts;
  r.vocab = o.vocab;
  r.seed = seed;
  nn::NamedTensors result = clip_check_tensors(r);
  save_safetensors(out, result, clip_method_metadata(method, r.options));
  fmt::print("check: {} -> {} ({} tensors, loss {:.6f})\n", method, out, result.size(), result[1].second.item());
  return 0;
}

}  // namespace peft::app
