// torch_vit_bench.py's FLOP formula in C++ (see script_flops.h). The mode names tested here are
// the script's own per-mode rules, kept as the script writes them; which mode counts a method is
// its descriptor's script_flops_mode.
#include "peft/script_flops.h"

#include "peft/method.h"

namespace peft {

std::string method_from_script_mode(const std::string& m) {
  for (const MethodDescriptor& d : vision_method_registry())
    if (!d.script_alias.empty() && d.script_alias == m) return d.name;
  return m;
}

std::optional<std::string> script_flops_mode(const std::string& method) {
  if (!is_vision_method(method) || vision_method(method).script_flops_mode.empty()) return std::nullopt;
  return vision_method(method).script_flops_mode;  // the method's descriptor says which rule
}

ScriptFwdFlops script_fwd_flops_per_image(const ScriptFlopsInput& in) {
  const nn::ViTConfig& c = in.config;
  const std::string& mode = in.mode;
  const double D = static_cast<double>(c.dim), depth = static_cast<double>(c.depth), p = static_cast<double>(c.patch_size);
  const double Np = static_cast<double>(c.num_patches());
  const double M = static_cast<double>(in.prompts);
  const double T = 1 + Np + (mode == "vpt" ? M : 0.0);
  const double B = static_cast<double>(in.batch);
  const double r = static_cast<double>(in.lora_rank), b = static_cast<double>(in.bottleneck);
  ScriptFwdFlops f;
  f.pe = 2 * Np * (static_cast<double>(c.in_chans) * p * p) * D;
  f.lin = depth * 2 * T * D * (3 * D + D + 4 * D + 4 * D);  // qkv, proj, fc1, fc2 = 24 T D^2
  f.att = depth * 2 * (2 * T * T * D);                     // QK^T + AV
  f.head = 2 * D * static_cast<double>(c.num_classes);
  f.lora = mode == "lora" ? depth * 2 * T * r * (D + 3 * D) : 0;  // A: D->r, B: r->3D on qkv
  if (mode == "cvpt" && in.prompts > 0) {
    const double Tq = 1 + Np;
    // q proj + out proj per image; prompt k/v projection once per batch (amortised / B)
    f.extra_lin = depth * (2 * Tq * D * D * 2 + 2 * M * D * 2 * D / B);
    f.extra_att = depth * 2 * (2 * Tq * M * D);
  }
  f.adapter = mode == "adaptformer" ? depth * 2 * T * D * b * 2 : 0;  // down D->b, up b->D
  return f;
}

double script_train_flops_per_image(const ScriptFlopsInput& in) {
  const ScriptFwdFlops f = script_fwd_flops_per_image(in);
  const std::string& mode = in.mode;
  const double fwd = f.sum();
  if (mode == "linear" || ((mode == "vpt" || mode == "cvpt") && in.prompts == 0))
    return fwd + 2 * f.head;  // backbone runs without autograd graph
  const double lin = f.lin + f.extra_lin + f.lora + f.adapter;
  const double att = f.att + f.extra_att;
  double bwd = lin + 2 * att + 2 * f.head;
  if (mode == "full") bwd += f.lin + f.pe;  // weight grads of all block linears + patch embed
  if (mode == "lora") bwd += f.lora;        // weight grads of A, B
  if (mode == "adaptformer") bwd += f.adapter;
  return fwd + bwd;
}

}  // namespace peft
