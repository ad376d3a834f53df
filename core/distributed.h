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
  // Ends every rank: prints "peft: error: <where>: <message>" on stderr (one line) and exits with
  // `code` (MPI_Abort under MPI, _exit otherwise). For a failure the other ranks cannot see.
  [[noreturn]] void abort(const std::string& message, int code);
  // MPI_Finalize (when MPI was initialised); a no-op otherwise or when called again.
  void finalize();

 private:
  World();
  ~World();
  [[noreturn]] void timed_out(const char* what) const;
  void allreduce_raw(void* data, size_t n, bool is_double, const char* what);

  int rank_ = 0, size_ = 1;
  bool mpi_ = false;  // MPI_Init was called by us
  bool finalized_ = false;
  double timeout_s_ = 300;
};

// Whether this build can run under MPI (PEFT_HAVE_MPI), for messages and tests.
bool built_with_mpi();
// Whether the environment says mpirun / srun started this process with more than one rank
// (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_SIZE or SLURM_NTASKS with a PMI).
bool launched_by_mpi();
// Parses PEFT_DIST_TIMEOUT; throws ValueError naming it for anything but a positive number.
double timeout_from_env(const char* value);

}  // namespace peft::dist
