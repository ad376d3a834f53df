// Atomic file replacement via temp file + fsync + rename (POSIX).
#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace peft {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes the rename itself durable. Best effort: some file systems refuse fsync on directories,
// and the data is already safe in the renamed file by then.
void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_bytes(std::FILE* f, const void* data, size_t n, const std::string& path) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, f) != n)
    throw IOError("write_file_atomic: short write to '" + path + "' (" + errno_text(errno) +
                  "). Hint: check free disk space and permissions");
}

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& writer) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    throw IOError("write_file_atomic: cannot create temp file '" + tmp + "' for '" + path + "' (" +
                  errno_text(errno) + "). Hint: does the directory exist and is it writable?");

  // Until the rename succeeds, every exit path closes and removes the temp file.
  auto abandon = [&] {
    if (f) std::fclose(f);
    f = nullptr;
    std::remove(tmp.c_str());
  };
  try {
    writer(f);
    if (std::ferror(f)) throw IOError("write_file_atomic: write error on '" + path + "'");
    if (std::fflush(f) != 0)
      throw IOError("write_file_atomic: cannot flush '" + path + "' (" + errno_text(errno) + ")");
    // fsync before rename: otherwise a crash can leave the new name pointing at empty blocks.
    if (::fsync(::fileno(f)) != 0)
      throw IOError("write_file_atomic: cannot fsync '" + path + "' (" + errno_text(errno) + ")");
    std::FILE* closing = f;
    f = nullptr;
    if (std::fclose(closing) != 0)
      throw IOError("write_file_atomic: cannot close '" + path + "' (" + errno_text(errno) + ")");
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw IOError("write_file_atomic: cannot rename '" + tmp + "' to '" + path + "' (" +
                    errno_text(errno) + ")");
  } catch (...) {
    abandon();
    throw;
  }
  fsync_dir(dir_of(path));
}

void write_text_atomic(const std::string& path, const std::string& content) {
  write_file_atomic(path, [&](std::FILE* f) { write_bytes(f, content.data(), content.size(), path); });
}

}  // namespace peft
