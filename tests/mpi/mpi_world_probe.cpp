// Run by `mpirun -np 2` from CTest (CMakeLists.txt, mpi_world_*): checks dist::World's
// collectives across real ranks, and that a rank which stops answering ends the run with one
// line from the waiting rank instead of a hang.
//   mpi_world_probe collectives   every collective; exit 0 when all agree, 1 with a line otherwise
//   mpi_world_probe timeout       rank 1 never joins; rank 0 must abort after PEFT_DIST_TIMEOUT
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/distributed.h"

namespace {

int fail(const peft::dist::World& w, const std::string& what) {
  std::fprintf(stderr, "mpi_world_probe: %s: %s\n", w.where().c_str(), what.c_str());
  return 1;
}

int collectives(peft::dist::World& w) {
  if (w.size() != 2) return fail(w, "expected 2 ranks (started by mpirun -np 2?), got " + std::to_string(w.size()));
  // Sums: rank r contributes r + 1 (and a large buffer, so a split or offset bug shows).
  std::vector<float> f(1 << 20, static_cast<float>(w.rank() + 1));
  w.allreduce_sum(f.data(), f.size(), "probe allreduce");
  for (float x : f)
    if (x != 3.0f) return fail(w, "float allreduce gave " + std::to_string(x));
  double d[2] = {0.5 * w.rank(), 1.0};
  w.allreduce_sum(d, 2, "probe allreduce");
  if (d[0] != 0.5 || d[1] != 2.0) return fail(w, "double allreduce");
  int64_t v = w.rank() == 1 ? 42 : -1;
  w.broadcast(&v, sizeof v, 1, "probe broadcast");
  if (v != 42) return fail(w, "broadcast from rank 1");
  w.barrier("probe barrier");
  auto all = w.gather(w.rank() == 0 ? std::string("zero") : std::string(300, 'x'), "probe gather");
  if (w.is_root() && (all.size() != 2 || all[0] != "zero" || all[1] != std::string(300, 'x')))
    return fail(w, "gather");
  if (!w.is_root() && !all.empty()) return fail(w, "gather: a non-root rank got the strings");
  // A grid of 5 cells: rank 0 runs 0, 2, 4 and rank 1 runs 1, 3; the root gets all in cell order.
  std::vector<size_t> ran;
  auto cells = peft::dist::spread_cells(
      w, 5, [&](size_t i) { ran.push_back(i); return std::string(i, static_cast<char>('a' + i)) + ":" + std::to_string(i); },
      "probe grid");
  if (ran != (w.rank() == 0 ? std::vector<size_t>{0, 2, 4} : std::vector<size_t>{1, 3})) return fail(w, "grid: wrong cells");
  if (w.is_root()) {
    if (cells.size() != 5) return fail(w, "grid: expected 5 results");
    for (size_t i = 0; i < 5; ++i)
      if (cells[i] != std::string(i, static_cast<char>('a' + i)) + ":" + std::to_string(i)) return fail(w, "grid: cell " + std::to_string(i));
  } else if (!cells.empty()) {
    return fail(w, "grid: a non-root rank got the results");
  }
  w.barrier("probe barrier with its own deadline", 600);
  if (w.is_root()) std::printf("mpi_world_probe: collectives ok on %d ranks\n", w.size());
  return 0;
}

int timeout(peft::dist::World& w) {
  if (w.rank() == 1) {  // stuck (e.g. in its data) far longer than the timeout; killed by the abort
    std::this_thread::sleep_for(std::chrono::seconds(50));
    return 0;
  }
  float x = 1;
  w.allreduce_sum(&x, 1, "probe allreduce");  // never completes: World aborts the run
  return fail(w, "the allreduce returned without rank 1");
}

}  // namespace

int main(int argc, char** argv) {
  auto& w = peft::dist::World::get();
  const std::string mode = argc > 1 ? argv[1] : "";
  int rc = mode == "collectives" ? collectives(w) : mode == "timeout" ? timeout(w) : fail(w, "unknown mode " + mode);
  w.finalize();
  return rc;
}
