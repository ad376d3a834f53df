// Output folder claims: creation, input overlap check, an flock'ed lock file, stale temp cleanup.
#include "core/out_dir.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>

#include "core/error.h"

namespace peft {

namespace fs = std::filesystem;

namespace {

// True when `inner` is `outer` or lies below it (both canonical).
bool is_within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin(), o = outer.begin();
  for (; o != outer.end(); ++o, ++i)
    if (i == inner.end() || *i != *o) return false;
  return true;
}

// "<anything>.tmp.<digits>" -> the pid, else 0.
pid_t temp_file_pid(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at + 5 >= name.size()) return 0;
  long long pid = 0;
  for (size_t i = at + 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || pid > 1'000'000'000) return 0;
    pid = pid * 10 + (name[i] - '0');
  }
  return static_cast<pid_t>(pid);
}

// `name` matches `pattern` (literal, or one '*' standing for any run of characters).
bool matches(const std::string& name, const std::string& pattern) {
  const size_t star = pattern.find('*');
  if (star == std::string::npos) return name == pattern;
  const std::string head = pattern.substr(0, star), tail = pattern.substr(star + 1);
  return name.size() >= head.size() + tail.size() && name.compare(0, head.size(), head) == 0 &&
         name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

void clear_previous_run(const std::string& dir, const std::vector<std::string>& run_files, bool overwrite,
                        const std::string& flag, bool resumable) {
  std::error_code ec;
  std::vector<std::pair<size_t, fs::path>> hits;  // (pattern index, file): named in the patterns' order
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    for (size_t i = 0; i < run_files.size(); ++i)
      if (matches(name, run_files[i])) {
        hits.emplace_back(i, e.path());
        break;
      }
  }
  if (hits.empty()) return;
  std::sort(hits.begin(), hits.end());
  std::vector<fs::path> found;
  for (auto& h : hits) found.push_back(h.second);
  if (!overwrite) {
    std::string names;
    for (size_t i = 0; i < found.size() && i < 3; ++i) names += (i ? ", " : "") + found[i].filename().string();
    if (found.size() > 3) names += fmt::format(" and {} more", found.size() - 3);
    throw ValueError(fmt::format("{} '{}' holds another run ({}). Hint: {}--overwrite to replace it (its files are "
                                 "removed first), or choose another {}",
                                 flag, dir, names, resumable ? "add --resume to continue it, " : "add ", flag));
  }
  for (const fs::path& p : found) {
    fs::remove(p, ec);
    if (ec) throw IOError(fmt::format("{} '{}': cannot remove the earlier run's {} ({})", flag, dir, p.filename().string(), ec.message()));
  }
}

void claim_out_dir(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& inputs,
                   const std::string& flag) {
  static std::mutex mu;
  static std::set<std::string> claimed;  // canonical folders this process holds (fds stay open)
  std::lock_guard<std::mutex> lock(mu);

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IOError(fmt::format("{} '{}': cannot create the folder ({})", flag, dir, ec.message()));
  const fs::path canon = fs::canonical(dir, ec);
  if (ec) throw IOError(fmt::format("{} '{}': cannot resolve the folder ({})", flag, dir, ec.message()));

  for (const auto& [in_flag, path] : inputs) {
    if (path.empty() || !fs::exists(path, ec)) continue;
    const fs::path in = fs::canonical(path, ec);
    if (ec) continue;
    if (is_within(in, canon))
      throw IOError(fmt::format("{} '{}' {} the {} input '{}': a run writes its files there and could overwrite "
                                "it. Hint: choose an --out folder outside the inputs",
                                flag, dir, in == canon ? "is" : "contains", in_flag, path));
  }

  if (claimed.count(canon.string())) return;
  const std::string lock_path = (canon / ".peft.lock").string();
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw IOError(fmt::format("{} '{}': cannot create the lock file {} ({})", flag, dir, lock_path, std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    if (err == EWOULDBLOCK)
      throw IOError(fmt::format("{} '{}': another peft run (pid {}) is writing into this folder (it holds {}). Hint: "
                                "wait for it to finish or choose another {}",
                                flag, dir, pid, lock_path, flag));
    throw IOError(fmt::format("{} '{}': cannot lock {} ({})", flag, dir, lock_path, std::strerror(err)));
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] ssize_t w = ::pwrite(fd, me.data(), me.size(), 0);  // for the message above only
  }
  claimed.insert(canon.string());  // fd deliberately stays open: the lock lives as long as the process

  // Temp files of runs that died (kill -9 mid-write) are never renamed; nobody else writes here now.
  for (const auto& e : fs::directory_iterator(canon, ec)) {
    const pid_t pid = temp_file_pid(e.path().filename().string());
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(e.path(), ec);
  }
}

}  // namespace peft
