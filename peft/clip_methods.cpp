// The CLIP methods of methods.md 13-17, one head class each. The frozen text features are computed
// once at construction (except CoOp, whose text tower runs in every forward).
#include "peft/clip_methods.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/random.h"
#include "data/loader.h"
#include "nn/checkpoint.h"
#include "nn/pretrained.h"
#include "nn/linear.h"
#include "nn/optim/optimizer.h"

namespace peft {

const std::vector<MethodInfo>& clip_methods() {
  static const std::vector<MethodInfo> m = {
      {"zeroshot", "zero-shot CLIP: s * norm(f) c^T, c = norm(u) of the --texts lines, or the template ensemble "
                   "norm(mean_t norm(u)) with --classnames/--templates",
       ""},
      {"taskres", "TaskRes: classifier u + alpha * taskres.residual [K,E] (raw u, mean over templates, normalised "
                  "after the sum)",
       "--alpha a (default 0.5)"},
      {"coop", "CoOp: coop.ctx [M,W] replaces the token embeddings at positions 1..M, through the frozen text tower",
       "--prompts M (default 16)"},
      {"clip-adapter", "CLIP-Adapter: f' = a*relu(fc2(relu(fc1 f))) + (1-a)*f, fc1 [E/4,E], fc2 [E,E/4], no biases",
       "--alpha a (default 0.2)"},
      {"tip-adapter", "Tip-Adapter: 100 norm(f) norm(u)^T + alpha exp(-beta (1 - norm(f) keys^T)) onehot(labels); "
                      "training-free cache of the few-shot features",
       "--alpha a (default 1.17), --beta b (default 1)"},
      {"tip-adapter-f", "Tip-Adapter-F: Tip-Adapter with trainable tip.cache_keys [NK,E]",
       "--alpha a (default 1.17), --beta b (default 1)"},
  };
  return m;
}

bool is_clip_method(const std::string& name) {
  for (auto& m : clip_methods())
    if (m.name == name) return true;
  return false;
}

double resolve_alpha(const std::string& method, const ClipMethodOptions& o) {
  if (!is_clip_method(method)) throw ValueError(fmt::format("unknown CLIP method '{}' (see peft methods)", method));
  if (method == "coop" && (o.prompts <= 0 || o.prompts > (int64_t{1} << 16)))
    throw ValueError(fmt::format("coop: --prompts must be in [1, 65536] (got {})", o.prompts));
  // Non-finite hyper-parameters give an all-NaN adapter that "trains" with exit 0 (issue 20).
  if (!std::isfinite(o.alpha)) throw ValueError(fmt::format("{}: --alpha must be a finite number (got {})", method, o.alpha));
  if (!std::isfinite(o.beta)) throw ValueError(fmt::format("{}: --beta must be a finite number (got {})", method, o.beta));
  if (o.alpha >= 0) return o.alpha;
  if (method == "taskres") return 0.5;
  if (method == "clip-adapter") return 0.2;
  if (method == "tip-adapter" || method == "tip-adapter-f") return 1.17;
  return 0.0;
}

namespace {

DType model_dtype(const nn::CLIP& clip) { return clip.text_projection.dtype(); }

// The raw text features u [K, E] of the prompt rows, without autograd (the text tower is frozen).
Tensor frozen_text_features(nn::CLIP& clip, const Tensor& tokens) {
  NoGradGuard ng;
  return clip.encode_text(tokens);
}

void check_features(const ClipHead& h, const Tensor& f) {
  const int64_t E = h.clip.cfg.embed_dim;
  if (f.dim() != 2 || f.size(1) != E)
    throw ShapeError(fmt::format("{}: image features {} (expected [B, {}]). Hint: pass raw encode_image outputs",
                                 h.method, shape_str(f.sizes()), E));
}

// The zero-shot classifier of methods.md 2.4: norm(mean_t norm(u)) over each class's prompts.
Tensor zero_shot_classifier(nn::CLIP& clip, const PromptTokens& p) {
  return ensemble_classifier(encode_text_rows(clip, p.ensemble), p.per_class);
}

// ---- zeroshot (methods.md 13): c = norm(mean_t norm(u)) (norm(u) for one prompt per class).
class ZeroShotHead : public ClipHead {
 public:
  ZeroShotHead(nn::CLIP& clip, const PromptTokens& p) : ClipHead(clip, "zeroshot") {
    classifier = zero_shot_classifier(clip, p);
    num_classes = classifier.size(0);
  }
  Tensor forward(const Tensor& f) override {
    check_features(*this, f);
    return mul(matmul(l2_normalize(f), transpose(classifier, 0, 1)), clip.logit_scale_exp());
  }
  Tensor classifier;  // [K, E], normalised
};

// ---- taskres (methods.md 14): c = u + alpha R with the raw (unnormalised) base u.
class TaskResHead : public ClipHead {
 public:
  TaskResHead(nn::CLIP& clip, const PromptTokens& p, double alpha) : ClipHead(clip, "taskres"), alpha(alpha) {
    base = ensemble_mean(encode_text_rows(clip, p.ensemble), p.per_class);  // raw, averaged over templates
    num_classes = base.size(0);
    auto holder = std::make_shared<Module>();
    residual = holder->register_parameter("residual", zeros(base.sizes(), base.dtype()));  // R = 0
    register_module("taskres", holder);
  }
  Tensor forward(const Tensor& f) override {
    check_features(*this, f);
    Tensor c = add(base, mul(residual, alpha));  // [K, E]; normalised only after the sum (Decided)
    return mul(matmul(l2_normalize(f), transpose(l2_normalize(c), 0, 1)), clip.logit_scale_exp());
  }
  double alpha;
  Tensor base, residual;
};

// ---- coop (methods.md 15): ctx replaces the embeddings at positions 1..M.
class CoOpHead : public ClipHead {
 public:
  CoOpHead(nn::CLIP& clip, const Tensor& tokens0, int64_t M, Generator& gen) : ClipHead(clip, "coop"), M(M) {
    std::vector<int64_t> eot = nn::eot_positions(tokens0);
    int64_t Tm = 0;
    for (size_t k = 0; k < eot.size(); ++k) {
      if (eot[k] <= M)
        throw ValueError(fmt::format("coop: prompt line {} has its EOT at position {} <= M = {}: it has only {} "
                                     "tokens to replace. Hint: lower --prompts or use longer lines "
                                     "(e.g. 'X X X X {{class}}.')",
                                     k + 1, eot[k], M, eot[k] - 1));
      Tm = std::max(Tm, eot[k] + 1);
    }
    // Positions after the last EOT cannot change any feature (causal mask): drop them once here.
    tokens = contiguous(narrow(tokens0, 1, 0, Tm));
    num_classes = tokens.size(0);
    {
      NoGradGuard ng;
      embeddings = embedding(clip.token_embedding->weight, tokens);  // [K, Tm, W], frozen
    }
    const int64_t W = clip.cfg.text.width;
    auto holder = std::make_shared<Module>();
    ctx = holder->register_parameter("ctx", randn({M, W}, gen, DType::f32, 0.0, 0.02).to(model_dtype(clip)));
    register_module("coop", holder);
  }
  // The text features u [K, E] of the current context (through the frozen text tower).
  Tensor text_features() {
    const int64_t K = tokens.size(0), T = tokens.size(1), W = ctx.size(1);
    Tensor e = cat({narrow(embeddings, 1, 0, 1), expand(unsqueeze(ctx, 0), {K, M, W}),
                    narrow(embeddings, 1, 1 + M, T - 1 - M)},
                   1);  // [K, T, W]: SOT, ctx_0..ctx_{M-1}, the rest of the original line
    return clip.encode_text_embeddings(e, tokens);
  }
  Tensor forward(const Tensor& f) override {
    check_features(*this, f);
    return mul(matmul(l2_normalize(f), transpose(l2_normalize(text_features()), 0, 1)), clip.logit_scale_exp());
  }
  int64_t M;
  Tensor tokens, embeddings, ctx;
};

// ---- clip-adapter (methods.md 16): f' = a relu(fc2(relu(fc1 f))) + (1-a) f.
class ClipAdapterHead : public ClipHead {
 public:
  ClipAdapterHead(nn::CLIP& clip, const Tensor& tokens, double alpha, Generator& gen)
      : ClipHead(clip, "clip-adapter"), alpha(alpha) {
    classifier = l2_normalize(frozen_text_features(clip, tokens));
    num_classes = classifier.size(0);
    const int64_t E = clip.cfg.embed_dim, R = E / 4;
    if (R < 1) throw ValueError(fmt::format("clip-adapter: embed_dim {} is too small (E/4 must be >= 1)", E));
    auto holder = std::make_shared<Module>();
    fc1 = holder->register_module("fc1", std::make_shared<nn::Linear>(E, R, false, gen));  // U(+-1/sqrt(E))
    fc2 = holder->register_module("fc2", std::make_shared<nn::Linear>(R, E, false, gen));  // U(+-1/sqrt(E/4))
    register_module("clip_adapter", holder);
    holder->to(model_dtype(clip));
  }
  Tensor forward(const Tensor& f) override {
    check_features(*this, f);
    Tensor g = relu(fc2->forward(relu(fc1->forward(f))));  // the final ReLU is part of the adapter (Decided)
    Tensor f2 = add(mul(g, alpha), mul(f, 1.0 - alpha));
    return mul(matmul(l2_normalize(f2), transpose(classifier, 0, 1)), clip.logit_scale_exp());
  }
  double alpha;
  Tensor classifier;
  std::shared_ptr<nn::Linear> fc1, fc2;
};

// ---- tip-adapter(-f) (methods.md 17).
class TipAdapterHead : public ClipHead {
 public:
  TipAdapterHead(nn::CLIP& clip, const PromptTokens& p, bool finetune, double alpha, double beta, const Tensor& keys,
                 const Tensor& labels)
      : ClipHead(clip, finetune ? "tip-adapter-f" : "tip-adapter"), alpha(alpha), beta(beta) {
    classifier = zero_shot_classifier(clip, p);  // the official code's template ensemble
    const int64_t K = classifier.size(0), E = clip.cfg.embed_dim;
    num_classes = K;
    if (!keys.defined() || !labels.defined())
      throw ValueError(fmt::format("{}: needs a cache (tip.cache_keys [NK, E] and tip.cache_labels [NK]). Hint: give "
                                   "the few-shot images or an adapter file holding the cache",
                                   method));
    if (keys.dim() != 2 || keys.size(1) != E || labels.dim() != 1 || labels.size(0) != keys.size(0) ||
        labels.dtype() != DType::i64)
      throw ShapeError(fmt::format("{}: cache keys {} / labels {} {} (expected [NK, {}] and int64 [NK])", method,
                                   shape_str(keys.sizes()), dtype_name(labels.dtype()), shape_str(labels.sizes()), E));
    const std::vector<int64_t> y = labels.to_vector<int64_t>();
    for (size_t n = 0; n < y.size(); ++n)
      if (y[n] < 0 || y[n] >= K)
        throw ValueError(fmt::format("{}: tip.cache_labels[{}] = {} is outside [0, {}) (K = the number of prompt lines)",
                                     method, n, y[n], K));
    auto holder = std::make_shared<Module>();
    cache_keys = holder->register_parameter("cache_keys", keys.to(model_dtype(clip)), /*requires_grad=*/finetune);
    cache_labels = holder->register_buffer("cache_labels", labels.clone());
    register_module("tip", holder);
  }
  Tensor forward(const Tensor& f) override {
    check_features(*this, f);
    Tensor nf = l2_normalize(f);
    Tensor clip_logits = mul(matmul(nf, transpose(classifier, 0, 1)), 100.0);  // the official constant, not s
    // exp(-(beta - beta A)) onehot(labels), A = nf keys^T [B, NK]: one fused op (keys not re-normalised)
    Tensor cache_logits = tip_cache_logits(nf, cache_keys, cache_labels, num_classes, beta);
    return add(clip_logits, mul(cache_logits, alpha));
  }
  double alpha, beta;
  Tensor classifier, cache_keys, cache_labels;
};

}  // namespace

std::shared_ptr<ClipHead> make_clip_head(nn::CLIP& clip, const std::string& method, const ClipMethodOptions& o,
                                         const Tensor& tokens, Generator& gen, const Tensor& cache_keys,
                                         const Tensor& cache_labels) {
  return make_clip_head(clip, method, o, PromptTokens::from_tokens(tokens), gen, cache_keys, cache_labels);
}

std::shared_ptr<ClipHead> make_clip_head(nn::CLIP& clip, const std::string& method, const ClipMethodOptions& o,
                                         const PromptTokens& p, Generator& gen, const Tensor& cache_keys,
                                         const Tensor& cache_labels) {
  const double alpha = resolve_alpha(method, o);  // also rejects unknown methods
  const Tensor& tokens = p.single;
  if (!tokens.defined() || tokens.dim() != 2 || tokens.size(0) == 0)
    throw ValueError(fmt::format("{}: no class prompts (tokens {}). Hint: --texts needs one prompt per line", method,
                                 tokens.defined() ? shape_str(tokens.sizes()) : std::string("undefined")));
  if (!p.ensemble.defined() || p.ensemble.dim() != 2 || p.per_class < 1 || p.ensemble.size(0) != tokens.size(0) * p.per_class)
    throw ValueError(fmt::format("{}: {} ensemble prompt rows for {} classes x {} templates", method,
                                 p.ensemble.defined() ? p.ensemble.size(0) : 0, tokens.size(0), p.per_class));
  clip.freeze_all();  // the backbone and logit_scale are frozen in every method
  std::shared_ptr<ClipHead> h;
  if (method == "zeroshot") h = std::make_shared<ZeroShotHead>(clip, p);
  if (method == "taskres") h = std::make_shared<TaskResHead>(clip, p, alpha);
  if (method == "coop") h = std::make_shared<CoOpHead>(clip, tokens, o.prompts, gen);
  if (method == "clip-adapter") h = std::make_shared<ClipAdapterHead>(clip, tokens, alpha, gen);
  if (method == "tip-adapter" || method == "tip-adapter-f")
    h = std::make_shared<TipAdapterHead>(clip, p, method == "tip-adapter-f", alpha, o.beta, cache_keys, cache_labels);
  h->eval();
  return h;
}

Tensor tip_cache_keys(const Tensor& features) {
  NoGradGuard ng;
  if (features.dim() == 2) return l2_normalize(features);
  if (features.dim() != 3)
    throw ShapeError(fmt::format("tip_cache_keys: features {} (expected [NK, E] or [NK, views, E])",
                                 shape_str(features.sizes())));
  return l2_normalize(mean(features, {1}));
}

std::map<std::string, std::string> clip_method_metadata(const std::string& method, const ClipMethodOptions& o) {
  return {{"method", method},
          {"alpha", fmt::format("{}", resolve_alpha(method, o))},
          {"beta", fmt::format("{}", o.beta)},
          {"prompts", std::to_string(o.prompts)}};
}

std::string clip_method_from_metadata(const std::map<std::string, std::string>& md, ClipMethodOptions& o) {
  const std::string method = metadata_method(md);
  auto num = [&](const char* k, auto& field) { read_metadata_number(md, k, field); };
  num("alpha", o.alpha);
  num("beta", o.beta);
  num("prompts", o.prompts);
  return method;
}

// ---------------------------------------------------------------- training and evaluation

ClipTrainResult train_clip_head(ClipHead& head, const Tensor& features, const Tensor& labels, const ClipTrainConfig& c) {
  ClipTrainResult res;
  auto specs = nn::param_groups(head.named_parameters(), c.weight_decay);
  if (specs.empty()) return res;
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<nn::Optimizer> opt;
  if (c.optimizer == "sgd")
    opt = std::make_unique<nn::SGD>(specs, c.lr, 0.9);
  else if (c.optimizer == "adamw")
    opt = std::make_unique<nn::AdamW>(specs, c.lr);
  else
    throw ValueError(fmt::format("--optimizer: unknown '{}' (adamw | sgd)", c.optimizer));
  const DType dt = specs[0].param.dtype();
  const int64_t N = features.size(0), B = std::max<int64_t>(1, std::min(c.batch, N));
  const int64_t per_epoch = (N + B - 1) / B, total = per_epoch * c.epochs;
  Tensor f_all = features.to(dt);
  Generator gen(c.seed ^ 0x7a11ULL);
  head.train();
  for (int64_t e = 0; e < c.epochs; ++e) {
    std::vector<int64_t> order = data::random_permutation(N, gen);
    double sum = 0;
    for (int64_t b = 0; b < per_epoch; ++b) {
      const int64_t lo = b * B, n = std::min(B, N - lo);
      Tensor idx = from_vector_i64(std::vector<int64_t>(order.begin() + lo, order.begin() + lo + n), {n});
      opt->set_lr(nn::warmup_cosine_lr(res.steps, per_epoch, total, c.lr));
      Tensor loss = cross_entropy(head.forward(index_select(f_all, 0, idx)), index_select(labels, 0, idx));
      opt->zero_grad();
      backward(loss);
      opt->step();
      sum += loss.item() * static_cast<double>(n);
      ++res.steps;
    }
    res.last_loss = sum / static_cast<double>(N);
  }
  head.eval();
  res.train_time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

double clip_head_accuracy(ClipHead& head, const Tensor& features, const Tensor& labels, int64_t batch) {
  NoGradGuard ng;
  const int64_t N = features.size(0);
  if (N == 0) return 0.0;
  const DType dt = head.clip.text_projection.dtype();
  const std::vector<int64_t> y = labels.to_vector<int64_t>();
  int64_t correct = 0;
  for (int64_t lo = 0; lo < N; lo += batch) {
    const int64_t n = std::min(batch, N - lo);
    Tensor logits = head.forward(narrow(features, 0, lo, n).to(dt));
    std::vector<int64_t> pred = argmax(logits, 1).to_vector<int64_t>();
    for (int64_t i = 0; i < n; ++i) correct += pred[static_cast<size_t>(i)] == y[static_cast<size_t>(lo + i)];
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(N);
}

// ---------------------------------------------------------------- check

nn::NamedTensors clip_check_tensors(const ClipCheckRequest& r) {
  auto clip_ptr = nn::load_clip_model(r.config, r.weights, r.seed);  // any CLIP naming (nn/pretrained.h)
  nn::CLIP& clip = *clip_ptr;
  const nn::CLIPConfig& cfg = clip.cfg;
  clip.eval();
  const std::vector<std::string> lines = nn::read_text_lines(r.texts);
  nn::TextTokenizer tok(cfg.text, r.vocab);
  Tensor tokens = tok.tokenize(lines);
  auto in = nn::read_tensors(r.inputs);
  if (!in.count("labels"))
    throw IOError(fmt::format("{}: no 'labels' tensor (expected labels [B] I64 with image_features [B,E] or images)", r.inputs));
  Tensor labels = in.at("labels");
  Tensor f;
  if (in.count("image_features")) {
    f = in.at("image_features");
    if (f.dim() != 2 || f.size(1) != cfg.embed_dim)
      throw ShapeError(fmt::format("{}: image_features {} (expected [B, {}])", r.inputs, shape_str(f.sizes()), cfg.embed_dim));
  } else if (in.count("images")) {
    NoGradGuard ng;
    f = clip.encode_image(in.at("images"));
  } else {
    throw IOError(fmt::format("{}: neither 'image_features' nor 'images' (CLIP methods need one of them)", r.inputs));
  }
  if (labels.dim() != 1 || labels.size(0) != f.size(0))
    throw ShapeError(fmt::format("{}: labels {} do not match {} feature rows", r.inputs, shape_str(labels.sizes()), f.size(0)));
  for (int64_t y : labels.to_vector<int64_t>())
    if (y < 0 || y >= static_cast<int64_t>(lines.size()))
      throw ValueError(fmt::format("{}: label {} is outside [0, {}) (K = the number of lines of {})", r.inputs, y,
                                   lines.size(), r.texts));
  std::map<std::string, Tensor> adapter;
  if (!r.adapter.empty()) adapter = nn::read_tensors(r.adapter);
  Tensor keys, cache_labels;
  if (r.method == "tip-adapter" || r.method == "tip-adapter-f") {
    if (adapter.count("tip.cache_keys") && adapter.count("tip.cache_labels")) {
      keys = adapter.at("tip.cache_keys");
      cache_labels = adapter.at("tip.cache_labels");
    } else if (!r.adapter.empty()) {
      throw IOError(fmt::format("{}: a {} adapter needs tip.cache_keys [NK,E] and tip.cache_labels [NK]", r.adapter, r.method));
    } else {
      keys = tip_cache_keys(f);  // no cache given: the batch itself
      cache_labels = labels;
    }
  }
  Generator gen(r.seed);
  std::shared_ptr<ClipHead> head = make_clip_head(clip, r.method, r.options, tokens, gen, keys, cache_labels);
  if (!adapter.empty()) {
    try {
      head->load_state_dict(adapter);
    } catch (const ValueError& e) {
      throw IOError(fmt::format("{}: {}", r.adapter, e.what()));
    }
  }
  Tensor logits = head->forward(f);
  Tensor loss = cross_entropy(logits, labels);
  nn::NamedTensors out = {{"logits", logits.detach()}, {"loss", loss.detach()}};
  if (loss.requires_grad()) backward(loss);
  for (auto& [n, p] : head->named_parameters())
    if (p.requires_grad()) out.push_back({"grad." + n, p.grad()});
  out.push_back({"tokens", tokens});
  {
    NoGradGuard ng;
    out.push_back({"text_features", clip.encode_text(tokens)});
  }
  return out;
}

}  // namespace peft
