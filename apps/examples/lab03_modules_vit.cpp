// Lab 3 (docs/labs/03-modules-vit.md): modules, dotted parameter names, and a ViT from the inside.
#include <fmt/format.h>

#include "apps/examples/labs/lab03_modules_vit.h"
#include "nn/vit.h"

int main() {
  using namespace peft;
  Generator gen(0);
  lab03::TwoLayerMlp mlp(8, 32, gen);
  fmt::print("{}", mlp.tree());
  for (auto& [name, p] : mlp.named_parameters()) fmt::print("  {:<12} {}\n", name, shape_str(p.sizes()));

  nn::ViTConfig c = nn::load_vit_config("vit-micro");
  nn::VisionTransformer vit(c, 0);
  fmt::print("vit-micro: {} parameters (formula: {})\n", vit.num_parameters(), lab03::vit_num_parameters(c));

  // The patch embedding is a GEMM over patch rows.
  Tensor images = randn({2, c.in_chans, c.image_size, c.image_size}, gen);
  Tensor rows = lab03::patchify(images, c.patch_size);  // [2, 64, 48]
  Tensor w = vit.patch_embed->weight;                   // [D, C, P, P]
  Tensor tokens = linear(rows, reshape(w, {w.size(0), -1}), vit.patch_embed->bias);
  fmt::print("patch rows {} -> tokens {}; max |difference| to PatchEmbed: {:.2e}\n", shape_str(rows.sizes()),
             shape_str(tokens.sizes()), max_abs_diff(tokens, vit.patch_embed->forward(images)));
  Tensor logits = vit.forward(images);
  fmt::print("logits {}\n", shape_str(logits.sizes()));
  return 0;
}
