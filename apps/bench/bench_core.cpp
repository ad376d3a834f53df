// Core micro-benchmark (float32): linear, layer_norm, softmax and attention fwd+bwd, and raw sgemm, at ViT shapes.
// The `gemm/...` benchmarks time blas::gemm on every linear layer's three GEMMs at 1 and 2
// threads: build once per BLAS backend (-DPEFT_BLAS=openblas|blis) and compare
// (`bench_core --benchmark_filter=^gemm/`; docs/performance.md, "BLAS backends").
//
// Two configurations, chosen by the benchmark argument:
//   0: ViT-Ti/CIFAR-like [B=32, T=65, D=192], 3 heads of 64
//   1: ViT-B/16 at 224   [B=8, T=197, D=768], 12 heads of 64
// GEMM-bound benchmarks report GFLOP/s (2*M*N*K per GEMM); layer_norm and softmax are
// memory-bound, so they report GB/s of tensor traffic instead (reads + writes of x, y, dy, dx).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/blas.h"
#include "core/random.h"
#include "core/threads.h"

using namespace peft;

namespace {

struct Config {
  const char* name;
  int64_t B, T, D, H;
  int64_t hd() const { return D / H; }
  int64_t rows() const { return B * T; }
};

const Config kConfigs[] = {{"vit_ti B32xT65xD192 H3", 32, 65, 192, 3}, {"vit_b B8xT197xD768 H12", 8, 197, 768, 12}};

const Config& config(const benchmark::State& state) { return kConfigs[state.range(0)]; }

Tensor leaf(const Shape& s, uint64_t seed, bool grad = true) {
  Generator g(seed);
  Tensor t = randn(s, g, DType::f32);
  if (grad) t.requires_grad_();
  return t;
}

void set_gflops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iter * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
void set_gbytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes_per_iter * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// One training step of an op: forward, backward with a given upstream gradient, drop the grads.
template <class F>
void fwd_bwd(F forward, const Tensor& gy, std::vector<Tensor> params) {
  Tensor y = forward();
  backward(y, gy);
  for (Tensor& p : params) p.zero_grad(true);
}

// ---------------------------------------------------------------- linear: the MLP fc1 [D -> 4D]

void BM_LinearFwdBwd(benchmark::State& state) {
  const Config& c = config(state);
  const int64_t R = c.rows(), in = c.D, out = 4 * c.D;
  Tensor x = leaf({c.B, c.T, in}, 1), w = leaf({out, in}, 2), b = leaf({out}, 3);
  Tensor gy = leaf({c.B, c.T, out}, 4, false);
  for (auto _ : state) fwd_bwd([&] { return linear(x, w, b); }, gy, {x, w, b});
  set_gflops(state, 3.0 * 2.0 * R * out * in);  // y = x W^T, dX = dY W, dW = dY^T X
  state.SetLabel(c.name);
}

// ---------------------------------------------------------------- layer_norm over D

void BM_LayerNormFwdBwd(benchmark::State& state) {
  const Config& c = config(state);
  Tensor x = leaf({c.B, c.T, c.D}, 1), w = leaf({c.D}, 2), b = leaf({c.D}, 3);
  Tensor gy = leaf({c.B, c.T, c.D}, 4, false);
  for (auto _ : state) fwd_bwd([&] { return layer_norm(x, w, b); }, gy, {x, w, b});
  set_gbytes(state, 4.0 * 2.0 * x.nbytes());  // forward reads x writes y; backward reads x, dy, writes dx
  state.SetLabel(c.name);
}

// ---------------------------------------------------------------- softmax over attention scores

void BM_SoftmaxFwdBwd(benchmark::State& state) {
  const Config& c = config(state);
  Tensor s = leaf({c.B, c.H, c.T, c.T}, 1);
  Tensor gy = leaf({c.B, c.H, c.T, c.T}, 2, false);
  for (auto _ : state) fwd_bwd([&] { return softmax(s, -1); }, gy, {s});
  set_gbytes(state, 2.0 * 2.0 * s.nbytes());  // forward: x -> p; backward: p, dy -> dx
  state.SetLabel(c.name);
}

// ---------------------------------------------------------------- fused attention

void BM_AttentionFwdBwd(benchmark::State& state) {
  const Config& c = config(state);
  const Shape s{c.B, c.H, c.T, c.hd()};
  Tensor q = leaf(s, 1), k = leaf(s, 2), v = leaf(s, 3), gy = leaf(s, 4, false);
  for (auto _ : state) fwd_bwd([&] { return scaled_dot_product_attention(q, k, v); }, gy, {q, k, v});
  // forward: S = Q K^T, O = P V; backward: dV, dP, dQ, dK. Six [T, T, hd] GEMMs per head.
  set_gflops(state, 6.0 * 2.0 * c.B * c.H * c.T * c.T * c.hd());
  state.SetLabel(c.name);
}

void BM_AttentionFwd(benchmark::State& state) {
  const Config& c = config(state);
  const Shape s{c.B, c.H, c.T, c.hd()};
  Tensor q = leaf(s, 1, false), k = leaf(s, 2, false), v = leaf(s, 3, false);
  for (auto _ : state) benchmark::DoNotOptimize(scaled_dot_product_attention(q, k, v).impl());
  set_gflops(state, 2.0 * 2.0 * c.B * c.H * c.T * c.T * c.hd());
  state.SetLabel(c.name);
}

// ---------------------------------------------------------------- raw sgemm on the same shapes

// Which GEMM of the step: the three of linear fc1, and attention's per-head Q K^T over all heads.
enum GemmKind { kLinearFwd, kLinearDx, kLinearDw, kAttnScores };
const char* kGemmNames[] = {"linear y=xW^T (NT)", "linear dX=dYW (NN)", "linear dW=dY^TX (TN)", "attn S=QK^T per head (NT)"};

struct GemmShape {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, batch;
};

// C (already computed by blas::gemm from pa, pb) against the plain triple loop on its first 3
// rows: same pointers and leading dims, only M shrinks, so the check stays cheap at ViT-B sizes.
// The first matrix of a batched shape only.
bool matches_reference(const GemmShape& g, const float* pa, const float* pb, const float* pc) {
  const int64_t m = std::min<int64_t>(3, g.M);
  std::vector<float> ref(m * g.N);
  blas::gemm_reference(g.ta, g.tb, m, g.N, g.K, 1.0f, pa, g.lda, pb, g.ldb, 0.0f, ref.data(), g.N);
  for (int64_t i = 0; i < m * g.N; ++i)
    if (std::fabs(ref[i] - pc[i]) > 1e-3f * (1.0f + std::fabs(ref[i]))) return false;
  return true;
}

GemmShape gemm_shape(const Config& c, int kind) {
  const int64_t R = c.rows(), in = c.D, out = 4 * c.D;
  switch (kind) {
    case kLinearFwd: return {false, true, R, out, in, in, in, 1};
    case kLinearDx: return {false, false, R, in, out, out, in, 1};
    case kLinearDw: return {true, false, out, in, R, out, in, 1};
    default: return {false, true, c.T, c.T, c.hd(), c.hd(), c.hd(), c.B * c.H};
  }
}

void BM_Sgemm(benchmark::State& state) {
  const Config& c = config(state);
  const GemmShape g = gemm_shape(c, static_cast<int>(state.range(1)));
  const int64_t a_elems = g.M * g.K, b_elems = g.K * g.N, c_elems = g.M * g.N;
  Tensor A = leaf({g.batch, a_elems}, 1, false), B = leaf({g.batch, b_elems}, 2, false);
  Tensor C = zeros({g.batch, c_elems});
  const float* pa = A.data<float>();
  const float* pb = B.data<float>();
  float* pc = C.data<float>();
  auto run = [&] {
    if (g.batch == 1) {
      blas::gemm(g.ta, g.tb, g.M, g.N, g.K, 1.0f, pa, g.lda, pb, g.ldb, 0.0f, pc, g.N);
      return;
    }
    // one small GEMM per head across the OpenMP team, as the attention op runs them
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < g.batch; ++h)
      blas::gemm(g.ta, g.tb, g.M, g.N, g.K, 1.0f, pa + h * a_elems, g.lda, pb + h * b_elems, g.ldb, 0.0f,
                 pc + h * c_elems, g.N);
  };
  // Validate against the plain triple loop before timing.
  run();
  if (!matches_reference(g, pa, pb, pc)) {
    state.SkipWithError("blas::gemm disagrees with gemm_reference");
    return;
  }
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * g.M * g.N * g.K * g.batch);
  state.SetLabel(std::string(c.name) + " " + kGemmNames[state.range(1)]);
}

