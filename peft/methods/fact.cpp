// FacT-TT (methods.md "FacT-TT"; JieShibo/PETL-ViT FacT/fact_tt.py): one factor pair U = FacTu.weight
// [r,D], V = FacTv.weight [D,r] shared by all blocks, and per block six small cores S; each of
// qkv, proj, fc1 and fc2 gains s * V S U (tensorised over the m = F/D chunks of the MLP hidden
// units, hidden unit c*D + d). Dropout 0.1 on each core's output in training. timm layout only.
// Mergeable (exact; the official repo has none): every update is a fixed matrix.
#include <fmt/format.h>

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "peft/methods/adapted.h"
#include "peft/methods/methods.h"

namespace peft::methods {

namespace {

constexpr double kFactDropout = 0.1;  // fact_tt.py: nn.Dropout(0.1) on each core's output

// A bias-free linear's weight as a module of its own: FacTu, FacTv (on the model) and the cores
// {q,k,v,proj}_FacTs (on attn), {fc1,fc2}_FacTs (on mlp), each with a parameter "weight" as in
// the official nn.Linear(bias=False) modules.
class FactWeight : public nn::Module {
 public:
  explicit FactWeight(Tensor w) { weight = register_parameter("weight", std::move(w)); }
  std::string type_name() const override { return "FacT"; }
  Tensor weight;
};

// FacTu / FacTv: modules the method added. Their effect is folded by the layers that use them,
// which zero their cores on merge; U and V themselves stay as they are.
class FactFactor : public FactWeight, public Adapted {
 public:
  using FactWeight::FactWeight;
  std::string method() const override { return "fact"; }
  bool added_module() const override { return true; }
  bool mergeable() const override { return true; }
  void merge(nn::VisionTransformer&) override {}
};

// What the four wrappers share: U, V, s, the dropout and the chunked delta of methods.md "FacT-TT".
struct FactShared {
  Tensor U, V;  // [r, D], [D, r]
  double s = 1.0;
  Generator* gen = nullptr;  // the model's drop_gen
  // s * V S_c U [D, D] for the core rows/cols a merge folds.
  Tensor delta(const Tensor& Sc) const { return mul(matmul(matmul(V, Sc), U), s); }
};

// Base linear plus the FacT path; the subclasses say where the path goes (methods.md "FacT-TT").
class FactLinear : public nn::Linear, public Adapted {
 public:
  FactLinear(const nn::Linear& base, FactShared f) : nn::Linear(base), f_(std::move(f)) {}
  std::string method() const override { return "fact"; }
  bool mergeable() const override { return true; }
  std::string training_noise() const override {
    return fmt::format("FacT dropout is active in training (p = {})", kFactDropout);
  }
  Tensor forward(const Tensor& x) const override { return add(nn::Linear::forward(x), fact_path(x)); }
  // fc2's path needs g = gelu(h) itself (Q(g)); the other sites never see forward_after_gelu
  // from nn::Mlp, but stay correct if called.
  Tensor forward_after_gelu(Tensor h) const override { return forward(gelu(h)); }

 protected:
  // Dropout on a core's output, training only (eval: the identity, nothing drawn).
  Tensor drop(const Tensor& t) const { return dropout(t, kFactDropout, is_training(), *f_.gen); }
  virtual Tensor fact_path(const Tensor& x) const = 0;  // s * (...) [..., out]
  FactShared f_;
};

// qkv (chunks q, k, v) and fc1 (chunks c = 0..m-1): output rows [c*D, (c+1)*D) gain
// s * V S[c*r:(c+1)*r, :] U x, with S [m*r, r] (qkv: the cores q|k|v stacked by rows).
class FactRowChunks : public FactLinear {
 public:
  FactRowChunks(const nn::Linear& base, FactShared f, std::vector<Tensor> cores)
      : FactLinear(base, std::move(f)), cores_(std::move(cores)) {}
  void merge(nn::VisionTransformer&) override {
    NoGradGuard ng;
    const int64_t D = f_.V.size(0), r = f_.U.size(0);
    Tensor S = stacked();  // [m*r, r]
    for (int64_t c = 0; c < S.size(0) / r; ++c) {
      Tensor rows = narrow(weight, 0, c * D, D);
      rows.copy_(add(rows, f_.delta(narrow(S, 0, c * r, r))));
    }
    for (Tensor& t : cores_) t.fill_(0.0);
  }

