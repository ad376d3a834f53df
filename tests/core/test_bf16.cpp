// core/bf16: every vector path of to_bf16 the CPU has gives the reference's bits (round to
// nearest even, ties, NaN, infinities, denormals, signed zeros, every tail length).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/bf16.h"
#include "core/random.h"

using namespace peft;

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::vector<float> tricky_values() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 3.14159265f, 1e-40f, -1e-40f, 1e38f, -3.4e38f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(), std::numeric_limits<float>::min()};
  // Ties (lower half exactly 0x8000) with even and odd upper halves, and just around them.
  for (uint32_t hi : {0x3f80u, 0x3f81u, 0x7f7fu, 0x0000u, 0x8001u})
    for (uint32_t lo : {0x7fffu, 0x8000u, 0x8001u, 0xffffu, 0x0001u})
      v.push_back(from_bits((hi << 16) | lo));
  v.push_back(from_bits(0x7f800001u));  // signalling NaN: becomes quiet
  v.push_back(from_bits(0xffc00001u));  // negative NaN with payload
  Generator g(7);
  for (int i = 0; i < 1000; ++i) v.push_back(static_cast<float>(g.normal() * std::pow(10.0, (i % 21) - 10)));
  for (int i = 0; i < 300; ++i) v.push_back(from_bits(static_cast<uint32_t>(g.next_u64())));  // any bit pattern
  return v;
}

}  // namespace

TEST(Bf16, RoundBitsByHand) {
  EXPECT_EQ(bf16::round_bits(1.0f), 0x3f80);
  EXPECT_EQ(bf16::round_bits(from_bits(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(bf16::round_bits(from_bits(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(bf16::round_bits(from_bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(bf16::round_bits(from_bits(0x7f7fffffu)), 0x7f80);  // max float rounds to inf
  EXPECT_TRUE(std::isnan(bf16::to_float(bf16::round_bits(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16::to_float(bf16::round_bits(from_bits(0x7f800001u)))));  // not inf
  EXPECT_EQ(bf16::to_float(bf16::round_bits(2.5f)), 2.5f);
}

TEST(Bf16, EveryPathMatchesTheReferenceBitForBit) {
  const std::vector<float> v = tricky_values();
  std::vector<uint16_t> want(v.size());
  bf16::to_bf16_reference(v.data(), static_cast<int64_t>(v.size()), want.data());
  for (bf16::Path p : {bf16::Path::scalar, bf16::Path::avx2, bf16::Path::avx512}) {
    if (!bf16::path_supported(p)) continue;
    // Every length up to 40 (tails of every size), from every offset 0..3 (unaligned loads).
    for (int64_t off = 0; off < 4; ++off)
      for (int64_t n = 0; n <= 40; ++n) {
        std::vector<uint16_t> got(static_cast<size_t>(n) + 1, 0xABCD);
        bf16::to_bf16(p, v.data() + off, n, got.data());
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(got[static_cast<size_t>(i)], want[static_cast<size_t>(off + i)])
              << bf16::path_name(p) << " n=" << n << " off=" << off << " i=" << i;
        EXPECT_EQ(got[static_cast<size_t>(n)], 0xABCD) << "wrote past the end: " << bf16::path_name(p);
      }
    std::vector<uint16_t> got(v.size());
    bf16::to_bf16(p, v.data(), static_cast<int64_t>(v.size()), got.data());
    EXPECT_EQ(got, want) << bf16::path_name(p);
  }
  std::vector<uint16_t> got(v.size());
  bf16::to_bf16(v.data(), static_cast<int64_t>(v.size()), got.data());
  EXPECT_EQ(got, want) << "default path " << bf16::path_name(bf16::best_path());
}
