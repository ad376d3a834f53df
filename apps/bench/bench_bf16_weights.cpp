// Micro-benchmarks of --precision bf16's weight cache and batched attention (issue 14):
//   bf16_weight/<config>/<layer>/<fwd|dX>/<MxNxK>/<once|per_call>/threads:<T>
//       blas::gemm under bf16 with the weight (B) rounded once (core/bf16_weights.h: the cache
//       lookup included, as linear runs it) against rounding it on every call (before the cache);
//       the activation (A) is rounded per call in both. Both results are compared bit for bit.
//   bf16_attention/<config>/<batched_bf16|per_head>/threads:<T>
//       attention forward + backward (q, k, v trainable) on one block's head views of a fused
//       qkv under --precision bf16: scaled_dot_product_attention_bf16 (all heads in one batched
//       bf16 GEMM per product) against scaled_dot_product_attention (per-head GEMMs, what
//       --precision bf16 runs: float32 below blas's 2^20 bf16 threshold, e.g. tiny's 65 tokens,
//       bf16 with per-call rounding above it, e.g. base's 197).
//
//   build/bench_bf16_weights --benchmark_filter='tiny.*threads:2'
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "autograd/backward.h"
#include "autograd/ops.h"
#include "core/bf16.h"
#include "core/bf16_weights.h"
#include "core/blas.h"
#include "core/random.h"
#include "core/threads.h"

using namespace peft;

namespace {

// Sets precision and threads for one benchmark and restores them after it.
struct Scoped {
  blas::Precision prec = blas::precision();
  int threads = num_threads();
  Scoped(blas::Precision p, int t) {
    blas::set_precision(p);
    set_num_threads(t);
  }
  ~Scoped() {
    blas::set_precision(prec);
    set_num_threads(threads);
    bf16::clear_weight_cache();
  }
};

struct Layer {
  const char* config;
  const char* name;
  int64_t rows, out, in;  // x [rows, in], W [out, in]
};

// The block linears of tiny (batch 32, 65 tokens, dim 192) and base (batch 8, 197 tokens, 768).
const Layer kLayers[] = {
    {"tiny", "qkv", 32 * 65, 576, 192},   {"tiny", "fc1", 32 * 65, 768, 192},   {"tiny", "fc2", 32 * 65, 192, 768},
    {"base", "qkv", 8 * 197, 2304, 768},  {"base", "fc1", 8 * 197, 3072, 768},  {"base", "fc2", 8 * 197, 768, 3072},
};

void BM_WeightGemm(benchmark::State& state, Layer l, bool dx, bool once, int threads) {
  if (!blas::bf16_supported()) {
    state.SkipWithError("no bf16 GEMM in this build");
    return;
  }
  Scoped scope(blas::Precision::bf16, threads);
  Generator g(1);
  Tensor w = randn({l.out, l.in}, g);  // a frozen weight
  // fwd: Y [rows, out] = X [rows, in] W^T (NT); dX: dX [rows, in] = dY [rows, out] W (NN)
  const int64_t M = l.rows, N = dx ? l.in : l.out, K = dx ? l.out : l.in;
  Tensor a = randn({M, K}, g);
  std::vector<float> c(static_cast<size_t>(M * N)), check(c.size());
  auto run = [&](float* out, bool use_cache) {
    bf16::WeightCopy keep = use_cache ? bf16::weight_copy(w) : nullptr;
    blas::gemm(false, !dx, M, N, K, 1.0f, a.data<float>(), K, w.data<float>(), l.in, 0.0f, out, N,
               keep ? keep->data() : nullptr);
  };
  run(check.data(), !once);
  run(c.data(), once);
  if (std::memcmp(c.data(), check.data(), c.size() * sizeof(float)) != 0) {
    state.SkipWithError("the rounded-once weight gives other bits than the per-call rounding");
    return;
  }
  for (auto _ : state) run(c.data(), once);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * M * N * K * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

struct Attn {
  const char* config;
  int64_t B, T, H, hd;
};
const Attn kAttn[] = {{"tiny", 32, 65, 3, 64}, {"base", 8, 197, 12, 64}, {"base384", 2, 577, 12, 64}};

void BM_Attention(benchmark::State& state, Attn a, bool bf16, int threads) {
  if (bf16 && !blas::bf16_supported()) {
    state.SkipWithError("no bf16 GEMM in this build");
    return;
  }
  Scoped scope(blas::Precision::bf16, threads);  // per_head is what --precision bf16 runs
  Generator g(2);
  Tensor qkv = randn({a.B, a.T, 3 * a.H * a.hd}, g).requires_grad_();
  Tensor gout = randn({a.B, a.H, a.T, a.hd}, g);
  for (auto _ : state) {
    Tensor x = permute(reshape(qkv, {a.B, a.T, 3, a.H, a.hd}), {2, 0, 3, 1, 4});
    Tensor q = select(x, 0, 0), k = select(x, 0, 1), v = select(x, 0, 2);
    Tensor out = bf16 ? scaled_dot_product_attention_bf16(q, k, v) : scaled_dot_product_attention(q, k, v);
    backward(out, gout);
    qkv.zero_grad();
  }
  // forward QK^T and PV, backward dV, dP, dQ, dK (+ QK^T again where P is recomputed)
  state.counters["GFLOP/s"] = benchmark::Counter(
      6.0 * 2.0 * a.B * a.H * a.T * a.T * a.hd * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
  for (int threads : {1, 2}) {
    for (const Layer& l : kLayers)
      for (bool dx : {false, true})
        for (bool once : {true, false}) {
          const int64_t M = l.rows, N = dx ? l.in : l.out, K = dx ? l.out : l.in;
          const std::string name = std::string("bf16_weight/") + l.config + "/" + l.name + (dx ? "/dX/" : "/fwd/") +
                                   std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                                   (once ? "/once" : "/per_call") + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), BM_WeightGemm, l, dx, once, threads)
              ->Unit(benchmark::kMicrosecond)
              ->UseRealTime();
        }
    for (const Attn& a : kAttn)
      for (bool bf16 : {true, false})
        benchmark::RegisterBenchmark((std::string("bf16_attention/") + a.config +
                                      (bf16 ? "/batched_bf16" : "/per_head") + "/threads:" + std::to_string(threads))
                                         .c_str(),
                                     BM_Attention, a, bf16, threads)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("gemm backend", blas::backend_name());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
