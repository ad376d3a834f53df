// Micro-benchmarks of the kernels issue 14 added or tuned, at ViT-tiny and ViT-base shapes:
//   gemm_prec/<config>/<layer>/<dir>/<MxNxK>/<f32|bf16>/threads:<T>
//       blas::gemm of every linear GEMM (forward NT, data-gradient NN, weight-gradient TN) at
//       float32 and at --precision bf16 (rounding of both inputs included, as the step runs it);
//   attn_heads/<config>/<QK|AV>/<f32|bf16>
//       attention's per-head GEMMs, one per head across the OpenMP team, as the attention op runs them;
//   to_bf16/<reference|avx2|avx512>/<n>
//       float32 -> bfloat16 rounding (core/bf16.h), every path this CPU has, GB/s of reads + writes;
//   fused/<gelu_linear|gelu|layer_norm|softmax>/<config>
//       the fused and elementwise kernels on the step's shapes (gelu_linear: the fused
//       GELU + linear op forward and backward, against gelu then linear);
//   fma_peak/<AVX2|AVX-512>/threads:<T>
//       the register-only FMA loop peft bench reports the step's share of (core/cpu_peak.h).
// Each GEMM is checked against blas::gemm_reference before it is timed (bf16: on the rounded
// inputs, with a tolerance for the accumulation order).
//
//   build/bench_kernels --benchmark_filter='gemm_prec/tiny/.*/threads:2'
//   build/bench_kernels --benchmark_filter='to_bf16|fused'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/backward.h"
#include "autograd/ops.h"
#include "autograd/ops/gelu_linear.h"
#include "core/bf16.h"
#include "core/blas.h"
#include "core/cpu_peak.h"
#include "core/kernels/gelu.h"
#include "core/kernels/layer_norm.h"
#include "core/kernels/softmax.h"
#include "core/random.h"
#include "core/threads.h"

using namespace peft;

namespace {

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(g.normal());
  return v;
}

void set_gflops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iter * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
void set_gbytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes_per_iter * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// Restores the process-wide precision and thread count a benchmark changed.
struct Scoped {
  blas::Precision prec = blas::precision();
  int threads = num_threads();
  ~Scoped() {
    blas::set_precision(prec);
    set_num_threads(threads);
  }
};

struct Gemm {
  bool ta, tb;
  int64_t M, N, K;
  int64_t lda() const { return ta ? M : K; }
  int64_t ldb() const { return tb ? K : N; }
};

// Max |C - reference| relative to max |reference|; the reference runs on the inputs as the GEMM
// sees them (bf16: rounded), so only the accumulation order differs.
double rel_error(const Gemm& g, const std::vector<float>& A, const std::vector<float>& B, const std::vector<float>& C,
                 bool bf16) {
  std::vector<float> Ar = A, Br = B;
  if (bf16)
    for (auto* v : {&Ar, &Br})
      for (auto& x : *v) x = bf16::to_float(bf16::round_bits(x));
  const int64_t rows = std::min<int64_t>(g.M, 8);  // the first rows are enough to catch a layout mix-up
  std::vector<float> R(static_cast<size_t>(rows * g.N));
  blas::gemm_reference(g.ta, g.tb, rows, g.N, g.K, 1.0f, Ar.data(), g.lda(), Br.data(), g.ldb(), 0.0f, R.data(), g.N);
  double err = 0, mx = 1e-30;
  for (int64_t i = 0; i < rows * g.N; ++i) {
    err = std::max(err, static_cast<double>(std::fabs(C[static_cast<size_t>(i)] - R[static_cast<size_t>(i)])));
    mx = std::max(mx, static_cast<double>(std::fabs(R[static_cast<size_t>(i)])));
  }
  return err / mx;
}

void BM_GemmPrecision(benchmark::State& state, Gemm g, bool bf16, int threads) {
  Scoped restore;
  if (bf16 && !blas::bf16_supported()) {
    state.SkipWithError("this build's GEMM backend has no bf16");
    return;
  }
  set_num_threads(threads);
  blas::set_precision(bf16 ? blas::Precision::bf16 : blas::Precision::f32);
  const std::vector<float> A = random_floats(g.M * g.K, 1), B = random_floats(g.K * g.N, 2);
  std::vector<float> C(static_cast<size_t>(g.M * g.N));
  auto run = [&] {
    blas::gemm(g.ta, g.tb, g.M, g.N, g.K, 1.0f, A.data(), g.lda(), B.data(), g.ldb(), 0.0f, C.data(), g.N);
  };
  run();
  if (rel_error(g, A, B, C, bf16) > 1e-4) {
    state.SkipWithError("blas::gemm disagrees with gemm_reference");
    return;
  }
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * static_cast<double>(g.M * g.N * g.K));
  state.SetLabel(blas::backend_name());
}

