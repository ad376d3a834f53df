// What every module a PEFT method installs has in common, and the helpers that install them.
//
// A method changes a built ViT in three generic ways (nn/ knows none of them by name):
//  - it wraps a layer: a subclass of nn::Linear / nn::LayerNorm / nn::PatchEmbed / nn::Mlp /
//    nn::Block, copy-constructed from the base layer (so it shares the base tensors and
//    children), swapped in with replace_module: the base names stay, the method's tensors are
//    registered beside them (blocks.0.attn.qkv.lora_A next to blocks.0.attn.qkv.weight);
//  - it adds a module (a hook on the token sequence, a shared factor);
//  - it unfreezes base tensors (BitFit, LN-TUNE).
// Wrappers and added modules implement Adapted: they name their method, list the tensors they
// registered, and fold into the base when the method is mergeable.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/vit.h"

namespace peft::methods {

class Adapted {
 public:
  virtual ~Adapted() = default;
  virtual std::string method() const = 0;
  // True for a module the method created (an adapter, prompts), false for a wrapper of a base
  // layer: layers inside an added module are no base layers (no LoRA target, no SSF site).
  virtual bool added_module() const { return false; }
  virtual bool mergeable() const { return false; }
  // Refuses (ValueError) before anything changes when this module cannot be folded into a plain
  // model of the same config (e.g. an SSF shift after a linear without bias).
  virtual void check_merge() const {}
  // Folds this module's effect into the base tensors, exactly for the forward pass (called in
  // float64), and leaves it computing the base function (e.g. lora_B = 0). Only for mergeable
  // methods; the default refuses.
  virtual void merge(nn::VisionTransformer& vit);
  // A training-only random effect before the head ("" when none): the head cache needs none.
  virtual std::string training_noise() const { return ""; }
  // A method whose backward treats a computed value as a constant (DoRA's row norm) defines
  // gradients that are not the derivative of its forward. While held (on = true), such values
  // are computed once, now, and kept fixed, so a central-difference check (peft gradcheck)
  // measures exactly the gradient the method defines. Off again: computed every forward.
  virtual void hold_detached(bool /*on*/) {}
  // The full names of the tensors this module registered (filled by the installing code).
  std::vector<std::string> added_names;
};

// Every Adapted module of the model: registered modules, and the fused q|k|v wrappers of the
// openai layout, which are no child of their attention (their tensors sit on attn.in_proj).
std::vector<Adapted*> adapted_modules(nn::VisionTransformer& vit);

// Registers t under `local` on `owner` (dotted name `owner_name.local`) as a trainable leaf and
// records the full name on `a`.
Tensor add_tensor(Adapted& a, nn::Module& owner, const std::string& owner_name, const std::string& local, Tensor t);

// The linear layers of the model that a method may wrap, under their full names, in model order:
// the backbone's Linear modules (not the head, nor layers a method added) and, openai layout, the
// fused q|k|v projection of each attention as {attn}.in_proj.
struct LinearSite {
  std::string name;                // blocks.3.attn.qkv | transformer.resblocks.3.attn.in_proj | ...
  nn::Linear* linear = nullptr;    // the layer
  nn::Attention* fused = nullptr;  // set when this is an attention's fused q|k|v projection
};
std::vector<LinearSite> linear_sites(nn::VisionTransformer& vit);

// Swaps the linear at `site` for `wrapper` (built from it) and returns the module on which the
// wrapper's own tensors are registered: the wrapper itself, or attn.in_proj on the openai layout.
nn::Module& install_linear(nn::VisionTransformer& vit, const LinearSite& site, std::shared_ptr<nn::Linear> wrapper);

// The dotted name of module m in the model ("" when it is not there).
std::string module_name(nn::Module& root, const nn::Module* m);

// Swaps the module at dotted `name` (its parent must be reachable by name) for m.
void replace_at(nn::Module& root, const std::string& name, std::shared_ptr<nn::Module> m);

}  // namespace peft::methods