// ---------------------------------------------------------------- every linear GEMM, per backend

// The three GEMMs of a linear layer y[R,N] = x[R,K] W[N,K]^T, with the flags and leading
// dimensions the autograd ops pass:
//   fwd NT: y  = x  W^T   (M=R, N=N, K=K)
//   dX  NN: dX = dY W     (M=R, N=K, K=N)
//   dW  TN: dW = dY^T x   (M=N, N=K, K=R)
struct LinearGemm {
  const char* config;  // "tiny" / "base", as `peft bench --config`
  const char* layer;   // qkv, proj, fc1, fc2
  int64_t R, N, K;     // rows (batch x tokens), out features, in features
};

const LinearGemm kLinearGemms[] = {
    // tiny: B*T = 32*65 rows, D = 192, MLP 768
    {"tiny", "qkv", 32 * 65, 576, 192},
    {"tiny", "proj", 32 * 65, 192, 192},
    {"tiny", "fc1", 32 * 65, 768, 192},
    {"tiny", "fc2", 32 * 65, 192, 768},
    // base: B*T = 8*197 rows, D = 768, MLP 3072
    {"base", "qkv", 8 * 197, 2304, 768},
    {"base", "proj", 8 * 197, 768, 768},
    {"base", "fc1", 8 * 197, 3072, 768},
    {"base", "fc2", 8 * 197, 768, 3072},
};

