// Whole-file reads of small inputs (configs, prompt and class-name lists): bounded, and only of
// regular files, so `--config /dev/zero` or a FIFO is a one-line error instead of reading
// forever or hanging (issue 20).
#pragma once
#include <cstdint>
#include <string>

namespace peft {

constexpr int64_t kMaxConfigBytes = int64_t{16} << 20;  // JSON configs: a real one is a few KB
constexpr int64_t kMaxTextBytes = int64_t{64} << 20;    // prompt / class-name lists: a line per class

// The bytes of `path`. IOError "<what> '<path>': ..." when it cannot be opened, is not a regular
// file (a FIFO, device, socket or folder: opened without blocking and never read), or holds more
// than max_bytes (checked before reading and again while reading, for a file that grows).
std::string read_small_file(const std::string& path, const std::string& what, int64_t max_bytes);

}  // namespace peft
