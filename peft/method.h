// PEFT methods for a ViT: a registry of descriptors, one per method, each defined in its own file
// in peft/methods/ (methods.md "Linear probe" to "LN-TUNE"). Nothing else tests method names as strings.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/random.h"
#include "nn/vit.h"

namespace peft {

// Method options (cli.md "Method options"). A method reads only the keys its descriptor lists;
// the same fields serve every method, so one set of flags serves every command.
struct MethodOptions {
  int64_t prompts = 10;              // "prompts":        vpt-shallow, vpt-deep, cvpt, prefix
  double prompt_dropout = 0.0;       // "prompt_dropout": vpt-*, cvpt (training only)
  int64_t rank = 8;                  // "rank":           lora, dora, fact
  double alpha = -1;                 // "alpha":          lora/dora scale numerator (negative: rank); fact scale
  std::string targets = "attn.qkv";  // "targets":        lora, dora
  int64_t bottleneck = 64;           // "bottleneck":     adaptformer, adapter
  // Command-line options: the keys in `given` were typed; the others take the method's own
  // default (MethodDescriptor::defaults, e.g. adapter's bottleneck 8) wherever the options are
  // used. Off for options built in code and read from adapter metadata: every field counts.
  bool use_method_defaults = false;
  std::set<std::string> given;
};

// A bad method name or option value (names the option): the CLI maps it to a usage error (exit 2).
struct MethodError : ValueError {
  using ValueError::ValueError;
};

// One option key a method reads: its flag, what it means, and how it is checked.
struct OptionSpec {
  std::string key;   // prompts, prompt_dropout, rank, alpha, targets, bottleneck
  std::string flag;  // --prompts, ...
  std::string help;
};
const std::vector<OptionSpec>& method_option_specs();

// An adapter file's tensors, names and shapes, in file order.
using TensorShapes = std::vector<std::pair<std::string, Shape>>;

struct MethodDescriptor {
  std::string name;
  std::string description;
  std::vector<std::string> options;  // option keys it reads (OptionSpec::key)
  std::string option_help;           // how it reads them, e.g. "--rank r (default 8), ..."
  bool timm_only = false;            // refuses style openai_clip_visual (methods.md "DoRA" to "LN-TUNE" "Layout")
  bool mergeable = false;            // peft merge / bench --merged fold it into the weights
  // An adapter file without metadata (e.g. written by a PyTorch script): sets the options its
  // tensor names and shapes imply, for the keys not in o.given (typed flags win). nullptr: the
  // file must name its method and options.
  void (*options_from_tensors)(const TensorShapes& tensors, MethodOptions& o) = nullptr;
  // The FLOP rule of the PyTorch peer (tools' torch_vit_bench.py, peft/script_flops.h) that
  // counts it: one of the script's modes ("": the script has none, and none is invented), and
  // the script's own name for it when that differs (`peft bench --method vpt`).
  std::string script_flops_mode, script_alias;
  double demo_lr = 5e-3;             // the learning rate `peft demo` trains it with (AdamW, batch 64)
  double demo_weight_decay = 0.0;    // and its weight decay
  // Sets the method's own defaults for the keys not given on the command line (e.g. adapter's
  // bottleneck 8). nullptr: MethodOptions' defaults.
  void (*defaults)(MethodOptions& o) = nullptr;
  // Method-specific checks beyond the generic per-key ones (MethodError naming the option).
  void (*validate)(const MethodOptions& o, const nn::ViTConfig& c) = nullptr;
  // Attaches the method to a model whose tensors are all frozen and that has a fresh head:
  // registers its tensors (trainable, initialised as the official code does) under the
  // interop.md names, or unfreezes the base tensors it trains. The head is unfrozen afterwards.
  void (*attach)(nn::VisionTransformer& vit, const MethodOptions& o, Generator& gen) = nullptr;
  bool uses(const std::string& key) const;
};

// Kept for listings: name, description and the flags it reads.
struct MethodInfo {
  std::string name;
  std::string description;
  std::string options;
};

// The registry, in listing order.
const std::vector<MethodDescriptor>& vision_method_registry();
const std::vector<MethodInfo>& vision_methods();
bool is_vision_method(const std::string& name);
// The descriptor of `name`; MethodError listing the methods when there is none.
const MethodDescriptor& vision_method(const std::string& name);

// Applies the method's defaults for the option keys not in `given` (keys given on the command line).
void apply_method_defaults(const std::string& method, MethodOptions& o, const std::set<std::string>& given);
// base with the keys typed on the command line (typed.given) taken from typed: adapter metadata
// overridden by flags.
MethodOptions overlay_given(const MethodOptions& base, const MethodOptions& typed);
// The options as `method` uses them: with use_method_defaults, its defaults for the keys not given.
MethodOptions resolved_options(const std::string& method, const MethodOptions& o);

// Throws MethodError for an unknown method or a bad value of an option the method reads
// (--prompts <= 0, --prompt-dropout outside [0,1), --rank <= 0, --bottleneck <= 0, empty --targets).
void validate_method_options(const std::string& method, const MethodOptions& o);

// Attaches `method` to the model: adds its tensors (initialised as the official code does),
// freezes everything else and gives it a fresh head for `num_classes` classes. Throws
// MethodError (a ValueError) for unknown methods or bad options (naming the option).
void apply_method(nn::VisionTransformer& vit, const std::string& method, const MethodOptions& o, int64_t num_classes,
                  Generator& gen);

// The one rule every command follows: build the ViT of config c (seeded), then attach the method
// with a head for num_classes classes (its tensors drawn from seed + 1). Load base weights into
// the model before attaching (load_fn, when given, runs between the two).
std::unique_ptr<nn::VisionTransformer> build_model(const nn::ViTConfig& c, const std::string& method,
                                                   const MethodOptions& o, int64_t num_classes, uint64_t seed,
                                                   const std::function<void(nn::VisionTransformer&)>& load_fn = {});

// The full names of the linears a --targets list selects (LoRA, DoRA; methods.md "LoRA"), in model
// order. Short names (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) mean that linear in every block;
// anything else is a glob over full base names. MethodError when a target matches no linear.
std::vector<std::string> lora_target_names(nn::VisionTransformer& vit, const std::string& targets);

// Names of the trainable tensors (requires_grad), in registration order: an adapter's contents.
std::vector<std::string> trainable_names(const nn::Module& m);

// The safetensors metadata an adapter file carries: method and the options it reads.
std::map<std::string, std::string> method_metadata(const std::string& method, const MethodOptions& o);
// Reads a numeric metadata entry into field when present (ValueError naming the key otherwise);
// shared by the vision and the CLIP adapter readers.
void read_metadata_number(const std::map<std::string, std::string>& md, const char* key, double& field);
void read_metadata_number(const std::map<std::string, std::string>& md, const char* key, int64_t& field);
// The "method" entry (ValueError when the file has none).
std::string metadata_method(const std::map<std::string, std::string>& md);
// Reads them back (ValueError when the file has no method).
std::string method_from_metadata(const std::map<std::string, std::string>& md, MethodOptions& o);

}  // namespace peft
