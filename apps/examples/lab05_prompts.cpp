// Lab 5 (docs/labs/05-prompts.md): VPT-shallow, VPT-deep and CVPT on a tiny ViT. Where the prompts
// go (sequence length per block), what they cost (GEMM FLOPs for M = 0, 10, 50), where CLS's
// attention goes, and how the prompts get their gradient.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <string>
#include <vector>

#include "apps/examples/labs/lab05_prompts.h"

int main() {
  using namespace peft;
  const nn::ViTConfig c = lab05::tiny_config();
  Generator gen(0);
  const int64_t B = 8;
  Tensor images = randn({B, c.in_chans, c.image_size, c.image_size}, gen);
  Tensor labels = from_vector_i64({0, 1, 2, 3, 4, 0, 1, 2}, {B});
  const std::vector<std::string> methods = {"vpt-shallow", "vpt-deep", "cvpt"};
  int wrong = 0;

  fmt::print("tiny ViT: N = {} patches, D = {}, L = {} blocks, H = {} heads\n\n", c.num_patches(), c.dim, c.depth,
             c.heads);
  fmt::print("1. tokens per block (M = 10)\n");
  for (const auto& m : methods) {
    auto vit = lab05::make_model(c, m, 10);
    std::vector<int64_t> lengths;
    Tensor f = lab05::prompted_features(*vit, images, &lengths);
    const double diff = max_abs_diff(f, vit->forward_features(images));
    wrong += diff > 1e-5;
    fmt::print("  {:<12} {}   |mine - library| = {:.1e}\n", m, fmt::join(lengths, " "), diff);
  }

  fmt::print("\n2. forward GEMM MFLOPs for a batch of {} (measured / predicted)\n  {:<12}", B, "M");
  for (int64_t M : {0, 10, 50}) fmt::print(" {:>17}", M);
  fmt::print("\n");
  for (const auto& m : methods) {
    fmt::print("  {:<12}", m);
    for (int64_t M : {0, 10, 50}) {
      // M = 0 is the model without prompts (a linear probe), the same for every method.
      auto vit = lab05::make_model(c, M == 0 ? "linear" : m, M);
      const int64_t meas = lab05::measure_forward_flops(*vit, images);
      const int64_t pred = lab05::predict_forward_flops(c, M == 0 ? "linear" : m, M, B);
      wrong += meas != pred;
      fmt::print(" {:>8.2f} / {:>6.2f}", meas / 1e6, pred / 1e6);
    }
    fmt::print("\n");
  }
  const int64_t d50 = lab05::predict_forward_flops(c, "vpt-deep", 50, B) - lab05::predict_forward_flops(c, "cvpt", 50, B);
  fmt::print("  at M = 50 VPT-deep costs {:.2f} MFLOPs more than CVPT\n", d50 / 1e6);

  fmt::print("\n3. share of CLS attention on the prompt rows, per block (random init, M = 10)\n");
  for (const std::string m : {"vpt-shallow", "vpt-deep"}) {
    auto vit = lab05::make_model(c, m, 10);
    std::vector<double> share = lab05::cls_prompt_attention_share(*vit, images);
    fmt::print("  {:<12}", m);
    for (double s : share) fmt::print(" {:.3f}", s);
    fmt::print("   (uniform attention would give {:.3f})\n", 10.0 / (1 + 10 + c.num_patches()));
  }

  fmt::print("\n4. gradient norm per prompt row after one backward (M = 10)\n");
  for (const auto& m : methods) {
    auto vit = lab05::make_model(c, m, 10);
    Tensor p = lab05::prompt_tensor(*vit);
    backward(lab05::loss_of_prompts(*vit, p, images, labels));
    fmt::print("  {:<12}", m);
    for (int64_t i = 0; i < p.size(0); ++i) {
      Tensor g = select(p.grad(), 0, i);  // [M, D]: row i's gradient
      fmt::print(" {:.2e}", std::sqrt(sum(mul(g, g)).item()));
    }
    fmt::print("\n");
  }
  if (wrong) fmt::print("\n{} prediction(s) or re-implementation(s) differ from the library\n", wrong);
  return wrong == 0 ? 0 : 1;
}