struct LinearShape {
  const char* config;
  const char* layer;
  int64_t R, N, K;  // rows (batch x tokens), out features, in features
};
const LinearShape kLinear[] = {
    {"tiny", "qkv", 32 * 65, 576, 192},   {"tiny", "proj", 32 * 65, 192, 192},  {"tiny", "fc1", 32 * 65, 768, 192},
    {"tiny", "fc2", 32 * 65, 192, 768},   {"base", "qkv", 8 * 197, 2304, 768},  {"base", "proj", 8 * 197, 768, 768},
    {"base", "fc1", 8 * 197, 3072, 768},  {"base", "fc2", 8 * 197, 768, 3072},
};

void register_gemms() {
  for (int threads : {1, 2})
    for (const LinearShape& l : kLinear)
      for (int d = 0; d < 3; ++d) {
        const Gemm g = d == 0 ? Gemm{false, true, l.R, l.N, l.K}
                       : d == 1 ? Gemm{false, false, l.R, l.K, l.N}
                                : Gemm{true, false, l.N, l.K, l.R};
        const char* dir = d == 0 ? "fwd_NT" : d == 1 ? "dX_NN" : "dW_TN";
        for (bool bf16 : {false, true}) {
          const std::string name = std::string("gemm_prec/") + l.config + "/" + l.layer + "/" + dir + "/" +
                                   std::to_string(g.M) + "x" + std::to_string(g.N) + "x" + std::to_string(g.K) + "/" +
                                   (bf16 ? "bf16" : "f32") + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), BM_GemmPrecision, g, bf16, threads)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
      }
}

// ---------------------------------------------------------------- attention's per-head GEMMs

struct AttnShape {
  const char* config;
  int64_t B, T, H, hd;
};
const AttnShape kAttn[] = {{"tiny", 32, 65, 3, 64}, {"base", 8, 197, 12, 64}};

// QK: S[T,T] = Q[T,hd] K[T,hd]^T; AV: O[T,hd] = P[T,T] V[T,hd]; one per (image, head), split
// across the team as the attention op splits them (blas::gemm runs single-threaded inside).
void BM_AttnHeads(benchmark::State& state, AttnShape a, bool qk, bool bf16) {
  Scoped restore;
  if (bf16 && !blas::bf16_supported()) {
    state.SkipWithError("this build's GEMM backend has no bf16");
    return;
  }
  blas::set_precision(bf16 ? blas::Precision::bf16 : blas::Precision::f32);
  const int64_t heads = a.B * a.H;
  const Gemm g = qk ? Gemm{false, true, a.T, a.T, a.hd} : Gemm{false, false, a.T, a.hd, a.T};
  const std::vector<float> A = random_floats(heads * g.M * g.K, 1), B = random_floats(heads * g.K * g.N, 2);
  std::vector<float> C(static_cast<size_t>(heads * g.M * g.N));
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < heads; ++h)
      blas::gemm(g.ta, g.tb, g.M, g.N, g.K, 1.0f, A.data() + h * g.M * g.K, g.lda(), B.data() + h * g.K * g.N, g.ldb(),
                 0.0f, C.data() + h * g.M * g.N, g.N);
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * static_cast<double>(heads * g.M * g.N * g.K));
}

void register_attention() {
  for (const AttnShape& a : kAttn)
    for (bool qk : {true, false})
      for (bool bf16 : {false, true}) {
        const std::string name =
            std::string("attn_heads/") + a.config + "/" + (qk ? "QK" : "AV") + "/" + (bf16 ? "bf16" : "f32");
        benchmark::RegisterBenchmark(name.c_str(), BM_AttnHeads, a, qk, bf16)->Unit(benchmark::kMicrosecond)->UseRealTime();
      }
}

// ---------------------------------------------------------------- float32 -> bfloat16

