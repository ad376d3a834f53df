// Reads /proc/self/status (Linux).
#include "core/process_stats.h"

#include <malloc.h>

#include <cstdio>
#include <cstring>

#include "core/storage.h"

namespace peft {

namespace {
double status_kb(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kb = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0) {
      std::sscanf(line + n, "%lf", &kb);
      break;
    }
  std::fclose(f);
  return kb;
}
}  // namespace

double peak_rss_mb() { return status_kb("VmHWM:") / 1024.0; }
double current_rss_mb() { return status_kb("VmRSS:") / 1024.0; }

void reset_peak_rss() {
  // The allocator keeps freed activation memory (core/storage.cpp); give it back first so the
  // new peak starts from what is really in use.
  release_cached_storage();
  malloc_trim(0);
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

}  // namespace peft
