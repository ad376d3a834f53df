// core/cpu_peak: the CPUID/XGETBV detection agrees with the kernel's /proc/cpuinfo flags, and the
// FMA loops return a positive rate on every ISA the CPU has (no timing is asserted: speed is
// measured by `peft bench`, not by tests).
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "core/cpu_peak.h"

using namespace peft;

namespace {

// The "flags" line of the first processor in /proc/cpuinfo; empty when there is none (not Linux x86).
std::set<std::string> proc_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      std::istringstream ss(line.substr(line.find(':') + 1));
      std::set<std::string> out;
      for (std::string w; ss >> w;) out.insert(w);
      return out;
    }
  return {};
}

}  // namespace

TEST(CpuPeak, FeaturesAgreeWithProcCpuinfo) {
  const auto flags = proc_flags();
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  const cpu::Features& f = cpu::features();
  // Linux lists an ISA only when the CPU has it and the kernel enabled its register state,
  // the same rule features() applies.
  EXPECT_EQ(f.fma, flags.count("fma") == 1);
  EXPECT_EQ(f.avx2, flags.count("avx2") == 1);
  EXPECT_EQ(f.avx512f, flags.count("avx512f") == 1);
  EXPECT_EQ(f.avx512bw, flags.count("avx512bw") == 1);
  EXPECT_EQ(f.avx512_bf16, flags.count("avx512_bf16") == 1);
  EXPECT_EQ(f.amx_bf16, flags.count("amx_bf16") == 1);
  EXPECT_EQ(f.amx_tile, flags.count("amx_tile") == 1);
  EXPECT_EQ(cpu::isa_supported(cpu::Isa::avx2), flags.count("avx2") == 1 && flags.count("fma") == 1);
  EXPECT_EQ(cpu::isa_supported(cpu::Isa::avx512), flags.count("avx512f") == 1);
}

TEST(CpuPeak, PositiveWhereSupportedZeroElsewhere) {
  for (cpu::Isa isa : {cpu::Isa::avx2, cpu::Isa::avx512}) {
    const double g1 = cpu::fma_peak_gflops(isa, 1, 0.01);
    const double g2 = cpu::fma_peak_gflops(isa, 2, 0.01);
    if (cpu::isa_supported(isa)) {
      EXPECT_GT(g1, 0.0) << cpu::isa_name(isa);
      EXPECT_GT(g2, 0.0) << cpu::isa_name(isa);
    } else {
      EXPECT_EQ(g1, 0.0) << cpu::isa_name(isa);
    }
  }
}

TEST(CpuPeak, IsaNames) {
  EXPECT_STREQ(cpu::isa_name(cpu::Isa::avx2), "AVX2");
  EXPECT_STREQ(cpu::isa_name(cpu::Isa::avx512), "AVX-512");
}
