// Thread policy: one OpenMP team owns the cores; OpenBLAS never starts threads of its own.
#include "core/threads.h"

#include <fmt/format.h>
#include <omp.h>

#include <thread>

#include "core/blas.h"


namespace peft {

namespace {
int g_threads = 0;

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

// Applies the default policy before main() so library users get it without calling anything.
struct InitThreads {
  InitThreads() { set_num_threads(0); }
} init_threads;
}  // namespace

void set_num_threads(int n) {
  g_threads = n <= 0 ? default_threads() : n;
  omp_set_num_threads(g_threads);
  blas::set_blas_threads(1);
}

int num_threads() { return g_threads; }

std::string thread_policy() {
  // One OpenMP team for the process: our kernels, GEMMs split by blas.cpp (OpenBLAS itself runs
  // one thread per call) and oneDNN's own GEMM partitioning all use it.
  return fmt::format("threads: {} (one OpenMP team of {} for kernels and GEMMs; GEMMs: {})", g_threads, g_threads,
                     blas::backend_name());
}

}  // namespace peft
