// probe_gemm: blas::gemm timed on the block linears' shapes (see gemm_probe.h).
#include "peft/gemm_probe.h"

#include <algorithm>
#include <chrono>
#include <functional>

#include "core/blas.h"

namespace peft {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);  // Python's statistics.median
}

}  // namespace

std::vector<GemmRate> probe_gemm(const nn::ViTConfig& c, int64_t rows, bool data_grad, bool weight_grad,
                                 Generator& gen) {
  const int64_t D = c.dim, H = c.mlp_hidden();
  struct Layer { const char* name; int64_t N, K; };
  const Layer layers[] = {{"attn.qkv", 3 * D, D}, {"attn.proj", D, D}, {"mlp.fc1", H, D}, {"mlp.fc2", D, H}};
  std::vector<GemmRate> out;
  for (const auto& l : layers) {
    // Buffers big enough for every GEMM of this layer: X/dX [rows, K], W/dW [N, K], Y/dY [rows, N].
    std::vector<float> X(static_cast<size_t>(rows * l.K)), W(static_cast<size_t>(l.N * l.K)),
        Y(static_cast<size_t>(rows * l.N));
    for (auto& v : X) v = static_cast<float>(gen.uniform() - 0.5);
    for (auto& v : W) v = static_cast<float>(gen.uniform() - 0.5);
    for (auto& v : Y) v = static_cast<float>(gen.uniform() - 0.5);
    struct Gemm { const char* kind; bool on; std::function<void()> call; int64_t M, N, K; };
    std::vector<float> Xout(X.size()), Wout(W.size());
    const Gemm gemms[] = {
        {"", true,
         [&] { blas::gemm(false, true, rows, l.N, l.K, 1.0f, X.data(), l.K, W.data(), l.K, 0.0f, Y.data(), l.N); },
         rows, l.N, l.K},
        {" dX", data_grad,
         [&] { blas::gemm(false, false, rows, l.K, l.N, 1.0f, Y.data(), l.N, W.data(), l.K, 0.0f, Xout.data(), l.K); },
         rows, l.K, l.N},
        {" dW", weight_grad,
         [&] { blas::gemm(true, false, l.N, l.K, rows, 1.0f, Y.data(), l.N, X.data(), l.K, 0.0f, Wout.data(), l.K); },
         l.N, l.K, rows}};
    for (const auto& g : gemms) {
      if (!g.on) continue;
      auto t0 = Clock::now();
      g.call();  // warm-up: pages in the buffers, wakes the threads
      const double first = std::max(seconds_between(t0, Clock::now()), 1e-6);
      const int reps = static_cast<int>(std::clamp(0.2 / first, 3.0, 50.0));
      std::vector<double> times;
      for (int i = 0; i < reps; ++i) {
        auto a = Clock::now();
        g.call();
        times.push_back(seconds_between(a, Clock::now()));
      }
      const double med = median(times);
      const double flops = 2.0 * static_cast<double>(g.M) * static_cast<double>(g.N) * static_cast<double>(g.K);
      out.push_back({std::string(l.name) + g.kind, g.M, g.N, g.K, flops / med / 1e9, med});
    }
  }
  return out;
}

double flop_weighted_gflops(const std::vector<GemmRate>& rates) {
  double fl = 0, sec = 0;
  for (const auto& r : rates) {
    fl += r.gflops * r.seconds;
    sec += r.seconds;
  }
  return sec > 0 ? fl / sec : 0.0;
}

}  // namespace peft
