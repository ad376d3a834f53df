// CLIP-LoRA (methods.md "CLIP-LoRA"; MaxZanella/CLIP-LoRA loralib/layers.py, loralib/utils.py, main.py):
// rank-r updates c B A, c = alpha / sqrt(r), on the q, k, v row blocks of every attention's fused
// in_proj (and on out_proj with target o), in both towers by default; logits 100 norm(f) norm(u)^T.
// Mergeable (peft merge): in_proj row block += c B A, out_proj.weight += c B_o A_o.
//
// The wrappers installed in the CLIP hold the same Tensor handles as the head, which registers
// them under the adapter names of interop.md ({t}transformer.resblocks.{i}.attn.q_proj.lora_A ...)
// on nested holder modules; the CLIP's own state dict stays a plain CLIP (nothing registered there).
#include <fmt/format.h>

#include <cmath>
#include <set>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/clip.h"
#include "peft/clip_methods.h"
#include "peft/methods/clip_methods.h"

namespace peft::methods {

namespace {

constexpr double kLogitConstant = 100.0;  // main.py: logit_scale = 100, not exp(logit_scale) (Decided)
constexpr double kDropout = 0.25;         // the official default dropout_rate, on the LoRA input, training only
const char* const kBlockNames[3] = {"q_proj", "k_proj", "v_proj"};

// What the head and its wrappers share: whether the head trains (the wrappers sit in the CLIP,
// whose train/eval flag the head does not drive) and the dropout stream.
struct LoraState {
  bool training = false;
  Generator gen{0};
};

// The LoRA input: dropout(x) in training (official LinearLoRA applies it to the LoRA path only).
Tensor lora_input(const Tensor& x, LoraState& st) { return st.training ? dropout(x, kDropout, true, st.gen) : x; }

// attn.in_proj with separate rank-r updates on its q, k, v row blocks [0,C), [C,2C), [2C,3C)
// (PlainMultiheadAttentionLoRA splits in_proj into q_proj, k_proj, v_proj). The targeted blocks'
// A are stacked [n r, C] and their B placed block-diagonally [3C, n r], so one fused lora_linear
// computes all of them; untargeted row blocks get zero rows.
class LoraInProj : public nn::Linear {
 public:
  LoraInProj(const nn::Linear& base, std::shared_ptr<LoraState> st) : nn::Linear(base), st(std::move(st)) {}
  std::string type_name() const override { return "LoraInProj"; }
  Tensor forward(const Tensor& x) const override {  // x [.., C] -> [.., 3C]
    const int64_t C = in_features;
    std::vector<Tensor> as, rows;
    int64_t n = 0;
    for (int j = 0; j < 3; ++j) n += A[j].defined();
    const int64_t r = n ? rank : 0;
    int64_t col = 0;
    for (int j = 0; j < 3; ++j) {
      const DType dt = compute_dtype(weight.dtype());  // float32 for a weight stored in bf16
      if (!A[j].defined()) {
        rows.push_back(zeros({C, n * r}, dt));
        continue;
      }
      as.push_back(A[j]);
      std::vector<Tensor> parts;  // row block j of the block-diagonal B: [0 | B_j | 0]  [C, n r]
      if (col > 0) parts.push_back(zeros({C, col}, dt));
      parts.push_back(B[j]);
      if (n * r - col - r > 0) parts.push_back(zeros({C, n * r - col - r}, dt));
      rows.push_back(parts.size() == 1 ? parts[0] : cat(parts, 1));
      col += r;
    }
    Tensor a = as.size() == 1 ? as[0] : cat(as, 0);  // [n r, C]
    Tensor b = cat(rows, 0);                          // [3C, n r]
    if (!st->training) return lora_linear(x, weight, bias, a, b, scale);  // fused, same math as below
    return add(linear(x, weight, bias), mul(linear(linear(lora_input(x, *st), a), b), scale));
  }
  Tensor forward_after_gelu(Tensor h) const override { return forward(gelu(h)); }
  // in_proj row block j += c B_j A_j (loralib add_lora_data), in float64; then B = 0.
  void merge() {
    for (int j = 0; j < 3; ++j) {
      if (!A[j].defined()) continue;
      Tensor blk = narrow(weight, 0, j * in_features, in_features);
      Tensor delta = mul(matmul(B[j].to(DType::f64), A[j].to(DType::f64)), scale);
      blk.copy_(add(blk.to(DType::f64), delta));
      B[j].fill_(0.0);
    }
  }
  Tensor A[3], B[3];  // [r, C], [C, r] per row block; undefined when not a target
  int64_t rank = 0;
  double scale = 0.0;
  std::shared_ptr<LoraState> st;
};

// attn.out_proj with target o: lin(a; out_proj) + c B_o A_o a.
class LoraOutProj : public nn::Linear {
 public:
  LoraOutProj(const nn::Linear& base, std::shared_ptr<LoraState> st) : nn::Linear(base), st(std::move(st)) {}
  std::string type_name() const override { return "LoraOutProj"; }
  Tensor forward(const Tensor& x) const override {  // x [.., C] -> [.., C]
    if (!st->training) return lora_linear(x, weight, bias, A, B, scale);
    return add(linear(x, weight, bias), mul(linear(linear(lora_input(x, *st), A), B), scale));
  }
  Tensor forward_after_gelu(Tensor h) const override { return forward(gelu(h)); }
  void merge() {
    weight.copy_(add(weight.to(DType::f64), mul(matmul(B.to(DType::f64), A.to(DType::f64)), scale)));
    B.fill_(0.0);
  }
  Tensor A, B;  // [r, C], [C, r]
  double scale = 0.0;
  std::shared_ptr<LoraState> st;
};

struct Targets {
  bool qkv[3] = {false, false, false};
  bool o = false;
};

Targets parse_targets(const std::string& s) {
  Targets t;
  size_t start = 0;
  int count = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(',', start), s.size());
    const std::string item = s.substr(start, end - start);
    bool* slot = item == "q" ? &t.qkv[0] : item == "k" ? &t.qkv[1] : item == "v" ? &t.qkv[2] : item == "o" ? &t.o : nullptr;
    if (!slot)
      throw ValueError(fmt::format("clip-lora: --targets '{}': unknown target '{}' (a comma-separated list of q, k, v, o)",
                                   s, item));
    if (*slot) throw ValueError(fmt::format("clip-lora: --targets '{}': '{}' is listed twice", s, item));
    *slot = true;
    ++count;
    start = end + 1;
  }
  if (count == 0) throw ValueError("clip-lora: --targets is empty (any of q, k, v, o)");
  return t;
}

