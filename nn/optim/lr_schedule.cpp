// Learning-rate schedules (formulas in lr_schedule.h).
#include "nn/optim/lr_schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace peft::nn {

void check_lr_schedule(const LrSchedule& s) {
  if (s.kind != "cosine" && s.kind != "step" && s.kind != "plateau" && s.kind != "constant")
    throw ValueError(fmt::format("--sched: unknown schedule '{}' (cosine | step | plateau | constant)", s.kind));
  auto finite_nonneg = [](const char* opt, double v) {
    if (!std::isfinite(v) || v < 0) throw ValueError(fmt::format("{}: must be finite and >= 0 (got {})", opt, v));
  };
  finite_nonneg("--min-lr", s.min_lr);
  finite_nonneg("--warmup-lr", s.warmup_lr);
  if (s.min_lr > s.peak) throw ValueError(fmt::format("--min-lr: {} is above --lr {}", s.min_lr, s.peak));
  if (!std::isfinite(s.decay_epochs) || s.decay_epochs <= 0)
    throw ValueError(fmt::format("--decay-epochs: must be positive (got {})", s.decay_epochs));
  if (!(s.decay_rate > 0 && s.decay_rate <= 1))
    throw ValueError(fmt::format("--decay-rate: must be in (0, 1] (got {})", s.decay_rate));
  if (s.patience_epochs < 0) throw ValueError(fmt::format("--patience-epochs: must be >= 0 (got {})", s.patience_epochs));
}

double scheduled_lr(const LrSchedule& s, int64_t u, int64_t reductions) {
  const double peak = s.peak;
  if (s.warmup_updates > 0 && u < s.warmup_updates)
    return s.warmup_lr + (peak - s.warmup_lr) * static_cast<double>(u + 1) / static_cast<double>(s.warmup_updates);
  if (s.kind == "constant") return peak;
  if (s.kind == "step") {
    const double epoch = std::floor(static_cast<double>(u / std::max<int64_t>(1, s.updates_per_epoch)));
    return std::max(s.min_lr, peak * std::pow(s.decay_rate, std::floor(epoch / s.decay_epochs)));
  }
  if (s.kind == "plateau") return std::max(s.min_lr, peak * std::pow(s.decay_rate, static_cast<double>(reductions)));
  if (s.total_updates <= s.warmup_updates) return peak;
  double t = static_cast<double>(u - s.warmup_updates) / static_cast<double>(s.total_updates - s.warmup_updates);
  t = std::min(1.0, std::max(0.0, t));
  return s.min_lr + 0.5 * (peak - s.min_lr) * (1.0 + std::cos(M_PI * t));
}

int64_t plateau_reductions(const std::vector<double>& val_top1, int64_t patience) {
  double best = -std::numeric_limits<double>::infinity();
  int64_t bad = 0, k = 0;
  for (double v : val_top1) {
    if (v > best * (1.0 + 1e-4)) {  // torch: rel threshold in max mode
      best = v;
      bad = 0;
    } else if (++bad > patience) {
      ++k;
      bad = 0;
    }
  }
  return k;
}

}  // namespace peft::nn
