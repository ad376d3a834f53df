// The processes of a data-parallel run (issue 18): which one this is, how many there are, and the
// few collective operations the trainer and the sweep need. MPI does the work when the build has
// it (CMake PEFT_MPI, PEFT_HAVE_MPI) and the process was started by mpirun or srun; otherwise the
// world is one process and every collective is the identity, so a plain run behaves as before.
//
// Every collective has a deadline (PEFT_DIST_TIMEOUT seconds, default 300): a rank that died or
// hangs would otherwise keep the others waiting forever. Past it the waiting rank prints one line
// naming itself and the operation, and MPI_Abort ends every rank.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace peft::dist {

class World {
 public:
  // The process's world, set up on the first call (MPI_Init when started under MPI). Call it
  // first from the main thread: MPI is used from that thread only.
  static World& get();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool distributed() const { return size_ > 1; }
  bool is_root() const { return rank_ == 0; }
  // "rank 1 of 4" (for messages).
  std::string where() const;
  // Seconds a collective may wait for the other ranks before the run is aborted.
  double timeout_s() const { return timeout_s_; }
  void set_timeout_s(double s);

  // Element-wise sum over the ranks, in place; `what` names the operation in a timeout message.
  void allreduce_sum(float* data, size_t n, const char* what);
  void allreduce_sum(double* data, size_t n, const char* what);
  // Root's bytes to every rank.
  void broadcast(void* data, size_t bytes, int root, const char* what);
  void barrier(const char* what);
  // Every rank's string at the root, in rank order (the others get an empty vector).
  std::vector<std::string> gather(const std::string& mine, const char* what);
  // The same with a deadline of `timeout_s` instead of timeout_s(): for a wait as long as other
  // ranks' work (a grid's cells, rank 0's pretraining), not as long as a collective.
  void barrier(const char* what, double timeout_s);
  std::vector<std::string> gather(const std::string& mine, const char* what, double timeout_s);
  // Ends every rank: prints "peft: error: <where>: <message>" on stderr (one line) and exits with
  // `code` (MPI_Abort under MPI, _exit otherwise). For a failure the other ranks cannot see.
  [[noreturn]] void abort(const std::string& message, int code);
  // Ends this rank after an error (message = the exception's text) so that an error every rank
  // hits alike (a bad option value, a missing file, a loss that became NaN on the global batch)
  // is printed once, by rank 0, as a single process prints it, while one rank's own error (its
  // shard's unreadable image) is printed by that rank, naming it, and ends every rank at once.
  // The ranks compare their messages at rank 0 (point-to-point on a private communicator, so a
  // rank still waiting in a collective can answer that it did not fail). Returns `code` after
  // MPI_Finalize when every rank failed alike (the caller exits with it); otherwise aborts.
  // A single process prints the line and returns `code`.
  int fail(const std::string& message, int code);
  // MPI_Finalize (when MPI was initialised); a no-op otherwise or when called again.
  void finalize();

 private:
  World();
  ~World();
  [[noreturn]] void timed_out(const char* what, double seconds) const;
  void allreduce_raw(void* data, size_t n, bool is_double, const char* what);
  std::vector<std::string> gather_raw(const std::string& mine, const char* what, double timeout_s);
  void barrier_raw(const char* what, double timeout_s);

  int rank_ = 0, size_ = 1;
  bool mpi_ = false;  // MPI_Init was called by us
  bool finalized_ = false;
  double timeout_s_ = 300;
};

// A grid of independent cells (a sweep's points, the demo's methods) spread over the ranks:
// cell i runs on rank i % size, each cell in one process, and the root gets every cell's result
// (`run` serializes it) in cell order; the other ranks get an empty vector. With one rank it is
// a plain loop. The gather waits as long as the slowest rank's cells take (`what` names it in
// a timeout message): its deadline is the longer of timeout_s() and a day.
std::vector<std::string> spread_cells(World& world, size_t cells, const std::function<std::string(size_t)>& run,
                                      const char* what);

// Whether this build can run under MPI (PEFT_HAVE_MPI), for messages and tests.
bool built_with_mpi();
// Whether the environment says mpirun / srun started this process with more than one rank
// (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_SIZE or SLURM_NTASKS with a PMI).
bool launched_by_mpi();
// Parses PEFT_DIST_TIMEOUT; throws ValueError naming it for anything but a positive number.
double timeout_from_env(const char* value);

}  // namespace peft::dist
