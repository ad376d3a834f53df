// Process-level measurements: peak and current resident memory (for summaries and benches).
#pragma once

namespace peft {

double peak_rss_mb();     // VmHWM of /proc/self/status, in MiB (0 where unavailable)
double current_rss_mb();  // VmRSS
// Starts a new peak (after returning freed heap memory to the OS): Linux resets VmHWM when "5" is written to /proc/self/clear_refs; where
// that is not permitted the peak stays the process-wide one (still an upper bound).
void reset_peak_rss();

}  // namespace peft
