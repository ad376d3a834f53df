// The one thread policy of the process: OpenMP runs our kernels, OpenBLAS is single-threaded.
#pragma once
#include <cstdint>
#include <string>

namespace peft {

// Sets the number of compute threads for the whole process (0 = number of cores).
// OpenMP teams use n threads; OpenBLAS is pinned to 1 thread and large GEMMs are split across
// the OpenMP team by blas::gemm, so two thread pools never spin on the same cores.
void set_num_threads(int n);
int num_threads();
std::string thread_policy();  // one line, printed by `peft --version`

// Loops over fewer elements than this stay serial: waking a team costs more than it saves.
constexpr int64_t kParallelGrain = 16384;

}  // namespace peft