bool adapts_vision(const ClipMethodOptions& o) { return o.encoder != "text"; }
bool adapts_text(const ClipMethodOptions& o) { return o.encoder != "vision"; }

// The holder module at dotted `path` under root, created on first use.
nn::Module& holder_at(nn::Module& root, const std::string& path) {
  nn::Module* m = &root;
  size_t start = 0;
  while (start < path.size()) {
    const size_t end = std::min(path.find('.', start), path.size());
    const std::string part = path.substr(start, end - start);
    nn::Module* next = nullptr;
    for (auto& [n, c] : m->named_children())
      if (n == part) next = c.get();
    if (!next) next = m->register_module(part, std::make_shared<nn::Module>()).get();
    m = next;
    start = end + 1;
  }
  return *m;
}

// Installs the wrappers in the adapted towers of `clip` and registers their tensors on `root`
// under the adapter names; A ~ kaiming-uniform(a = sqrt 5) = U(+-1/sqrt(C)), B = 0.
struct Installed {
  std::vector<std::shared_ptr<LoraInProj>> in_proj;
  std::vector<std::shared_ptr<LoraOutProj>> out_proj;
};

Installed install(nn::CLIP& clip, const ClipMethodOptions& o, nn::Module& root, const std::shared_ptr<LoraState>& st,
                  Generator& gen) {
  const Targets t = parse_targets(o.targets);
  const double scale = o.alpha / std::sqrt(static_cast<double>(o.rank));  // alpha / sqrt(r) (Decided)
  const DType dt = model_dtype(clip);
  Installed out;
  auto adapt = [&](const std::vector<std::shared_ptr<nn::Block>>& blocks, const std::string& prefix) {
    for (size_t i = 0; i < blocks.size(); ++i) {
      nn::Attention& attn = *blocks[i]->attn;
      if (dynamic_cast<LoraInProj*>(attn.qkv.get()) || dynamic_cast<LoraOutProj*>(attn.proj.get()))
        throw StateError("clip-lora: this CLIP already carries CLIP-LoRA. Hint: attach one method to a fresh model");
      const int64_t C = attn.dim;
      const std::string base = fmt::format("{}transformer.resblocks.{}.attn.", prefix, i);
      auto new_ab = [&](nn::Module& h, Tensor& A, Tensor& B) {
        Tensor a = empty({o.rank, C}, dt);
        kaiming_uniform_(a, gen, std::sqrt(5.0));  // U(+-1/sqrt(C))
        A = h.register_parameter("lora_A", a);
        B = h.register_parameter("lora_B", zeros({C, o.rank}, dt));
      };
      if (t.qkv[0] || t.qkv[1] || t.qkv[2]) {
        auto w = std::make_shared<LoraInProj>(*attn.qkv, st);
        w->rank = o.rank;
        w->scale = scale;
        for (int j = 0; j < 3; ++j)
          if (t.qkv[j]) new_ab(holder_at(root, base + kBlockNames[j]), w->A[j], w->B[j]);
        attn.replace_qkv(w);  // openai: in_proj_weight / in_proj_bias keep their names on attn
        out.in_proj.push_back(w);
      }
      if (t.o) {
        auto w = std::make_shared<LoraOutProj>(*attn.proj, st);
        w->scale = scale;
        new_ab(holder_at(root, base + "out_proj"), w->A, w->B);
        attn.replace_module("out_proj", w);  // its weight and bias keep the names out_proj.{weight,bias}
        out.out_proj.push_back(w);
      }
    }
  };
  if (adapts_vision(o)) adapt(clip.visual->block_list, "visual.");
  if (adapts_text(o)) adapt(clip.text_blocks, "");
  return out;
}

