// Process-level measurements: peak and current resident memory (for summaries and benches).
#pragma once

namespace peft {

double peak_rss_mb();     // VmHWM of /proc/self/status, in MiB (0 where unavailable)
double current_rss_mb();  // VmRSS

}  // namespace peft
