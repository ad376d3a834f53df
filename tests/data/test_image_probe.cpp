// The ImageFolder probe reads a bounded head of each file (issue 20: it read whole files) and
// reports the size a header claims, so a huge image gets its own message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "data/image.h"

namespace peft::data {
namespace {

namespace fs = std::filesystem;

// A PNG signature and IHDR chunk claiming w x h RGB pixels (stb_image does not check the CRC).
std::string png_header(uint32_t w, uint32_t h) {
  std::string s = "\x89PNG\r\n\x1a\n";
  auto be32 = [&](uint32_t v) {
    for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  be32(13);
  s += "IHDR";
  be32(w);
  be32(h);
  s += std::string("\x08\x02\x00\x00\x00", 5);
  be32(0);  // CRC
  return s;
}

// Bytes this process has read through read() so far (/proc/self/io "rchar").
int64_t bytes_read() {
  std::ifstream f("/proc/self/io");
  for (std::string key; f >> key;) {
    int64_t v = 0;
    f >> v;
    if (key == "rchar:") return v;
  }
  return -1;
}

struct TempPath {
  fs::path p = fs::temp_directory_path() / ("peft_probe_" + std::to_string(::getpid()) + ".png");
  ~TempPath() { fs::remove(p); }
};

TEST(ImageProbe, ReadsOnlyTheHeadOfALargeFile) {
  TempPath t;
  {
    std::ofstream f(t.p, std::ios::binary);
    f << png_header(16, 8);
    const std::string mib(1 << 20, '\0');
    for (int i = 0; i < 64; ++i) f << mib;  // 64 MiB after the header
  }
  if (bytes_read() < 0) GTEST_SKIP() << "no /proc/self/io";
  const int64_t before = bytes_read();
  int64_t h = 0, w = 0;
  EXPECT_TRUE(probe_image(t.p.string(), &h, &w));
  const int64_t read = bytes_read() - before;
  EXPECT_EQ(w, 16);
  EXPECT_EQ(h, 8);
  EXPECT_LE(read, int64_t{1} << 20) << "the probe read " << read << " bytes of a 64 MiB file";
}

TEST(ImageProbe, ReportsTheSizeAHugeHeaderClaims) {
  TempPath t;
  std::ofstream(t.p, std::ios::binary) << png_header(20000, 20000);
  int64_t h = 0, w = 0;
  ASSERT_TRUE(probe_image(t.p.string(), &h, &w));
  EXPECT_EQ(w, 20000);
  EXPECT_EQ(h, 20000);
  EXPECT_GT(w * h, kMaxImagePixels);
}


// Found by fuzz_image_folder: a header claiming 2^32 - 1 x 2^32 - 1 overflowed h * w.
TEST(ImageProbe, AHeaderOfTheLargestSizeDoesNotOverflow) {
  TempPath t;
  std::ofstream(t.p, std::ios::binary) << png_header(0xFFFFFFFFu, 0xFFFFFFFFu);
  int64_t h = 0, w = 0;
  ASSERT_TRUE(probe_image(t.p.string(), &h, &w));
  EXPECT_EQ(w, 0xFFFFFFFFll);
  EXPECT_TRUE(too_many_pixels(h, w));
  EXPECT_FALSE(too_many_pixels(8192, 8192));
  EXPECT_TRUE(too_many_pixels(8192, 8193));
}

}  // namespace
}  // namespace peft::data
