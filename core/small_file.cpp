// Bounded reads of regular files: open without blocking, fstat, read at most max_bytes + 1.
#include "core/small_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace peft {

namespace {

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

std::string mib(int64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20)); }

}  // namespace

std::string read_small_file(const std::string& path, const std::string& what, int64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw IOError(fmt::format("{} '{}': cannot open ({})", what, path, std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw IOError(fmt::format("{} '{}': cannot stat ({})", what, path, std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw IOError(fmt::format("{} '{}' is {}, not a regular file. Hint: pass a file", what, path, kind_of(st.st_mode)));
  auto too_big = [&](int64_t size) {
    return IOError(fmt::format("{} '{}' is {}{} bytes, more than the {} such a file may have. Hint: is this the right "
                               "file?",
                               what, path, size > max_bytes + 1 ? "" : "at least ", size, mib(max_bytes)));
  };
  if (st.st_size > max_bytes) throw too_big(st.st_size);
  std::string data(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t got = 0;
  for (;;) {
    if (got == data.size()) {
      if (static_cast<int64_t>(got) > max_bytes) throw too_big(static_cast<int64_t>(got));
      data.resize(std::min<size_t>(data.size() * 2, static_cast<size_t>(max_bytes) + 1));
    }
    const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw IOError(fmt::format("{} '{}': cannot read ({})", what, path, std::strerror(errno)));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  return data;
}

}  // namespace peft