 protected:
  Tensor stacked() const { return cores_.size() == 1 ? cores_[0] : cat(cores_, 0); }
  Tensor fact_path(const Tensor& x) const override {
    const int64_t r = f_.U.size(0), D = f_.V.size(0);
    Tensor S = stacked();                          // [m*r, r]
    const int64_t m = S.size(0) / r;
    Tensor t = drop(linear(linear(x, f_.U), S));   // [..., r] -> [..., m*r]
    Shape chunks = x.sizes();                      // [..., m, r]
    chunks.back() = m;
    chunks.push_back(r);
    Shape out = x.sizes();                         // [..., m*D]: hidden unit c*D + d
    out.back() = m * D;
    return mul(reshape(linear(reshape(t, chunks), f_.V), out), f_.s);  // [..., m, D] -> [..., m*D]
  }
  std::vector<Tensor> cores_;  // qkv: Sq, Sk, Sv [r, r]; fc1: S1 [m*r, r]
};

// proj: s * V Sp U a, a the heads concatenated before proj [..., D].
class FactProj : public FactLinear {
 public:
  FactProj(const nn::Linear& base, FactShared f, Tensor core) : FactLinear(base, std::move(f)), core_(std::move(core)) {}
  void merge(nn::VisionTransformer&) override {
    NoGradGuard ng;
    weight.copy_(add(weight, f_.delta(core_)));
    core_.fill_(0.0);
  }

 protected:
  Tensor fact_path(const Tensor& x) const override {
    return mul(linear(drop(linear(linear(x, f_.U), core_)), f_.V), f_.s);  // [..., D]
  }
  Tensor core_;  // [r, r]
};

// fc2: s * V S2 Q(g), Q(g) = U applied to each of the m chunks of g [..., m*D] -> [..., m*r];
// columns [c*D, (c+1)*D) of fc2's weight gain s * V S2[:, c*r:(c+1)*r] U on merge.
class FactFc2 : public FactLinear {
 public:
  FactFc2(const nn::Linear& base, FactShared f, Tensor core) : FactLinear(base, std::move(f)), core_(std::move(core)) {}
  void merge(nn::VisionTransformer&) override {
    NoGradGuard ng;
    const int64_t D = f_.V.size(0), r = f_.U.size(0);
    for (int64_t c = 0; c < core_.size(1) / r; ++c) {
      Tensor cols = narrow(weight, 1, c * D, D);
      cols.copy_(add(cols, f_.delta(narrow(core_, 1, c * r, r))));
    }
    core_.fill_(0.0);
  }

