// Optimizers (SGD, AdamW) over trainable parameters only, parameter groups, clipping, LR schedule.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.h"

namespace peft::nn {

// One trainable tensor with its own weight decay (no decay for biases, norms, prompts, ...).
struct ParamSpec {
  std::string name;
  Tensor param;
  double weight_decay = 0.0;
  double lr_scale = 1.0;  // this tensor's learning rate is lr() * lr_scale (layer decay, nn/optim/layer_decay.h)
};

std::vector<std::string> default_no_decay();

// Trainable parameters of a model as optimizer specs. Tensors that are 1-d (biases, norm
// weights, per-channel scales) or whose names match a no-decay pattern get no weight decay.
std::vector<ParamSpec> param_groups(const NamedTensors& named, double weight_decay,
                                    const std::vector<std::string>& no_decay_globs);
std::vector<ParamSpec> param_groups(const NamedTensors& named, double weight_decay);
// The trainable tensors of m: default_no_decay() plus the names m marks (Module::no_weight_decay).
std::vector<ParamSpec> param_groups(const Module& m, double weight_decay);


class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamSpec> params);
  virtual ~Optimizer() = default;
  void step();       // parameters without a gradient are skipped (no decay either)
  void zero_grad();  // sets gradients to none
  // backward(loss) and step() in one pass, for gradients cleared beforehand: each parameter is
  // updated, and its gradient freed, as soon as backward has finished it (PyTorch's "optimizer
  // step in backward" recipe). Same parameters and state as zero_grad(); backward(loss); step();
  // zero_grad(), but a full fine-tune never holds all its gradients at once (ViT-B: -330 MB).
  // Not for gradient clipping or accumulation, which need every gradient first.
  void step_in_backward(const Tensor& loss);
  void set_lr(double lr) { lr_ = lr; }
  double lr() const { return lr_; }
  int64_t steps() const { return steps_; }
  // Bytes held by optimizer state (momentum / moments): trainable tensors only, allocated lazily.
  int64_t state_bytes() const;
  // State as named tensors ("<param>.<slot>", plus "__step__") for training checkpoints.
  NamedTensors state_dict() const;
  void load_state_dict(const std::map<std::string, Tensor>& sd);
  const std::vector<ParamSpec>& params() const { return params_; }

 protected:
  virtual void begin_step() { ++steps_; }  // once per step, before any update_param
  virtual void update_param(size_t i) = 0;  // params_[i] has a gradient
  std::vector<ParamSpec> params_;
  std::vector<std::vector<Tensor>> state_;  // per parameter, the optimizer's slots
  std::vector<std::string> slot_names_;
  double lr_ = 1e-3;
  int64_t steps_ = 0;
};

// torch.optim.SGD: d = g + wd*p; buf = mu*buf + d (buf = d at first); nesterov: d += mu*buf else d = buf.
class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamSpec> params, double lr, double momentum = 0.9, bool nesterov = false);
  double momentum;
  bool nesterov;

 protected:
  void update_param(size_t i) override;
};

// torch.optim.AdamW (decoupled decay, bias correction, same operation order as PyTorch).
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamSpec> params, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
  double beta1, beta2, eps;

 protected:
  void begin_step() override;  // also the bias corrections of this step
  void update_param(size_t i) override;
  double bc1_ = 1, bc2_sqrt_ = 1;
};

// Scales gradients so their global L2 norm is at most max_norm; returns the norm before clipping.
double clip_grad_norm(const std::vector<ParamSpec>& params, double max_norm);

// Linear warm-up from 0 to peak over warmup_steps, then cosine decay to 0 at total_steps.
double warmup_cosine_lr(int64_t step, int64_t warmup_steps, int64_t total_steps, double peak);

}  // namespace peft::nn