void BM_ToBf16(benchmark::State& state, int path) {
  const int64_t n = state.range(0);
  const std::vector<float> src = random_floats(n, 3);
  std::vector<uint16_t> dst(static_cast<size_t>(n));
  if (path >= 0 && !bf16::path_supported(static_cast<bf16::Path>(path))) {
    state.SkipWithError("not on this CPU");
    return;
  }
  for (auto _ : state) {
    if (path < 0)
      bf16::to_bf16_reference(src.data(), n, dst.data());
    else
      bf16::to_bf16(static_cast<bf16::Path>(path), src.data(), n, dst.data());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_gbytes(state, 6.0 * static_cast<double>(n));
}

// ---------------------------------------------------------------- fused / elementwise kernels

struct Act {
  const char* config;
  int64_t R, D;  // rows (batch x tokens), model width
};
const Act kAct[] = {{"tiny", 32 * 65, 192}, {"base", 8 * 197, 768}};

// The MLP's second half, forward + backward: the fused op against gelu then linear.
void BM_GeluLinear(benchmark::State& state, Act a, bool fused) {
  const int64_t hidden = 4 * a.D;
  Generator g(5);
  Tensor h = randn({a.R, hidden}, g, DType::f32).requires_grad_();
  Tensor w = randn({a.D, hidden}, g, DType::f32, 0.0, 0.02).requires_grad_();
  Tensor b = zeros({a.D}).requires_grad_();
  Tensor gy = randn({a.R, a.D}, g, DType::f32);
  for (auto _ : state) {
    Tensor y = fused ? gelu_linear(h, w, b) : linear(gelu(h), w, b);
    backward(y, gy);
    for (Tensor* t : {&h, &w, &b}) t->zero_grad(true);
  }
  // forward R*hidden*D MACs, backward twice that
  set_gflops(state, 6.0 * static_cast<double>(a.R * hidden * a.D));
}

void BM_Gelu(benchmark::State& state, Act a) {
  const int64_t n = a.R * 4 * a.D;
  const std::vector<float> x = random_floats(n, 6), gy = random_floats(n, 7);
  std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
  for (auto _ : state) {
    kernels::gelu_forward(x.data(), y.data(), n);
    kernels::gelu_backward(gy.data(), x.data(), dx.data(), n);
    benchmark::ClobberMemory();
  }
  set_gbytes(state, 4.0 * 5.0 * static_cast<double>(n));  // x, y; g, x, dx
}

void BM_LayerNorm(benchmark::State& state, Act a) {
  const int64_t n = a.R * a.D;
  const std::vector<float> x = random_floats(n, 8), gy = random_floats(n, 9), w = random_floats(a.D, 10),
                           b = random_floats(a.D, 11);
  std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n)), dw(static_cast<size_t>(a.D)),
      db(static_cast<size_t>(a.D));
  std::vector<double> mean(static_cast<size_t>(a.R)), rstd(static_cast<size_t>(a.R));
  for (auto _ : state) {
    kernels::layer_norm_forward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), a.R, a.D, 1e-6);
    kernels::layer_norm_backward(gy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(), dw.data(),
                                 db.data(), a.R, a.D);
    benchmark::ClobberMemory();
  }
  set_gbytes(state, 4.0 * 5.0 * static_cast<double>(n));  // x, y; g, x, dx
}

void BM_Softmax(benchmark::State& state, AttnShape a) {
  const int64_t rows = a.B * a.H * a.T, n = rows * a.T;
  const std::vector<float> x = random_floats(n, 12), gy = random_floats(n, 13);
  std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
  for (auto _ : state) {
    kernels::softmax_forward(x.data(), y.data(), rows, a.T, false);
    kernels::softmax_backward(gy.data(), y.data(), dx.data(), rows, a.T, false);
    benchmark::ClobberMemory();
  }
  set_gbytes(state, 4.0 * 5.0 * static_cast<double>(n));  // x, y; g, y, dx
}

void register_fused() {
  for (const Act& a : kAct) {
    for (bool fused : {true, false})
      benchmark::RegisterBenchmark((std::string("fused/gelu_linear/") + a.config + (fused ? "/fused" : "/unfused")).c_str(),
                                   BM_GeluLinear, a, fused)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    benchmark::RegisterBenchmark((std::string("fused/gelu/") + a.config).c_str(), BM_Gelu, a)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((std::string("fused/layer_norm/") + a.config).c_str(), BM_LayerNorm, a)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  for (const AttnShape& a : kAttn)
    benchmark::RegisterBenchmark((std::string("fused/softmax/") + a.config).c_str(), BM_Softmax, a)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
}

// ---------------------------------------------------------------- FMA peak

void BM_FmaPeak(benchmark::State& state, cpu::Isa isa, int threads) {
  if (!cpu::isa_supported(isa)) {
    state.SkipWithError("not on this CPU");
    return;
  }
  double g = 0;
  for (auto _ : state) g = cpu::fma_peak_gflops(isa, threads, 0.05);
  state.counters["GFLOP/s"] = g;
}

}  // namespace

int main(int argc, char** argv) {
  register_gemms();
  register_attention();
  for (int path : {-1, 0, 1, 2}) {
    const std::string name = std::string("to_bf16/") +
                             (path < 0 ? "reference" : bf16::path_name(static_cast<bf16::Path>(path)));
    benchmark::RegisterBenchmark(name.c_str(), BM_ToBf16, path)->Arg(32 * 65 * 768)->Arg(8 * 197 * 3072);
  }
  register_fused();
  for (int threads : {1, 2})
    for (cpu::Isa isa : {cpu::Isa::avx2, cpu::Isa::avx512})
      benchmark::RegisterBenchmark(
          (std::string("fma_peak/") + cpu::isa_name(isa) + "/threads:" + std::to_string(threads)).c_str(), BM_FmaPeak,
          isa, threads)
          ->Iterations(3)
          ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("peft threads", thread_policy());
  benchmark::AddCustomContext("gemm backend", blas::backend_name());
  benchmark::AddCustomContext("to_bf16 path", bf16::path_name(bf16::best_path()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
