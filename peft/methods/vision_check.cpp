// `peft check` for vision methods: build, load, one forward + backward, collect.
#include <algorithm>
#include "peft/methods/vision_check.h"

#include <fmt/format.h>

#include "autograd/backward.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/config.h"
#include "nn/pretrained.h"
#include "core/io/safetensors.h"

namespace peft {

namespace {

// Reads images and labels and checks them against the model before anything runs.
void read_inputs(const std::string& path, const nn::ViTConfig& c, int64_t k, Tensor& images, Tensor& labels) {
  SafetensorsFile f = SafetensorsFile::open(path);
  for (const char* n : {"images", "labels"})
    if (!f.has(n)) throw IOError(fmt::format("{}: has no tensor '{}' (expected images [B,C,S,S] and labels [B])", path, n));
  images = f.get("images", DType::f32);
  const std::string& ldt = f.info("labels").dtype;
  if (ldt != "I64" && ldt != "I32")
    throw IOError(fmt::format("{}: labels must be I64 (or I32), got {}", path, ldt));
  labels = f.get("labels", DType::i64);
  const Shape want = {images.dim() == 4 ? images.size(0) : -1, c.in_chans, c.image_size, c.image_size};
  if (images.dim() != 4 || images.sizes() != want)
    throw ShapeError(fmt::format("{}: images {} do not match the config (expected [B, {}, {}, {}])", path,
                                 shape_str(images.sizes()), c.in_chans, c.image_size, c.image_size));
  if (labels.dim() != 1 || labels.size(0) != images.size(0))
    throw ShapeError(fmt::format("{}: labels {} do not match images {} (expected [{}])", path, shape_str(labels.sizes()),
                                 shape_str(images.sizes()), images.size(0)));
  const int64_t* y = labels.data<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    if (y[i] < 0 || y[i] >= k)
      throw ValueError(fmt::format("{}: labels[{}] = {} is outside [0, {}) (K = {} classes)", path, i, y[i], k, k));
}

}  // namespace

nn::NamedTensors run_vision_check(const VisionCheckRequest& r) {
  validate_method_options(r.method, r.options);
  // --config, else the config of the checkpoint itself (any naming scheme, nn/pretrained.h).
  nn::ViTConfig c = r.config.empty() ? nn::read_pretrained(r.weights).config : nn::load_vit_config(r.config);

  // K: the adapter's head rows, else the base's num_classes (interop.md, methods.md "Conventions").
  std::map<std::string, Tensor> adapter;
  int64_t k = c.num_classes;
  if (!r.adapter.empty()) {
    SafetensorsFile f = SafetensorsFile::open(r.adapter);
    if (auto it = f.metadata().find("method"); it != f.metadata().end() && it->second != r.method)
      throw MethodError(fmt::format("--method {} does not match {}'s method {}", r.method, r.adapter, it->second));
    adapter = nn::read_tensors(r.adapter);
    if (auto it = adapter.find("head.weight"); it != adapter.end()) {
      if (it->second.dim() != 2)
        throw IOError(fmt::format("{}: head.weight must be 2-d [K, D], got {}", r.adapter, shape_str(it->second.sizes())));
      k = it->second.size(0);
    }
  }
  if (k <= 0)
    throw ValueError(fmt::format("check: the model has no head (num_classes 0 in {} and no head.weight in the adapter)",
                                 r.config));
  c.num_classes = k;

  nn::VisionTransformer vit(c, r.seed);
  Generator gen(r.seed + 1);
  // The base first, then the method. A base head with K classes replaces the method's fresh one.
  const nn::LoadResult base = nn::load_vit_weights(vit, r.weights);
  const bool base_head = vit.head && std::find(base.missing.begin(), base.missing.end(), "head.weight") == base.missing.end();
  std::map<std::string, Tensor> head;
  if (base_head)
    for (auto& [n, t] : vit.head->named_parameters()) head["head." + n] = t.clone();
  apply_method(vit, r.method, r.options, k, gen);
  if (base_head) vit.load_state_dict(head, /*strict=*/false);
  if (!adapter.empty()) {
    nn::LoadResult lr = vit.load_state_dict(adapter, /*strict=*/false);
    if (!lr.unexpected.empty() || !lr.mismatched.empty()) {
      nn::LoadResult bad = lr;
      bad.missing.clear();  // an adapter may give only some tensors; the rest keep their values
      throw IOError(fmt::format("{}: does not fit method {} ({})", r.adapter, r.method, bad.summary()));
    }
  }

  Tensor images, labels;
  read_inputs(r.inputs, c, k, images, labels);
  vit.eval();  // no prompt dropout, adapter dropout or drop-path (methods.md "Conventions")
  vit.zero_grad();
  Tensor logits = vit.forward(images);
  Tensor loss = cross_entropy(logits, labels);
  backward(loss);

  nn::NamedTensors out = {{"logits", logits.detach()}, {"loss", reshape(loss.detach(), {})}};
  for (auto& [n, t] : vit.named_parameters()) {
    if (!t.requires_grad()) continue;
    Tensor g = t.grad();
    out.emplace_back("grad." + n, g.defined() ? g : zeros_like(t));  // unreached tensors: zero gradient
  }
  return out;
}

}  // namespace peft