enum Direction { kFwdNT, kDxNN, kDwTN };
const char* kDirectionNames[] = {"fwd_NT", "dX_NN", "dW_TN"};

GemmShape linear_gemm_shape(const LinearGemm& l, Direction d) {
  switch (d) {
    case kFwdNT: return {false, true, l.R, l.N, l.K, l.K, l.K, 1};
    case kDxNN: return {false, false, l.R, l.K, l.N, l.N, l.K, 1};
    default: return {true, false, l.N, l.K, l.R, l.N, l.K, 1};
  }
}

// blas::gemm on one shape with `threads` OpenMP threads (our split; the library stays at one
// thread), checked against gemm_reference on the first rows of C before timing.
void BM_LinearGemm(benchmark::State& state, GemmShape g, int threads) {
  const int prev_threads = num_threads();
  set_num_threads(threads);
  Tensor A = leaf({g.M * g.K}, 1, false), B = leaf({g.K * g.N}, 2, false);
  Tensor C = zeros({g.M * g.N});
  const float* pa = A.data<float>();
  const float* pb = B.data<float>();
  float* pc = C.data<float>();
  auto run = [&] { blas::gemm(g.ta, g.tb, g.M, g.N, g.K, 1.0f, pa, g.lda, pb, g.ldb, 0.0f, pc, g.N); };
  run();
  if (!matches_reference(g, pa, pb, pc)) {
    state.SkipWithError("blas::gemm disagrees with gemm_reference");
    set_num_threads(prev_threads);
    return;
  }
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * g.M * g.N * g.K);
  state.SetLabel(blas::backend_name());
  set_num_threads(prev_threads);
}

// Names read gemm/<config>/<layer>/<direction>/<M>x<N>x<K>/threads:<T>, e.g.
// gemm/base/fc1/dW_TN/3072x768x1576/threads:2.
void register_linear_gemms() {
  for (int threads : {1, 2})
    for (const LinearGemm& l : kLinearGemms)
      for (Direction d : {kFwdNT, kDxNN, kDwTN}) {
        const GemmShape g = linear_gemm_shape(l, d);
        const std::string name = std::string("gemm/") + l.config + "/" + l.layer + "/" + kDirectionNames[d] + "/" +
                                 std::to_string(g.M) + "x" + std::to_string(g.N) + "x" + std::to_string(g.K) +
                                 "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), BM_LinearGemm, g, threads)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
}

void configs(benchmark::internal::Benchmark* b) { b->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime(); }
void gemm_configs(benchmark::internal::Benchmark* b) {
  for (int64_t cfg = 0; cfg < 2; ++cfg)
    for (int64_t kind = 0; kind < 4; ++kind) b->Args({cfg, kind});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_LinearFwdBwd)->Apply(configs);
BENCHMARK(BM_LayerNormFwdBwd)->Apply(configs);
BENCHMARK(BM_SoftmaxFwdBwd)->Apply(configs);
BENCHMARK(BM_AttentionFwd)->Apply(configs);
BENCHMARK(BM_AttentionFwdBwd)->Apply(configs);
BENCHMARK(BM_Sgemm)->Apply(gemm_configs);

int main(int argc, char** argv) {
  register_linear_gemms();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("peft threads", thread_policy());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
