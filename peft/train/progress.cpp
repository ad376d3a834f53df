// Progress bar and per-epoch lines on stderr.
#include "peft/train/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace peft {

std::string hms(double s) {
  int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}

Progress::Progress(bool bar, int64_t total_steps, int64_t done_steps)
    : bar_(bar && isatty(2)), total_(total_steps), done_at_start_(done_steps) {}

void Progress::update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double loss, double acc,
                      double images_per_s, const char* note) {
  ++done_;
  if (!bar_) return;
  const int width = 24;
  const int filled = steps > 0 ? static_cast<int>(width * step / steps) : width;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const int64_t left = std::max<int64_t>(0, total_ - done_at_start_ - done_);
  const double eta = elapsed / static_cast<double>(done_) * static_cast<double>(left);
  // acc NaN: not measured (mixup/cutmix), so not shown
  const std::string shown = std::isnan(acc) ? "" : fmt::format(" acc {:5.1f}%", acc);
  fmt::print(stderr, "\r\033[Kepoch {}/{} [{}{}] {}/{} ETA {} loss {:.4f}{} {:.0f} img/s {}", epoch, epochs,
             std::string(filled, '#'), std::string(width - filled, '.'), step, steps, hms(eta), loss, shown,
             images_per_s, note);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::line(const std::string& text) {
  if (drawn_) {
    fmt::print(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  fmt::print("{}\n", text);
  std::fflush(stdout);
  drawn_ = false;
}

Progress::~Progress() {
  if (drawn_) fmt::print(stderr, "\n");
}

}  // namespace peft
