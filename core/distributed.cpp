// World over MPI, or a single process. Collectives are the non-blocking MPI calls polled against
// a deadline: a blocking MPI_Allreduce has no timeout, and a rank that exited or is stuck in
// its data would leave the others waiting with no message at all.
#include "core/distributed.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"

#ifdef PEFT_HAVE_MPI
#include <mpi.h>
#endif

namespace peft::dist {

namespace {

// The world size the launcher announces, 0 when it announces none.
long env_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* s = std::getenv(v); s && *s) return std::strtol(s, nullptr, 10);
  return 0;
}

void print_line(const std::string& where, const std::string& message) {
  std::fprintf(stderr, "peft: error: %s: %s\n", where.c_str(), message.c_str());
  std::fflush(stderr);
}

#ifdef PEFT_HAVE_MPI
// Waits for a request until the deadline: busy polling for the first millisecond (a step's
// allreduce on one machine takes microseconds), then polling with short sleeps so that a rank
// waiting for a slow one leaves the cores to it.
bool wait_until(MPI_Request& req, double timeout_s) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::duration<double>(timeout_s);
  int done = 0;
  while (true) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) return true;
    const auto now = Clock::now();
    if (now > deadline) return false;
    if (now - t0 > std::chrono::milliseconds(1)) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}
#endif

}  // namespace

double timeout_from_env(const char* value) {
  if (!value || !*value) return 300;
  char* end = nullptr;
  const double s = std::strtod(value, &end);
  if (end == value || *end != '\0' || !std::isfinite(s) || s <= 0)
    throw ValueError(fmt::format("PEFT_DIST_TIMEOUT: must be a positive number of seconds (got '{}')", value));
  return s;
}

bool built_with_mpi() {
#ifdef PEFT_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool launched_by_mpi() {
  const long n = env_size();
  if (n > 1) return true;
  // PMIx (srun --mpi=pmix) announces the rank but not always the size: MPI_Init tells.
  return n == 0 && std::getenv("PMIX_RANK") != nullptr;
}

World& World::get() {
  static World w;
  return w;
}

World::World() {
  timeout_s_ = timeout_from_env(std::getenv("PEFT_DIST_TIMEOUT"));
#ifdef PEFT_HAVE_MPI
  if (!launched_by_mpi()) return;
  int provided = 0;
  // Only the main thread calls MPI; OpenMP threads and the loader's prefetch thread never do.
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  mpi_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
#endif
}

World::~World() { finalize(); }

void World::finalize() {
#ifdef PEFT_HAVE_MPI
  if (mpi_ && !finalized_) {
    finalized_ = true;
    MPI_Finalize();
  }
#endif
}

std::string World::where() const { return fmt::format("rank {} of {}", rank_, size_); }

void World::set_timeout_s(double s) {
  if (!std::isfinite(s) || s <= 0) throw ValueError(fmt::format("distributed timeout: must be positive (got {})", s));
  timeout_s_ = s;
}

void World::abort(const std::string& message, int code) {
  print_line(where(), message);
#ifdef PEFT_HAVE_MPI
  if (mpi_ && !finalized_) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::fflush(stdout);
  ::_exit(code);
}

void World::timed_out(const char* what) const {
  print_line(where(), fmt::format("{} did not complete within {:g} s: another rank stopped or hangs "
                                  "(its own message, if any, is above; PEFT_DIST_TIMEOUT sets the limit)",
                                  what, timeout_s_));
#ifdef PEFT_HAVE_MPI
  MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  ::_exit(1);
}

// Pieces of at most 2^30 elements: MPI counts are int.
void World::allreduce_raw(void* data, size_t n, bool is_double, const char* what) {
  if (!distributed() || n == 0) return;
#ifdef PEFT_HAVE_MPI
  const size_t piece = size_t{1} << 30, elem = is_double ? sizeof(double) : sizeof(float);
  for (size_t off = 0; off < n; off += piece) {
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(data) + off * elem, static_cast<int>(std::min(piece, n - off)),
                   is_double ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
    if (!wait_until(req, timeout_s_)) timed_out(what);
  }
#else
  (void)data, (void)is_double, (void)what;
#endif
}

void World::allreduce_sum(float* data, size_t n, const char* what) { allreduce_raw(data, n, false, what); }
void World::allreduce_sum(double* data, size_t n, const char* what) { allreduce_raw(data, n, true, what); }

void World::broadcast(void* data, size_t bytes, int root, const char* what) {
  if (!distributed() || bytes == 0) return;
  if (bytes > static_cast<size_t>(1) << 30) throw ValueError(fmt::format("{}: broadcast of {} bytes is too large", what, bytes));
#ifdef PEFT_HAVE_MPI
  MPI_Request req;
  MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &req);
  if (!wait_until(req, timeout_s_)) timed_out(what);
#else
  (void)data, (void)root, (void)what;
#endif
}

void World::barrier(const char* what) {
  if (!distributed()) return;
#ifdef PEFT_HAVE_MPI
  MPI_Request req;
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  if (!wait_until(req, timeout_s_)) timed_out(what);
#else
  (void)what;
#endif
}

std::vector<std::string> World::gather(const std::string& mine, const char* what) {
  if (!distributed()) return {mine};
#ifdef PEFT_HAVE_MPI
  // Lengths first, then the bytes at their offsets.
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(is_root() ? static_cast<size_t>(size_) : 0);
  MPI_Request req;
  MPI_Igather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD, &req);
  if (!wait_until(req, timeout_s_)) timed_out(what);
  std::vector<int> offs(lens.size());
  int total = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    offs[i] = total;
    total += lens[i];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Igatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offs.data(), MPI_CHAR, 0, MPI_COMM_WORLD, &req);
  if (!wait_until(req, timeout_s_)) timed_out(what);
  std::vector<std::string> out;
  for (size_t i = 0; i < lens.size(); ++i)
    out.push_back(all.substr(static_cast<size_t>(offs[i]), static_cast<size_t>(lens[i])));
  return out;
#else
  (void)what;
  return {mine};
#endif
}

}  // namespace peft::dist
