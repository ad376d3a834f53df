// `peft check` for CLIP methods (interop.md "The check command", methods.md "Conventions"): one eval forward
// and backward of a method's head on a batch.
#include <fmt/format.h>

#include "autograd/backward.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "nn/pretrained.h"
#include "peft/clip_methods.h"
#include "peft/model_source.h"

namespace peft {

nn::NamedTensors clip_check_tensors(const ClipCheckRequest& r) {
  auto clip_ptr = open_clip_model(r.config, r.weights, r.seed);  // any CLIP naming (nn/pretrained.h)
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
  Tensor f;  // the head's input: raw image features, or the images for a method that changes the image tower
  const bool images_in = clip_method(r.method).takes_images(resolve_clip_options(r.method, r.options));
  if (images_in) {
    if (!in.count("images"))
      throw IOError(fmt::format("{}: {} changes the image tower and needs 'images' [B,C,S,S] (image_features cannot be used)",
                                r.inputs, r.method));
    f = in.at("images");
  } else if (in.count("image_features")) {
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
  if (clip_method(r.method).needs_cache) {
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
  Tensor text_features;  // raw u of the lines by the plain CLIP: before a method changes a tower (clip-lora, maple)
  {
    NoGradGuard ng;
    text_features = clip.encode_text(tokens);
  }
  Generator gen(r.seed);
  // kgcoop: the hand-crafted prompts of --kg-texts (default: the --texts lines).
  const Tensor kg_tokens = kg_prompt_tokens(r.method, r.options, tok, static_cast<int64_t>(lines.size()), r.texts);
  std::shared_ptr<ClipHead> head =
      make_clip_head(clip, r.method, r.options, PromptTokens::from_tokens(tokens), gen, keys, cache_labels, kg_tokens);
  if (!adapter.empty()) {
    try {
      head->load_state_dict(adapter);
    } catch (const ValueError& e) {
      throw IOError(fmt::format("{}: {}", r.adapter, e.what()));
    }
  }
  Tensor logits = head->forward(f);
  Tensor loss = cross_entropy(logits, labels);
  if (Tensor extra = head->extra_loss(); extra.defined()) loss = add(loss, extra);  // e.g. KgCoOp's knowledge term
  nn::NamedTensors out = {{"logits", logits.detach()}, {"loss", loss.detach()}};
  if (loss.requires_grad()) backward(loss);
  for (auto& [n, p] : head->named_parameters())
    if (p.requires_grad()) out.push_back({"grad." + n, p.grad()});
  out.push_back({"tokens", tokens});
  out.push_back({"text_features", text_features});
  return out;
}

}  // namespace peft
