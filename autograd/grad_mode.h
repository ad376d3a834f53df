// Grad mode: a thread-local switch that decides whether ops record nodes (like torch.no_grad).
#pragma once

namespace peft {

bool grad_enabled();
void set_grad_enabled(bool on);

// RAII: no op records a node while it lives (optimizer steps, evaluation, initialisation).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace peft
