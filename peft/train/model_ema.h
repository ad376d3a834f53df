// An exponential moving average of the trainable tensors (timm's --model-ema, ModelEmaV2): after
// every optimizer update ema = decay * ema + (1 - decay) * weight. Frozen tensors never change,
// so averaging only the trainable ones gives the same model as timm's average of the whole
// state dict. timm validates the averaged model every epoch and keeps it in the checkpoint; here
// it is validated the same way and is what the adapter files hold.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/optim/optimizer.h"

namespace peft {

class ModelEma {
 public:
  // Starts as a copy of the current weights.
  ModelEma(const std::vector<nn::ParamSpec>& params, double decay);

  double decay() const { return decay_; }
  void update(const std::vector<nn::ParamSpec>& params);
  // The averaged tensors, in the order of the params given to the constructor.
  const std::vector<Tensor>& weights() const { return avg_; }
  // Exchanges the averaged and the live weights (twice = no change): to evaluate or save the
  // average with the model's own code.
  void swap(std::vector<nn::ParamSpec>& params);

  // For the training checkpoint: "<name>" -> averaged tensor.
  std::vector<std::pair<std::string, Tensor>> state(const std::string& prefix) const;
  // Restores state(prefix) from checkpoint tensors; IOError naming a missing tensor.
  void load(const std::map<std::string, Tensor>& tensors, const std::string& prefix, const std::string& file);

 private:
  std::vector<std::string> names_;
  std::vector<Tensor> avg_;
  double decay_;
};

}  // namespace peft
