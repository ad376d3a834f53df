// Learning-rate schedules with timm's names (--sched cosine | step | plateau | constant), on
// optimizer updates: a linear warm-up from warmup_lr to the peak, then the schedule.
//   cosine:   min_lr + (peak - min_lr) / 2 * (1 + cos(pi * t)), t = (u - W) / (T - W) in [0, 1]
//   step:     max(min_lr, peak * decay_rate ^ floor(epoch / decay_epochs))   (timm StepLRScheduler)
//   plateau:  max(min_lr, peak * decay_rate ^ k), k = the reductions so far (plateau_reductions)
//   constant: peak
// With warmup_lr = min_lr = 0 the cosine schedule is the project's original warm-up + cosine
// (nn::warmup_cosine_lr), bit for bit.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace peft::nn {

struct LrSchedule {
  std::string kind = "cosine";
  double peak = 1e-3;
  double min_lr = 0;
  double warmup_lr = 0;
  int64_t warmup_updates = 0;
  int64_t total_updates = 1;
  int64_t updates_per_epoch = 1;
  double decay_epochs = 90;  // step: epochs between decays (timm's default)
  double decay_rate = 0.1;   // step and plateau: the factor of each decay
  int64_t patience_epochs = 10;  // plateau: epochs without improvement before a reduction
};

// Throws ValueError naming the option (--sched, --min-lr, ...) for a bad schedule.
void check_lr_schedule(const LrSchedule& s);

// The learning rate of update u (0-based); reductions: plateau's k (ignored by the others).
double scheduled_lr(const LrSchedule& s, int64_t u, int64_t reductions = 0);

// torch's ReduceLROnPlateau in timm's use (mode max, relative threshold 1e-4, no cooldown) over
// the validation top-1 of the epochs so far: a reduction each time more than `patience` epochs
// in a row have not beaten the best by the threshold.
int64_t plateau_reductions(const std::vector<double>& val_top1, int64_t patience);

}  // namespace peft::nn
