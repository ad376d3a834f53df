// The cost of a PEFT method on a built model (issue 5): trainable parameters, forward FLOPs per
// image counted by the GEMMs themselves, training-step and inference time, and peak memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/vit.h"

namespace peft {

struct CostReport {
  std::string method;             // set by the caller (measure_cost does not know the name)
  int64_t prompts = 0;            // set by the caller: M for prompt methods, 0 otherwise
  int64_t batch = 0;              // images per measured batch
  int64_t trainable = 0;          // tensors with requires_grad, head included
  int64_t backbone = 0;           // every parameter except the head (adapters and prompts included)
  int64_t total = 0;              // every parameter
  double trainable_pct = 0;       // 100 * trainable / backbone (head included: full > 100%)
  int64_t flops_per_image = 0;    // forward GEMM FLOPs (2*M*N*K summed) of one no_grad forward / batch
  double train_step_s = 0;        // median of the timed steps: forward + loss + backward + AdamW step
  double infer_batch_s = 0;       // median no_grad forward of one batch (eval mode)
  int64_t train_peak_bytes = 0;   // peak live tensor bytes during one training step (weights included)
  int64_t infer_peak_bytes = 0;   // peak live tensor bytes during one no_grad forward (weights included)
  double peak_rss_mb = 0;         // process peak RSS after the measurement (reset first where Linux allows)
};

// Measures the model as it is (method attached, head present) on a seeded random batch of
// `batch` images: one untimed warm-up step, then `steps` timed training steps and `steps` timed
// inference forwards. The trainable tensors are restored afterwards and the train/eval mode is
// left as it was, so measuring does not change the model. Throws ValueError when the model has
// no head or batch/steps are not positive.
CostReport measure_cost(nn::VisionTransformer& vit, int64_t batch, int steps);

// One row per report, aligned columns: method, M, trainable (count and %), MFLOPs/img,
// step ms, infer ms, train/infer peak MiB, peak RSS MiB.
std::string format_cost_table(const std::vector<CostReport>& reports);

// The same as CSV (header line + one line per report; raw numbers: FLOPs, seconds, bytes).
std::string format_cost_csv(const std::vector<CostReport>& reports);
std::string cost_csv_header();
std::string cost_csv_row(const CostReport& r);

}  // namespace peft