class ClipLoraHead : public ClipHead {
 public:
  ClipLoraHead(nn::CLIP& clip, const Tensor& tokens, const ClipMethodOptions& o, Generator& gen)
      : ClipHead(clip, "clip-lora"), tokens(tokens), vision(adapts_vision(o)), text(adapts_text(o)) {
    num_classes = tokens.size(0);
    st->gen = Generator(gen.next_u64());
    installed = install(clip, o, *this, st, gen);
    // The text tower unchanged (--encoder vision): its features are computed once.
    if (!text) classifier = l2_normalize(frozen_text_features(clip, tokens));
  }
  bool needs_images() const override { return vision; }
  // images [B, C, S, S] (vision adapted) or raw image features [B, E] (--encoder text) -> [B, K]
  Tensor forward(const Tensor& input) override {
    Tensor f;
    if (vision) {
      const nn::ViTConfig& vc = clip.cfg.vision;
      if (input.dim() != 4 || input.size(1) != vc.in_chans || input.size(2) != vc.image_size || input.size(3) != vc.image_size)
        throw ShapeError(fmt::format("clip-lora: adapts the image tower and takes images [B, {}, {}, {}] (got {}). Hint: "
                                     "--encoder text keeps the image tower frozen",
                                     vc.in_chans, vc.image_size, vc.image_size, shape_str(input.sizes())));
      f = clip.encode_image(input);  // [B, E] through the LoRA-adapted visual tower
    } else {
      check_features(input);
      f = input;
    }
    // The text tower trains: its features are recomputed at every forward (official: every step).
    Tensor u = text ? l2_normalize(clip.encode_text(tokens)) : classifier;  // [K, E]
    return mul(matmul(l2_normalize(f), transpose(u, 0, 1)), kLogitConstant);
  }
  Tensor tokens, classifier;
  bool vision, text;
  std::shared_ptr<LoraState> st = std::make_shared<LoraState>();
  Installed installed;

