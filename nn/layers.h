// Small layers: LayerNorm (wrappable: forward is virtual), Dropout, DropPath (stochastic depth), Embedding.
#pragma once
#include "core/random.h"
#include "nn/module.h"

namespace peft::nn {

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps);  // weight 1, bias 0
  std::string type_name() const override { return "LayerNorm"; }
  virtual Tensor forward(const Tensor& x) const;  // x: [..., D]
  int64_t dim;
  double eps;
  Tensor weight, bias;
};

// Inverted dropout; identity in eval mode or with p = 0. Draws from the model's generator.
class Dropout : public Module {
 public:
  Dropout(double p, Generator* gen) : p(p), gen(gen) {}
  std::string type_name() const override { return "Dropout"; }
  Tensor forward(const Tensor& x) const;
  double p;
  Generator* gen;
};

// Stochastic depth (timm DropPath): zeroes a whole sample's residual branch with probability p
// and scales survivors by 1/(1-p); identity in eval mode.
class DropPath : public Module {
 public:
  DropPath(double p, Generator* gen) : p(p), gen(gen) {}
  std::string type_name() const override { return "DropPath"; }
  Tensor forward(const Tensor& x) const;  // x: [B, ...]
  double p;
  Generator* gen;
};

class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, Generator& gen);  // N(0, 1) like torch.nn.Embedding
  std::string type_name() const override { return "Embedding"; }
  Tensor forward(const Tensor& ids) const;  // ids int64 [...] -> [..., D]
  Tensor weight;
};

}  // namespace peft::nn
