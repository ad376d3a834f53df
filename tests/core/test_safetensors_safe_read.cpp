// safetensors reads that another process disturbs (issue 20): a file truncated after open() was
// read through a memory map and killed the reader with SIGBUS; now get() reads with pread and a
// short read is an IOError naming the file and the tensor. A FIFO is refused without blocking.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/tensor.h"
#include "core/io/safetensors.h"

using namespace peft;
namespace fs = std::filesystem;

namespace {
fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("peft_st_safe_" + std::to_string(::getpid()) + "_" + name);
}
}  // namespace

TEST(SafetensorsSafeRead, FileTruncatedAfterOpenIsAnIOErrorNotSigbus) {
  const fs::path p = temp_path("trunc.safetensors");
  Tensor a = full({256, 256}, 1.5), b = full({256, 256}, 2.5, DType::f64);
  save_safetensors(p.string(), {{"first", a}, {"second", b}});
  SafetensorsFile f = SafetensorsFile::open(p.string());
  // Cut the file inside "first": nothing after byte 1000 of the data remains.
  fs::resize_file(p, 1000);
  for (const char* name : {"first", "second"}) {
    SCOPED_TRACE(name);
    try {
      f.get(name);
      ADD_FAILURE() << "read a tensor of a truncated file";
    } catch (const IOError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(p.string()), std::string::npos) << m;
      EXPECT_NE(m.find(std::string("tensor '") + name + "'"), std::string::npos) << m;
      EXPECT_NE(m.find("truncated"), std::string::npos) << m;
    }
  }
  fs::remove(p);
}

TEST(SafetensorsSafeRead, ValuesAndDtypesStillRoundTrip) {
  // The pread path: straight reads (F32 -> f32, F64 -> f64, I64) and chunked conversions larger
  // than one chunk (F64 -> f32, F32 -> f64).
  const fs::path p = temp_path("roundtrip.safetensors");
  Tensor big = empty({600, 1000}, DType::f64);
  double* d = big.data<double>();
  for (int64_t i = 0; i < big.numel(); ++i) d[i] = static_cast<double>(i % 977) * 0.25 - 7.0;
  Tensor ids = arange(1000, DType::i64);
  save_safetensors(p.string(), {{"big", big}, {"ids", ids}, {"small", full({3}, 4.0)}});
  SafetensorsFile f = SafetensorsFile::open(p.string());
  Tensor as32 = f.get("big", DType::f32), as64 = f.get("big", DType::f64);
  for (int64_t i = 0; i < big.numel(); i += 997) {
    EXPECT_EQ(as64.data<double>()[i], d[i]);
    EXPECT_EQ(as32.data<float>()[i], static_cast<float>(d[i]));
  }
  EXPECT_EQ(as32.data<float>()[big.numel() - 1], static_cast<float>(d[big.numel() - 1]));
  EXPECT_EQ(f.get("ids", DType::i64).to_vector<int64_t>(), ids.to_vector<int64_t>());
  EXPECT_EQ(f.get("small", DType::f64).to_vector<double>(), (std::vector<double>{4.0, 4.0, 4.0}));
  fs::remove(p);
}

TEST(SafetensorsSafeRead, FifoIsRefusedWithoutBlocking) {
  const fs::path p = temp_path("fifo.safetensors");
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  try {
    SafetensorsFile::open(p.string());
    ADD_FAILURE() << "opened a FIFO";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  fs::remove(p);
}
