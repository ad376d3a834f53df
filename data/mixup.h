// Mixup and CutMix on a batch (timm's Mixup): images mixed with the reversed batch, targets the
// label-smoothed one-hot rows mixed by the same lambda, for soft-target cross-entropy.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace peft::data {

// --mixup A --cutmix A --mixup-prob P --mixup-switch-prob S --mixup-mode M (timm's names and
// defaults). Either alpha > 0 turns mixing on; with both, each mix is CutMix with probability S.
struct MixupOptions {
  double mixup_alpha = 0, cutmix_alpha = 0;
  double prob = 1.0;         // probability of mixing a batch (batch) or an element (pair, elem)
  double switch_prob = 0.5;  // probability of CutMix instead of mixup when both are on
  std::string mode = "batch";  // batch: one lambda for the batch | pair | elem: one per pair / element
  double label_smoothing = 0;  // of the one-hot rows before mixing (timm passes --smoothing)
  bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
};
// Throws ValueError naming the option (--mixup, --cutmix, --mixup-prob, --mixup-switch-prob,
// --mixup-mode) when a value is out of range.
void check_mixup_options(const MixupOptions& o);

// A CutMix box, rows [y0, y1) x columns [x0, x1).
struct MixBox {
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
};
// timm's rand_bbox for a given centre (cy, cx): a cut of int(H sqrt(1 - lam)) x int(W sqrt(1 - lam))
// whose half sizes (rounded down) extend each way from the centre, clipped to the image.
MixBox cutmix_box(int64_t H, int64_t W, double lam, int64_t cy, int64_t cx);
// The lambda of a box after clipping (timm's correct_lam): 1 - box area / image area.
double box_lam(const MixBox& b, int64_t H, int64_t W);

// Beta(a, a) from two gamma draws (Marsaglia-Tsang).
double sample_beta(Generator& gen, double a);

// The random choices for one batch of B rows: for every element i (batch mode: the same for all)
// its lambda before box correction (1 = untouched), whether it is CutMix, and the box centre.
// Element i is mixed with element B-1-i (timm's flip); in pair mode only i < B/2 draw and the
// partner B-1-i repeats them.
struct MixParams {
  std::vector<double> lam;
  std::vector<bool> cutmix;
  std::vector<int64_t> cy, cx;
};
MixParams draw_mix_params(const MixupOptions& o, int64_t B, int64_t H, int64_t W, Generator& gen);

// Mixes images [B, C, H, W] float32 in place with their reversed batch as `p` says (mode from
// `o`) and returns the soft targets [B, K] float32: lam_i * y_i + (1 - lam_i) * y_{B-1-i}, y the
// smoothed one-hot rows and lam_i corrected to the clipped box for CutMix. An odd batch's middle
// element mixes with itself (batch, elem) or stays as it is (pair).
Tensor apply_mix(Tensor& images, const std::vector<int64_t>& labels, int64_t num_classes, const MixupOptions& o,
                 const MixParams& p);

// draw_mix_params + apply_mix with a generator seeded from (seed, epoch, batch): the same batch
// mixes the same way in every run, resumed or not, whatever the number of loader workers.
Tensor mix_batch(Tensor& images, const std::vector<int64_t>& labels, int64_t num_classes, const MixupOptions& o,
                 uint64_t seed, int64_t epoch, int64_t batch);

}  // namespace peft::data
