// Whole-file hash: 4 independent 64-bit multiply-xorshift lanes over 8-byte words (fast enough
// to run at memory speed), folded with the size.
#include "core/file_hash.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace peft {

namespace {

constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;

inline uint64_t mix(uint64_t h, uint64_t w) {
  h ^= w * 0xC2B2AE3D27D4EB4Full;
  h = (h << 31) | (h >> 33);
  return h * kMul;
}

}  // namespace

std::string file_identity(const std::string& path, const std::string& what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IOError(fmt::format("{} '{}': cannot open ({})", what, path, std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  std::vector<uint64_t> buf((size_t{1} << 20) / 8);
  uint64_t lane[4] = {1, 2, 3, 4};
  uint64_t size = 0, tail = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size() * 8);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw IOError(fmt::format("{} '{}': cannot read ({})", what, path, std::strerror(errno)));
    if (n == 0) break;
    const size_t words = static_cast<size_t>(n) / 8;
    size_t i = 0;
    for (; i + 4 <= words; i += 4)
      for (int l = 0; l < 4; ++l) lane[l] = mix(lane[l], buf[i + l]);
    for (; i < words; ++i) lane[0] = mix(lane[0], buf[i]);
    if (const size_t rest = static_cast<size_t>(n) % 8) {  // only the file's last read can end mid-word
      tail = 0;
      std::memcpy(&tail, reinterpret_cast<const char*>(buf.data()) + words * 8, rest);
      lane[1] = mix(lane[1], tail ^ (static_cast<uint64_t>(rest) << 56));
    }
    size += static_cast<uint64_t>(n);
  }
  uint64_t h = size * kMul;
  for (uint64_t l : lane) h = mix(h, l);
  h ^= h >> 29;
  return fmt::format("{} bytes, hash {:016x}", size, h);
}

}  // namespace peft
