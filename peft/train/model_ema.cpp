// EMA of the trainable tensors (float32, as timm's ema_v * decay + (1 - decay) * model_v).
#include "peft/train/model_ema.h"

#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "core/error.h"

namespace peft {

ModelEma::ModelEma(const std::vector<nn::ParamSpec>& params, double decay) : decay_(decay) {
  NoGradGuard ng;
  for (auto& p : params) {
    if (p.param.dtype() != DType::f32 || !p.param.is_contiguous())
      throw ValueError(fmt::format("--model-ema: '{}' is not a contiguous float32 tensor", p.name));
    names_.push_back(p.name);
    avg_.push_back(p.param.detach().clone());
  }
}

void ModelEma::update(const std::vector<nn::ParamSpec>& params) {
  const float d = static_cast<float>(decay_), e = static_cast<float>(1.0 - decay_);
  for (size_t i = 0; i < avg_.size(); ++i) {
    float* a = avg_[i].data<float>();
    const float* w = params[i].param.data<float>();
    for (int64_t k = 0; k < avg_[i].numel(); ++k) a[k] = a[k] * d + w[k] * e;  // timm: ema * d + (1 - d) * w
  }
}

void ModelEma::swap(std::vector<nn::ParamSpec>& params) {
  NoGradGuard ng;
  for (size_t i = 0; i < avg_.size(); ++i) {
    Tensor live = params[i].param.detach().clone();
    Tensor(params[i].param).copy_(avg_[i]);
    avg_[i].copy_(live);
  }
}

std::vector<std::pair<std::string, Tensor>> ModelEma::state(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < avg_.size(); ++i) out.emplace_back(prefix + names_[i], avg_[i]);
  return out;
}

void ModelEma::load(const std::map<std::string, Tensor>& tensors, const std::string& prefix, const std::string& file) {
  NoGradGuard ng;
  for (size_t i = 0; i < avg_.size(); ++i) {
    auto it = tensors.find(prefix + names_[i]);
    if (it == tensors.end())
      throw IOError(fmt::format("{}: no averaged tensor for '{}' (was the run started without --model-ema?)", file,
                                names_[i]));
    avg_[i].copy_(it->second);
  }
}

}  // namespace peft
