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

#ifndef PEFT_HAVE_MPI
// This process's rank as the launcher announces it, -1 when it announces none.
long env_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"})
    if (const char* s = std::getenv(v); s && *s) return std::strtol(s, nullptr, 10);
  return -1;
}
#endif

void print_line(const std::string& where, const std::string& message) {
  std::fprintf(stderr, "peft: error: %s: %s\n", where.c_str(), message.c_str());
  std::fflush(stderr);
}

#ifdef PEFT_HAVE_MPI
// World::fail's messages travel on a private copy of MPI_COMM_WORLD, so that they never match a
// collective's. Tags: a rank's error text to rank 0; rank 0's verdict back (1 = every rank failed
// alike, rank 0 prints it; 0 = yours alone, print it and abort); rank 0's notice that it failed;
// a rank's answer that it did not.
MPI_Comm g_err = MPI_COMM_NULL;
int g_rank = 0;
bool g_answered = false;  // this rank told rank 0 that it did not fail
enum Tag { kFailed = 1, kVerdict = 2, kRootFailed = 3, kNotFailed = 4 };

bool completes_within(MPI_Request& req, double s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(s);
  int done = 0;
  while (true) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

std::string recv_string(const MPI_Status& st) {
  int len = 0;
  MPI_Get_count(&st, MPI_CHAR, &len);
  std::string s(static_cast<size_t>(len), '\0');
  MPI_Recv(s.data(), len, MPI_CHAR, st.MPI_SOURCE, st.MPI_TAG, g_err, MPI_STATUS_IGNORE);
  return s;
}

// Called while this rank waits in a collective: another rank's failure. At rank 0 a rank's error
// means that rank failed where rank 0 did not: "yours alone". At another rank, rank 0's notice
// means rank 0 failed where this one did not: "not me". Unless the collective completes within a
// moment (the other rank had passed it and may fail alike here next): the message then waits for
// this rank's own World::fail or its next collective. Returns whether `req` completed.
bool answer_failures(MPI_Request& req) {
  if (g_err == MPI_COMM_NULL) return false;
  int flag = 0;
  MPI_Status st;
  MPI_Iprobe(g_rank == 0 ? MPI_ANY_SOURCE : 0, g_rank == 0 ? kFailed : kRootFailed, g_err, &flag, &st);
  if (!flag || (g_rank != 0 && g_answered)) return false;
  if (completes_within(req, 0.2)) return true;
  recv_string(st);
  char c = 0;
  MPI_Send(&c, 1, MPI_CHAR, st.MPI_SOURCE, g_rank == 0 ? kVerdict : kNotFailed, g_err);
  if (g_rank != 0) g_answered = true;
  return false;
}

// Waits for a request until the deadline: busy polling for the first millisecond (a step's
// allreduce on one machine takes microseconds), then polling with short sleeps so that a rank
// waiting for a slow one leaves the cores to it, answering other ranks' failures meanwhile.
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
    if (now - t0 > std::chrono::milliseconds(1)) {
      if (answer_failures(req)) return true;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
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
  MPI_Comm_dup(MPI_COMM_WORLD, &g_err);
  g_rank = rank_;
#else
  // Started by mpirun without MPI in the build: every rank would run the whole job alone and
  // they would write the same --out. One line (from the launcher's rank 0) and exit 2.
  if (env_size() > 1) {
    if (env_rank() <= 0)
      print_line("mpirun/srun started " + std::to_string(env_size()) + " ranks",
                 "this peft was built without MPI (-DPEFT_MPI=OFF, or Open MPI not found), so every rank would "
                 "run the whole job alone. Rebuild with MPI (scripts/setup.sh installs Open MPI; cmake "
                 "-DPEFT_MPI=ON) or run one process without mpirun");
    std::fflush(stdout);
    ::_exit(2);
  }
#endif
}

World::~World() { finalize(); }

void World::finalize() {
#ifdef PEFT_HAVE_MPI
  if (mpi_ && !finalized_) {
    finalized_ = true;
    if (g_err != MPI_COMM_NULL) MPI_Comm_free(&g_err);
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

void World::timed_out(const char* what, double seconds) const {
  print_line(where(), fmt::format("{} did not complete within {:g} s: another rank stopped or hangs "
                                  "(its own message, if any, is above; PEFT_DIST_TIMEOUT sets the limit)",
                                  what, seconds));
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
    if (!wait_until(req, timeout_s_)) timed_out(what, timeout_s_);
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
  if (!wait_until(req, timeout_s_)) timed_out(what, timeout_s_);
#else
  (void)data, (void)root, (void)what;
#endif
}

void World::barrier(const char* what) { barrier_raw(what, timeout_s_); }
void World::barrier(const char* what, double timeout_s) { barrier_raw(what, timeout_s); }
std::vector<std::string> World::gather(const std::string& mine, const char* what) {
  return gather_raw(mine, what, timeout_s_);
}
std::vector<std::string> World::gather(const std::string& mine, const char* what, double timeout_s) {
  return gather_raw(mine, what, timeout_s);
}

void World::barrier_raw(const char* what, double timeout_s) {
  if (!distributed()) return;
#ifdef PEFT_HAVE_MPI
  MPI_Request req;
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  if (!wait_until(req, timeout_s)) timed_out(what, timeout_s);
#else
  (void)what, (void)timeout_s;
#endif
}

std::vector<std::string> World::gather_raw(const std::string& mine, const char* what, double timeout_s) {
  if (!distributed()) return {mine};
#ifdef PEFT_HAVE_MPI
  // Lengths first, then the bytes at their offsets.
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(is_root() ? static_cast<size_t>(size_) : 0);
  MPI_Request req;
  MPI_Igather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD, &req);
  if (!wait_until(req, timeout_s)) timed_out(what, timeout_s);
  std::vector<int> offs(lens.size());
  int total = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    offs[i] = total;
    total += lens[i];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Igatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offs.data(), MPI_CHAR, 0, MPI_COMM_WORLD, &req);
  if (!wait_until(req, timeout_s)) timed_out(what, timeout_s);
  std::vector<std::string> out;
  for (size_t i = 0; i < lens.size(); ++i)
    out.push_back(all.substr(static_cast<size_t>(offs[i]), static_cast<size_t>(lens[i])));
  return out;
#else
  (void)what, (void)timeout_s;
  return {mine};
#endif
}

int World::fail(const std::string& message, int code) {
  if (!distributed() || !mpi_ || finalized_) {
    std::fprintf(stderr, "peft: error: %s\n", message.c_str());
    std::fflush(stderr);
    return code;
  }
#ifdef PEFT_HAVE_MPI
  // How long a failing rank waits for the others' word: ranks that fail alike fail within
  // moments of each other; a rank still computing answers when it next waits in a collective.
  const double grace = std::min(timeout_s_, 10.0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace);
  char verdict = 0;
  if (rank_ == 0) {
    std::vector<MPI_Request> notices(static_cast<size_t>(size_ - 1));
    char one = 1;
    for (int r = 1; r < size_; ++r)
      MPI_Isend(&one, 1, MPI_CHAR, r, kRootFailed, g_err, &notices[static_cast<size_t>(r - 1)]);
    std::vector<int> failed;  // the ranks waiting for a verdict
    bool same = true;
    int answered = 0;
    while (answered < size_ - 1 && same && std::chrono::steady_clock::now() < deadline) {
      int flag = 0;
      MPI_Status st;
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, g_err, &flag, &st);
      if (!flag) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      const std::string theirs = recv_string(st);
      if (st.MPI_TAG == kFailed) failed.push_back(st.MPI_SOURCE);
      same = same && st.MPI_TAG == kFailed && theirs == message;
      ++answered;
    }
    verdict = same && answered == size_ - 1 ? 1 : 0;
    if (verdict)
      std::fprintf(stderr, "peft: error: %s\n", message.c_str());
    else
      print_line(where(), message);
    std::fflush(stderr);
    for (int r : failed) MPI_Send(&verdict, 1, MPI_CHAR, r, kVerdict, g_err);
    if (verdict) {
      for (auto& n : notices) MPI_Wait(&n, MPI_STATUS_IGNORE);  // small: delivered eagerly
      finalize();
      return code;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the failed ranks print their own lines
    MPI_Abort(MPI_COMM_WORLD, code);
    ::_exit(code);
  }
  MPI_Request sent, got;
  MPI_Isend(message.data(), static_cast<int>(message.size()), MPI_CHAR, 0, kFailed, g_err, &sent);
  MPI_Irecv(&verdict, 1, MPI_CHAR, 0, kVerdict, g_err, &got);
  const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
  if (completes_within(got, std::max(left, 0.0)) && verdict == 1) {
    MPI_Wait(&sent, MPI_STATUS_IGNORE);
    // Rank 0's notice came before its verdict (MPI keeps one sender's order): take it off the line.
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(0, kRootFailed, g_err, &flag, &st);
    if (flag) recv_string(st);
    finalize();
    return code;
  }
  print_line(where(), message);
  MPI_Abort(MPI_COMM_WORLD, code);
  ::_exit(code);
#else
  return code;
#endif
}

std::vector<std::string> spread_cells(World& world, size_t cells, const std::function<std::string(size_t)>& run,
                                      const char* what) {
  const size_t n = static_cast<size_t>(world.size()), me = static_cast<size_t>(world.rank());
  std::vector<std::string> out;
  if (n == 1) {
    for (size_t i = 0; i < cells; ++i) out.push_back(run(i));
    return out;
  }
  // This rank's results, each as "<length>:<bytes>", in its cell order.
  std::string packed;
  for (size_t i = me; i < cells; i += n) {
    const std::string r = run(i);
    packed += std::to_string(r.size()) + ":" + r;
  }
  const std::vector<std::string> all = world.gather(packed, what, std::max(world.timeout_s(), 86400.0));
  if (!world.is_root()) return {};
  out.resize(cells);
  for (size_t r = 0; r < all.size(); ++r) {
    size_t pos = 0;
    for (size_t i = r; i < cells; i += n) {
      const size_t colon = all[r].find(':', pos);
      const size_t len = std::stoul(all[r].substr(pos, colon - pos));
      out[i] = all[r].substr(colon + 1, len);
      pos = colon + 1 + len;
    }
  }
  return out;
}

}  // namespace peft::dist
