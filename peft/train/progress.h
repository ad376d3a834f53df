// What a person watching a run sees: a status line on stderr redrawn in place while an epoch
// runs (only on a terminal), with the ETA of the whole run, and one permanent line per epoch on
// stdout (always, also into a file or a pipe), like timm's train.py log. stdout, not stderr:
// cli.md keeps stderr for the one-line error, and the lines belong in a captured run log.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace peft {

// "m:ss" or "h:mm:ss".
std::string hms(double seconds);

class Progress {
 public:
  // bar: draw the status line (ignored when stderr is not a terminal). total_steps: the batches
  // of the whole run; done_steps: how many of them earlier processes trained (--resume).
  Progress(bool bar, int64_t total_steps, int64_t done_steps);
  // After each batch. ETA: this process's time per batch so far x the batches left in the run.
  // acc NaN: not measured (mixup/cutmix) and not shown.
  void update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double loss, double acc, double images_per_s,
              const char* note = "");
  // One permanent line (the bar, if drawn, is cleared first and redrawn by the next update).
  void line(const std::string& text);
  ~Progress();

 private:
  bool bar_;
  bool drawn_ = false;
  int64_t total_, done_at_start_, done_ = 0;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace peft