 protected:
  void on_train(bool on) override { st->training = on; }
};

void validate(const ClipMethodOptions& o, const nn::CLIPConfig&) {
  if (o.encoder != "both" && o.encoder != "vision" && o.encoder != "text")
    throw ValueError(fmt::format("clip-lora: --encoder '{}' is not one of both, vision, text", o.encoder));
  if (o.rank < 1) throw ValueError(fmt::format("clip-lora: --rank must be >= 1 (got {})", o.rank));
  if (!std::isfinite(o.alpha)) throw ValueError(fmt::format("clip-lora: --alpha must be finite (got {})", o.alpha));
  parse_targets(o.targets);
}

std::map<std::string, std::string> merge(nn::CLIP& clip, const ClipMethodOptions& o, const std::map<std::string, Tensor>& adapter) {
  validate(o, clip.cfg);
  clip.freeze_all();
  nn::Module holders;
  auto st = std::make_shared<LoraState>();
  Generator gen(0);  // every tensor comes from the adapter
  Installed w = install(clip, o, holders, st, gen);
  holders.load_state_dict(adapter);  // strict: exactly the tensors of these options (ValueError naming them)
  NoGradGuard ng;
  for (auto& p : w.in_proj) p->merge();
  for (auto& p : w.out_proj) p->merge();
  // The wrappers now compute the base function (B = 0); the CLIP's state dict is a plain CLIP.
  return {{"logit_scale_constant", fmt::format("{}", kLogitConstant)},
          {"note", "clip-lora logits are 100 * norm(f) norm(u)^T (the constant 100, not exp(logit_scale))"}};
}

}  // namespace

ClipMethodDescriptor clip_lora_method() {
  ClipMethodDescriptor d;
  d.name = "clip-lora";
  d.description =
      "CLIP-LoRA: (alpha/sqrt(r)) B A on the q,k,v row blocks of in_proj in both towers, logits 100 cos; mergeable "
      "(peft merge)";
  d.option_help = "--rank r (default 2), --alpha a (default 1), --targets any of q,k,v,o (default q,k,v), --encoder "
                  "both|vision|text (default both)";
  d.default_alpha = 1.0;
  d.default_rank = 2;
  d.default_targets = "q,k,v";
  d.needs_images = [](const ClipMethodOptions& o) { return adapts_vision(o); };
  d.validate = validate;
  d.merge = merge;
  // rank from lora_A [r, in]; targets and towers from the names (OpenAI / HF layouts)
  d.options_from_tensors = [](const TensorShapes& tensors, ClipMethodOptions& o) {
    std::set<std::string> targets;
    bool vision = false, text = false;
    for (const auto& [n, shape] : tensors) {
      if (!n.ends_with(".lora_A")) continue;
      if (!shape.empty()) o.rank = shape[0];
      (n.rfind("visual.", 0) == 0 ? vision : text) = true;
      for (auto [proj, t] : {std::pair<const char*, const char*>{".q_proj.", "q"}, {".k_proj.", "k"}, {".v_proj.", "v"},
                             {".out_proj.", "o"}})
        if (n.find(proj) != std::string::npos) targets.insert(t);
    }
    std::string list;
    for (const char* t : {"q", "k", "v", "o"})
      if (targets.count(t)) list += (list.empty() ? "" : ",") + std::string(t);
    o.targets = list;
    o.encoder = vision && text ? "both" : vision ? "vision" : "text";
  };
  d.make = [](nn::CLIP& clip, const ClipMethodOptions& o, const ClipHeadInputs& in, Generator& gen) -> std::shared_ptr<ClipHead> {
    return std::make_shared<ClipLoraHead>(clip, in.prompts.single, o, gen);
  };
  return d;
}

}  // namespace peft::methods
