// PEFT methods on a CLIP (methods.md "Zero-shot CLIP" to "MaPLe"): zero-shot, TaskRes, CoOp, CLIP-Adapter,
// Tip-Adapter(-F), ... Each is a head that maps raw image features (or, for a method that changes
// the image tower, the images) to class logits. Each method is one file in peft/methods/ with a
// ClipMethodDescriptor; the registry (clip_method_registry) lists them.
//
// A head is a Module whose named_parameters() are exactly the method's adapter tensors of
// interop.md (taskres.residual, coop.ctx, clip_adapter.fc{1,2}.weight, tip.cache_keys) and whose
// buffers hold the fixed tip.cache_labels. The CLIP model is referenced, not owned: building a
// head freezes every CLIP tensor (logit_scale included); a method that adapts a tower wraps its
// layers or sets its token hooks, and registers the trainable tensors on the head.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/distributed.h"
#include "core/random.h"
#include "nn/clip.h"
#include "peft/method.h"
#include "peft/zeroshot.h"

namespace peft {

struct ClipMethodOptions {
  double alpha = -1;         // < 0: the method's default (taskres 0.5, clip-adapter 0.2, tip 1.17, clip-lora 1)
  double beta = 1.0;         // tip-adapter(-f): sharpness of the cache affinities
  int64_t prompts = -1;      // < 0: the method's default M (coop 16, cocoop 4, kgcoop 4, maple 2)
  int64_t rank = -1;         // < 0: the method's default (clip-lora 2)
  std::string targets;       // "": the method's default (clip-lora q,k,v)
  std::string encoder = "both";  // clip-lora: both | vision | text
  int64_t depth = 9;         // maple: prompt depth J
  double kg_weight = 8.0;    // kgcoop: weight w of the knowledge term
  std::string kg_texts;      // kgcoop: the hand-crafted prompts (default: the --texts lines)
};

class ClipHead;

// What a head is built from besides the CLIP and the options.
struct ClipHeadInputs {
  const PromptTokens& prompts;  // the class prompts (single rows and ensembles)
  Tensor cache_keys, cache_labels;  // tip-adapter(-f)
  Tensor kg_tokens;                 // kgcoop: the hand-crafted prompts' tokens [K, T] (default: prompts.single)
};

// One CLIP method: its name, what it does, its options and how to build its head.
struct ClipMethodDescriptor {
  std::string name, description, option_help;
  double default_alpha = 0.0;    // --alpha when not given
  int64_t default_prompts = 16;  // --prompts when not given
  int64_t default_rank = 2;      // --rank when not given
  std::string default_targets;   // --targets when not given
  bool uses_prompts = false;     // reads --prompts (checked: 1..65536)
  bool needs_cache = false;      // tip-adapter(-f): the few-shot features as a cache
  // How `peft clip-demo` (peft/clip_demo.h) trains it on clip-micro: the peak learning rate
  // (AdamW), times the mean norm of the raw text features when demo_lr_per_text_norm (a method
  // whose residual adds to them, so its step must follow their scale), and the options it
  // changes for the micro model (nullptr: none).
  double demo_lr = 1e-3;
  bool demo_lr_per_text_norm = false;
  void (*demo_options)(ClipMethodOptions& o, const nn::CLIPConfig& c) = nullptr;
  // True when the method changes the image tower for these options (its head then takes images,
  // not cached features; ClipHead::needs_images agrees). nullptr: never.
  bool (*needs_images)(const ClipMethodOptions& o) = nullptr;
  bool takes_images(const ClipMethodOptions& resolved) const { return needs_images && needs_images(resolved); }
  // Checks beyond the generic ones (ValueError naming the option); nullptr: none.
  void (*validate)(const ClipMethodOptions& o, const nn::CLIPConfig& c) = nullptr;
  // Builds the head with options already resolved (defaults filled in).
  std::shared_ptr<ClipHead> (*make)(nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in,
                                    Generator& gen) = nullptr;
  // Folds an adapter of this method into the CLIP's weights, exactly for the forward pass, so
  // that clip's state dict is a plain CLIP (peft merge). Returns metadata for the merged file
  // (e.g. a logit constant that replaces exp(logit_scale)). nullptr: not mergeable.
  std::map<std::string, std::string> (*merge)(nn::CLIP& clip, const ClipMethodOptions& o,
                                              const std::map<std::string, Tensor>& adapter) = nullptr;
  // An adapter file without metadata (e.g. written by a PyTorch script): sets the options its
  // tensor names and shapes imply. nullptr: the file must name its method and options.
  void (*options_from_tensors)(const TensorShapes& tensors, ClipMethodOptions& o) = nullptr;
};

const std::vector<ClipMethodDescriptor>& clip_method_registry();
const std::vector<MethodInfo>& clip_methods();
bool is_clip_method(const std::string& name);
const ClipMethodDescriptor& clip_method(const std::string& name);  // ValueError when unknown
// The options as `method` uses them: its defaults for alpha, prompts, rank and targets when not
// given. Throws ValueError for an unknown method or a bad value (naming the option).
ClipMethodOptions resolve_clip_options(const std::string& method, const ClipMethodOptions& o);
// The alpha a method uses: o.alpha when given, else its default.
double resolve_alpha(const std::string& method, const ClipMethodOptions& o);

class ClipHead : public nn::Module {
 public:
  ClipHead(nn::CLIP& clip, std::string method) : clip(clip), method(std::move(method)) {}
  std::string type_name() const override { return "ClipHead"; }
  // image_features: raw encode_image output [B, E] -> logits [B, K]; with needs_images(), the
  // images [B, C, S, S] instead.
  virtual Tensor forward(const Tensor& image_features) = 0;
  // True when the method changes the image tower: it needs the images, not cached features.
  virtual bool needs_images() const { return false; }
  // A loss term added to the cross-entropy in training and check (undefined: none), e.g.
  // KgCoOp's w * (1 - mean cos) to the hand-crafted prompts.
  virtual Tensor extra_loss() { return Tensor(); }
  // ShapeError naming the method unless f is [B, E].
  void check_features(const Tensor& f) const;
  int64_t num_classes = 0;  // K, the number of prompt lines
  nn::CLIP& clip;
  std::string method;
};

// Builds `method` on `clip` for the prompts `tokens` [K, T] (one line per class). Its tensors are
// initialised as the official code does (TaskRes R = 0, CoOp ctx ~ N(0, .02^2), CLIP-Adapter the
// PyTorch Linear default) in the CLIP model's dtype.
// tip-adapter(-f) need the cache: cache_keys [NK, E] (the normalised keys, see tip_cache_keys) and
// cache_labels [NK] int64 in [0, K). Errors (ValueError) name the method and the problem, e.g. a
// CoOp prompt whose EOT position is <= M.
std::shared_ptr<ClipHead> make_clip_head(nn::CLIP& clip, const std::string& method, const ClipMethodOptions& o,
                                         const Tensor& tokens, Generator& gen, const Tensor& cache_keys = Tensor(),
                                         const Tensor& cache_labels = Tensor());
// The same with class prompts that may be template ensembles (peft/zeroshot.h): zeroshot and
// tip-adapter(-f) classify with norm(mean_t norm(u)) over prompts.ensemble, taskres's base is the
// raw mean of u over them; coop and clip-adapter use prompts.single (one row per class).
// kg_tokens: kgcoop's hand-crafted prompts [K, T] (undefined: prompts.single).
std::shared_ptr<ClipHead> make_clip_head(nn::CLIP& clip, const std::string& method, const ClipMethodOptions& o,
                                         const PromptTokens& prompts, Generator& gen,
                                         const Tensor& cache_keys = Tensor(), const Tensor& cache_labels = Tensor(),
                                         const Tensor& kg_tokens = Tensor());

// kgcoop's hand-crafted prompts (methods.md "KgCoOp"): the tokens [K, T] of the lines of o.kg_texts
// (--kg-texts), or undefined when it is not given (make_clip_head then uses the class prompts).
// ValueError naming both files when the line counts differ (num_classes = the lines of
// texts_source), or when a method other than kgcoop is given --kg-texts. IOError for a bad file.
Tensor kg_prompt_tokens(const std::string& method, const ClipMethodOptions& o, const nn::TextTokenizer& tok,
                        int64_t num_classes, const std::string& texts_source);

// Tip-Adapter cache keys: features [NK, E] (one view) or [NK, V, E] (V augmented views) ->
// norm(mean over views) [NK, E] (methods.md "Tip-Adapter"). No autograd.
Tensor tip_cache_keys(const Tensor& features);

// Adapter file metadata (method + options) and back.
std::map<std::string, std::string> clip_method_metadata(const std::string& method, const ClipMethodOptions& o);
std::string clip_method_from_metadata(const std::map<std::string, std::string>& md, ClipMethodOptions& o);

// ---- few-shot training on cached image features (every method: the image tower is frozen)

struct ClipTrainConfig {
  int64_t epochs = 50;
  int64_t batch = 32;
  double lr = 1e-3;  // peak; linear warm-up over the first epoch, then cosine decay to 0
  double weight_decay = 0.0;
  std::string optimizer = "adamw";  // adamw | sgd (momentum 0.9)
  uint64_t seed = 0;                // batch order
  // Data parallel under mpirun (issue 18): each rank trains its share of every batch and the
  // gradients are summed in one allreduce per step (peft/train/grad_sync.h). Null: one process.
  dist::World* world = nullptr;
};

struct ClipTrainResult {
  double last_loss = 0;  // mean training loss of the last epoch
  double train_time_s = 0;
  int64_t steps = 0;
};

// Trains the head's trainable tensors on features [N, E] (raw) with labels [N]; a head with no
// trainable tensor (zeroshot, tip-adapter) returns at once.
ClipTrainResult train_clip_head(ClipHead& head, const Tensor& features, const Tensor& labels, const ClipTrainConfig& c);
// Top-1 accuracy in percent (no autograd).
double clip_head_accuracy(ClipHead& head, const Tensor& features, const Tensor& labels, int64_t batch = 512);

// ---- `peft check` for CLIP methods (interop.md "The check command", methods.md "Conventions")

struct ClipCheckRequest {
  std::string config, weights, method;
  ClipMethodOptions options;
  std::string adapter;  // initial trainable tensors (and the tip cache); "" = the method's init
  std::string inputs;   // image_features [B,E] (raw) or images [B,C,S,S], and labels [B] I64
  std::string texts;    // one prompt per line (required)
  std::string vocab;    // BPE merges file (configs with the bpe tokenizer)
  uint64_t seed = 0;
};

// Builds the CLIP and the method, runs one eval forward on the inputs (image_features wins over
// images), the mean cross-entropy and backward. Returns logits [B,K], loss [], grad.{name} for
// every trainable tensor, tokens [K,T] and text_features [K,E] (raw u of the lines). Without
// --adapter, Tip-Adapter's cache is the batch itself (keys norm(f), labels). Errors name the file.
nn::NamedTensors clip_check_tensors(const ClipCheckRequest& r);

}  // namespace peft