 protected:
  Tensor fact_path(const Tensor& g) const override {
    const int64_t r = f_.U.size(0), D = f_.V.size(0), m = core_.size(1) / r;
    Shape chunks = g.sizes();  // [..., m, D]
    chunks.back() = m;
    chunks.push_back(D);
    Shape flat = g.sizes();    // [..., m*r]
    flat.back() = m * r;
    Tensor q = reshape(linear(reshape(g, chunks), f_.U), flat);  // Q(g): [..., m, r] -> [..., m*r]
    return mul(linear(drop(linear(q, core_)), f_.V), f_.s);      // [..., r] -> [..., D]
  }
  Tensor core_;  // [r, m*r]
};

// A core registered on `owner` (attn or mlp) as module `name` with a parameter "weight",
// kaiming-uniform(a=sqrt 5): U(+-1/sqrt(fan_in)), the nn.Linear default the official code keeps.
Tensor add_core(std::vector<std::string>& names, nn::Module& owner, const std::string& owner_name, const std::string& name, Shape shape,
                DType dt, Generator& gen) {
  Tensor w = empty(shape, dt);
  kaiming_uniform_(w, gen, std::sqrt(5.0));  // fan_in = shape[1]
  auto mod = owner.register_module(name, std::make_shared<FactWeight>(w));
  names.push_back(owner_name + "." + name + ".weight");
  return mod->weight;
}

double fact_scale(const MethodOptions& o) { return o.alpha < 0 ? 1.0 : o.alpha; }  // unset (-1): s = 1

void validate_fact(const MethodOptions&, const nn::ViTConfig& c) {
  if (c.mlp_hidden() % c.dim != 0)
    throw MethodError(fmt::format("--method fact: the config's MLP hidden size F = {} (dim {} x mlp_ratio {}) is not a "
                                  "multiple of the width D = {}, so it cannot be split into F/D chunks (methods.md 23)",
                                  c.mlp_hidden(), c.dim, c.mlp_ratio, c.dim));
}

void attach_fact(nn::VisionTransformer& vit, const MethodOptions& o, Generator& gen) {
  validate_fact(o, vit.cfg);
  const int64_t D = vit.cfg.dim, r = o.rank, m = vit.cfg.mlp_hidden() / D;
  const DType dt = vit.dtype();
  // FacTu, FacTv: registered on the model after every existing module (fact_tt.py adds them to
  // the built model), so they follow the blocks and the head in the adapter file.
  Tensor u = empty({r, D}, dt);
  kaiming_uniform_(u, gen, std::sqrt(5.0));  // U(+-1/sqrt(D))
  auto fu = vit.register_module("FacTu", std::make_shared<FactFactor>(u));
  auto fv = vit.register_module("FacTv", std::make_shared<FactFactor>(zeros({D, r}, dt)));  // V = 0: the base model
  fu->added_names = {"FacTu.weight"};
  fv->added_names = {"FacTv.weight"};
  FactShared shared{fu->weight, fv->weight, fact_scale(o), &vit.drop_gen};

  std::map<const nn::Linear*, LinearSite> sites;
  for (const LinearSite& s : linear_sites(vit)) sites[s.linear] = s;
  for (size_t i = 0; i < vit.block_list.size(); ++i) {
    nn::Block& b = *vit.block_list[i];
    const std::string attn = vit.block_name(i) + ".attn", mlp = vit.block_name(i) + ".mlp";
    const LinearSite qkv = sites.at(b.attn->qkv.get()), proj = sites.at(b.attn->proj.get());
    const LinearSite fc1 = sites.at(b.mlp->fc1.get()), fc2 = sites.at(b.mlp->fc2.get());
    // Cores in the official order: q, k, v, proj on attn, then fc1, fc2 on mlp (after the base
    // layers, which keep their places); each wrapper lists the cores it uses.
    std::vector<std::string> nq, np, n1, n2;
    Tensor sq = add_core(nq, *b.attn, attn, "q_FacTs", {r, r}, dt, gen);
    Tensor sk = add_core(nq, *b.attn, attn, "k_FacTs", {r, r}, dt, gen);
    Tensor sv = add_core(nq, *b.attn, attn, "v_FacTs", {r, r}, dt, gen);
    Tensor sp = add_core(np, *b.attn, attn, "proj_FacTs", {r, r}, dt, gen);
    Tensor s1 = add_core(n1, *b.mlp, mlp, "fc1_FacTs", {m * r, r}, dt, gen);
    Tensor s2 = add_core(n2, *b.mlp, mlp, "fc2_FacTs", {r, m * r}, dt, gen);
    auto wq = std::make_shared<FactRowChunks>(*qkv.linear, shared, std::vector<Tensor>{sq, sk, sv});
    auto wp = std::make_shared<FactProj>(*proj.linear, shared, sp);
    auto w1 = std::make_shared<FactRowChunks>(*fc1.linear, shared, std::vector<Tensor>{s1});
    auto w2 = std::make_shared<FactFc2>(*fc2.linear, shared, s2);
    wq->added_names = nq;
    wp->added_names = np;
    w1->added_names = n1;
    w2->added_names = n2;
    install_linear(vit, qkv, wq);
    install_linear(vit, proj, wp);
    install_linear(vit, fc1, w1);
    install_linear(vit, fc2, w2);
  }
}

}  // namespace

MethodDescriptor fact_method() {
  MethodDescriptor d;
  d.name = "fact";
  d.description =
      "FacT-TT: s * V S U added to qkv, proj, fc1 and fc2 of every block (U = FacTu, V = FacTv shared by all "
      "blocks, per-block cores *_FacTs; MLP chunks c*D + d), and the head; timm layout; mergeable (peft merge)";
  d.options = {"rank", "alpha"};
  d.option_help = "--rank r (default 8), --alpha s (the scale, default 1)";
  d.timm_only = true;
  d.mergeable = true;
  d.demo_lr = 5e-3;
  d.defaults = [](MethodOptions& o) { o.alpha = 1.0; };
  d.validate = validate_fact;
  d.attach = attach_fact;
  return d;
}

}  // namespace peft::methods
