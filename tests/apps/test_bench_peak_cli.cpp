// `peft bench` measures the FMA peak on the spot and reports the step's share of it: the JSON
// keys peak_gflops_avx2 / peak_gflops_avx512 / peak_share (null for an ISA the CPU lacks), and the
// readable line. Values are checked for sanity, not speed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/cpu_peak.h"
#include "tests/apps/cli_util.h"

namespace peft {
namespace {

using testing::run_peft;

nlohmann::json last_json_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nlohmann::json::parse(nl == std::string::npos ? s : s.substr(nl + 1));
}

TEST(BenchPeakCli, JsonHasThePeakAndTheStepsShare) {
  auto r = run_peft("bench --config tiny --method linear --phase infer --threads 1 --warmup 0 --steps 1 "
                    "--no-gemm-probe --json",
                    "bench_peak");
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j;
  ASSERT_NO_THROW(j = last_json_line(r.out)) << r.out;
  for (const char* k : {"peak_gflops_avx2", "peak_gflops_avx512", "peak_share", "precision", "gemm_backend"})
    EXPECT_TRUE(j.contains(k)) << "missing key " << k << " in " << j.dump();
  if (cpu::isa_supported(cpu::Isa::avx2)) {
    EXPECT_GT(j["peak_gflops_avx2"].get<double>(), 0.0);
    EXPECT_GT(j["peak_share"].get<double>(), 0.0);
  } else {
    EXPECT_TRUE(j["peak_gflops_avx2"].is_null());
  }
  if (cpu::isa_supported(cpu::Isa::avx512))
    EXPECT_GT(j["peak_gflops_avx512"].get<double>(), 0.0);
  else
    EXPECT_TRUE(j["peak_gflops_avx512"].is_null());
  EXPECT_NE(r.out.find("FMA peak (1 threads"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace peft
