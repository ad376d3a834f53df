// safetensors I/O: round trips, files in PyTorch's layout, exact F16/BF16 decoding, every kind of
// corrupt header, and atomic replacement of existing files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <tuple>

#include "core/atomic_file.h"
#include "core/random.h"
#include "core/tensor.h"
#include "core/io/safetensors.h"
#include "tests/testing.h"

using namespace peft;
namespace fs = std::filesystem;

namespace {

const std::string kFixtures = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/safetensors/";

// A fresh, empty directory for one test, removed when the test ends.
struct ScratchDir {
  std::string path;
  explicit ScratchDir(const std::string& test)
      : path((fs::path(::testing::TempDir()) / ("peft_safetensors_" + test + "_" + std::to_string(::getpid())))
                 .string()) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;  // best effort: never throw from a destructor
    fs::remove_all(path, ec);
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes_plain(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A file with the given header text and `data_bytes` zero bytes of data.
std::string raw_file(const std::string& header, size_t data_bytes) {
  return u64_le(header.size()) + header + std::string(data_bytes, '\0');
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Bitwise equality (so -0 != +0), except that any NaN matches any NaN: NaN payloads differ between
// conversion routines (quieting) and carry no value.
template <class T>
void expect_same_values(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(got[i]) && std::isnan(want[i])) continue;
      EXPECT_EQ(std::memcmp(&got[i], &want[i], sizeof(T)), 0)
          << what << " element " << i << ": got " << got[i] << ", want " << want[i];
    } else {
      EXPECT_EQ(got[i], want[i]) << what << " element " << i;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- round trips

TEST(Safetensors, RoundTripKeepsValuesOrderShapesAndMetadata) {
  ScratchDir scratch("roundtrip");
  const std::string& dir = scratch.path;
  const std::string path = dir + "/model.safetensors";
  Generator g(7);
  Tensor a = randn({2, 3}, g, DType::f32);
  a.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  a.data<float>()[1] = -0.0f;
  a.data<float>()[2] = std::numeric_limits<float>::infinity();
  a.data<float>()[3] = 1e-40f;  // subnormal
  Tensor b = randn({4}, g, DType::f64);
  Tensor c = from_vector_i64({-(int64_t{1} << 62), -1, 0, 5}, {2, 2});
  Tensor base = randn({3, 4}, g, DType::f32);
  Tensor transposed = base.as_strided({4, 3}, {1, 4}, 0);    // non-contiguous view
  Tensor sliced = base.as_strided({2, 2}, {4, 2}, 5);        // offset + strides
  Tensor expanded = randn({3}, g, DType::f64).as_strided({2, 3}, {0, 1}, 0);  // stride-0 broadcast
  Tensor scalar = scalar_tensor(-2.5, DType::f64);           // 0-d
  Tensor empty_t = zeros({0, 3});
  ASSERT_FALSE(transposed.is_contiguous());
  ASSERT_FALSE(sliced.is_contiguous());
  ASSERT_FALSE(expanded.is_contiguous());

  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"z.first", a}, {"b", b}, {"ids", c}, {"t", transposed}, {"s", sliced}, {"e", expanded},
      {"scalar", scalar}, {"empty", empty_t}};
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "héllo \"quoted\""}};
  save_safetensors(path, tensors, meta);

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"z.first", "b", "ids", "t", "s", "e", "scalar", "empty"}));
  EXPECT_EQ(f.size(), 8u);
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_TRUE(f.has("ids"));
  EXPECT_FALSE(f.has("IDS"));
  EXPECT_EQ(f.info("z.first").dtype, "F32");
  EXPECT_EQ(f.info("b").dtype, "F64");
  EXPECT_EQ(f.info("ids").dtype, "I64");
  EXPECT_EQ(f.info("t").shape, (Shape{4, 3}));
  EXPECT_EQ(f.info("scalar").shape, Shape{});
  EXPECT_EQ(f.info("empty").shape, (Shape{0, 3}));

  expect_same_values(f.get("z.first").to_vector<float>(), a.to_vector<float>(), "z.first");
  expect_same_values(f.get("b", DType::f64).to_vector<double>(), b.to_vector<double>(), "b");
  expect_same_values(f.get("ids", DType::i64).to_vector<int64_t>(), c.to_vector<int64_t>(), "ids");
  expect_same_values(f.get("t").to_vector<float>(), transposed.to_vector<float>(), "t");
  expect_same_values(f.get("s").to_vector<float>(), sliced.to_vector<float>(), "s");
  expect_same_values(f.get("e", DType::f64).to_vector<double>(), expanded.to_vector<double>(), "e");
  Tensor s = f.get("scalar", DType::f64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item(), -2.5);
  EXPECT_EQ(f.get("empty").numel(), 0);
  EXPECT_EQ(f.get("empty").sizes(), (Shape{0, 3}));

  // Loaded tensors are ordinary contiguous tensors of the requested dtype.
  Tensor t = f.get("t");
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.at({3, 1}), transposed.at({3, 1}));

  // Cross-precision reads: f32 -> f64 is exact, f64 -> f32 rounds like static_cast (and torch).
  expect_same_values(f.get("z.first", DType::f64).to_vector<double>(), a.to_vector<double>(), "z.first as f64");
  std::vector<float> b32;
  for (double v : b.to_vector<double>()) b32.push_back(static_cast<float>(v));
  expect_same_values(f.get("b", DType::f32).to_vector<float>(), b32, "b as f32");

  // Layout: the header is space-padded so the data section starts 8-byte aligned.
  const std::string bytes = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  const size_t data_bytes = 6 * 4 + 4 * 8 + 4 * 8 + 12 * 4 + 4 * 4 + 6 * 8 + 8;
  EXPECT_EQ(bytes.size(), 8 + n + data_bytes);
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"model.safetensors"}));  // no temp file left
}

TEST(Safetensors, NoMetadataMeansNoMetadataEntry) {
  ScratchDir scratch("nometa");
  const std::string path = scratch.path + "/x.safetensors";
  save_safetensors(path, {{"w", ones({2})}});
  EXPECT_EQ(read_bytes(path).find("__metadata__"), std::string::npos);
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_EQ(f.get("w").to_vector<float>(), (std::vector<float>{1, 1}));
}

TEST(Safetensors, SaveRejectsDuplicateReservedAndUndefinedNames) {
  ScratchDir scratch("badnames");
  const std::string path = scratch.path + "/x.safetensors";
  save_safetensors(path, {{"keep", ones({1})}});
  const std::string before = read_bytes(path);
  EXPECT_THROW_MSG(save_safetensors(path, {{"w", ones({1})}, {"v", ones({1})}, {"w", zeros({2})}}), ValueError,
                   "duplicate tensor name 'w'", path.c_str());
  EXPECT_THROW_MSG(save_safetensors(path, {{"__metadata__", ones({1})}}), ValueError, "reserved");
  EXPECT_THROW_MSG(save_safetensors(path, {{"", ones({1})}}), ValueError, "empty name");
  EXPECT_THROW_MSG(save_safetensors(path, {{"u", Tensor()}}), ValueError, "'u'", "undefined");
  EXPECT_EQ(read_bytes(path), before);  // a rejected save leaves the existing file alone
}

// ---------------------------------------------------------------- files in PyTorch's layout

TEST(Safetensors, ReadsTorchFileAndMatchesTorchConversions) {
  SafetensorsFile f = SafetensorsFile::open(kFixtures + "torch_dtypes.safetensors");
  SafetensorsFile want = SafetensorsFile::open(kFixtures + "torch_dtypes_expected.safetensors");
  EXPECT_EQ(f.size(), 10u);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"},
                                                             {"source", "make_safetensors_fixtures.py"}}));
  EXPECT_EQ(f.info("f16.randn").dtype, "F16");
  EXPECT_EQ(f.info("f16.randn").shape, (Shape{2, 3, 4}));
  EXPECT_EQ(f.info("bf16.randn").dtype, "BF16");
  EXPECT_EQ(f.info("i32.values").dtype, "I32");
  EXPECT_EQ(f.info("scalar").shape, Shape{});
  EXPECT_EQ(f.info("empty").shape, (Shape{0, 3}));

  int checked = 0;
  for (const std::string& name : f.names()) {
    if (want.has(name + ".i64")) {
      Tensor got = f.get(name, DType::i64);
      EXPECT_EQ(got.dtype(), DType::i64) << name;
      EXPECT_EQ(got.sizes(), want.info(name + ".i64").shape) << name;
      expect_same_values(got.to_vector<int64_t>(), want.get(name + ".i64", DType::i64).to_vector<int64_t>(), name);
      ++checked;
      continue;
    }
    Tensor g32 = f.get(name, DType::f32), g64 = f.get(name, DType::f64);
    EXPECT_EQ(g32.dtype(), DType::f32);
    EXPECT_EQ(g64.dtype(), DType::f64);
    EXPECT_EQ(g32.sizes(), want.info(name + ".f32").shape) << name;
    expect_same_values(g32.to_vector<float>(), want.get(name + ".f32", DType::f32).to_vector<float>(), name + " f32");
    expect_same_values(g64.to_vector<double>(), want.get(name + ".f64", DType::f64).to_vector<double>(),
                       name + " f64");
    ++checked;
  }
  EXPECT_EQ(checked, 10);

  // Hand-checked values, independent of any writer: the last entries of the pattern tensors are the
  // script's hand-picked bit patterns.
  EXPECT_EQ(f.get("scalar").item(), 3.25);
  EXPECT_EQ(f.get("i32.values", DType::i64).at({0, 0}), -2147483648.0);
  EXPECT_EQ(f.get("i32.values", DType::i64).at({1, 2}), -123456.0);
  EXPECT_EQ(f.get("i64.values", DType::i64).to_vector<int64_t>()[1], std::numeric_limits<int64_t>::max());
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> f16 = f.get("f16.patterns").to_vector<float>();
  std::vector<float> f16_tail(f16.end() - 13, f16.end());
  // 0x0000 0x0001 0x03FF 0x0400 0x3C00 0x7BFF 0x7C00 0x7C01 0x7E00 0x8000 0x8001 0xFBFF 0xFC00
  expect_same_values(f16_tail,
                     {0.0f, std::ldexp(1.0f, -24), std::ldexp(1023.0f, -24), std::ldexp(1.0f, -14), 1.0f, 65504.0f,
                      inf, NAN, NAN, -0.0f, -std::ldexp(1.0f, -24), -65504.0f, -inf},
                     "f16 hand-picked");
  std::vector<float> bf16 = f.get("bf16.patterns").to_vector<float>();
  std::vector<float> bf16_tail(bf16.end() - 12, bf16.end());
  // 0x0000 0x0001 0x007F 0x0080 0x3F80 0x7F7F 0x7F80 0x7F81 0x7FC0 0x8000 0x8001 0xFF80
  expect_same_values(bf16_tail,
                     {0.0f, std::ldexp(1.0f, -133), std::ldexp(127.0f, -133), std::numeric_limits<float>::min(), 1.0f,
                      std::ldexp(255.0f, 120), inf, NAN, NAN, -0.0f, -std::ldexp(1.0f, -133), -inf},
                     "bf16 hand-picked");
}

TEST(Safetensors, FloatTensorAsInt64IsADTypeError) {
  SafetensorsFile f = SafetensorsFile::open(kFixtures + "torch_dtypes.safetensors");
  EXPECT_THROW_MSG(f.get("f16.randn", DType::i64), DTypeError, "f16.randn", "F16", "torch_dtypes.safetensors");
  // Integer files ignore the float request and come back as i64.
  EXPECT_EQ(f.get("i32.values").dtype(), DType::i64);
}

TEST(Safetensors, UnknownNameListsWhatTheFileHas) {
  ScratchDir scratch("unknown");
  const std::string path = scratch.path + "/x.safetensors";
  save_safetensors(path, {{"alpha", ones({1})}, {"beta", ones({1})}});
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_THROW_MSG(f.get("gamma"), IOError, path.c_str(), "'gamma'", "2 tensors", "alpha", "beta");
  EXPECT_THROW_MSG(f.info("gamma"), IOError, "'gamma'");
}

// Every binary16 and bfloat16 bit pattern against a decoder written from the IEEE definition.
TEST(Safetensors, F16AndBF16DecodeExactlyForAllBitPatterns) {
  ScratchDir scratch("halfs");
  const std::string& dir = scratch.path;
  std::string data(2 * 65536, '\0');
  for (uint32_t b = 0; b < 65536; ++b) {
    data[2 * b] = static_cast<char>(b & 0xff);
    data[2 * b + 1] = static_cast<char>(b >> 8);
  }
  auto reference = [](uint32_t b, int exp_bits, int man_bits) {
    const uint32_t sign = b >> (exp_bits + man_bits), exp = (b >> man_bits) & ((1u << exp_bits) - 1),
                   man = b & ((1u << man_bits) - 1);
    const int bias = (1 << (exp_bits - 1)) - 1;
    double mag;
    if (exp == (1u << exp_bits) - 1) mag = man ? NAN : INFINITY;
    else if (exp == 0) mag = std::ldexp(static_cast<double>(man), 1 - bias - man_bits);
    else mag = std::ldexp(1.0 + std::ldexp(static_cast<double>(man), -man_bits), static_cast<int>(exp) - bias);
    return sign ? -mag : mag;
  };
  for (const auto& [dt, exp_bits, man_bits] : {std::tuple{"F16", 5, 10}, std::tuple{"BF16", 8, 7}}) {
    const std::string path = dir + "/" + dt + ".safetensors";
    write_bytes_plain(path, raw_file(std::string("{\"x\":{\"dtype\":\"") + dt +
                                         "\",\"shape\":[65536],\"data_offsets\":[0,131072]}}",
                                     0) +
                                data);
    SafetensorsFile f = SafetensorsFile::open(path);
    std::vector<double> want(65536);
    std::vector<float> want32(65536);
    for (uint32_t b = 0; b < 65536; ++b) {
      want[b] = reference(b, exp_bits, man_bits);
      want32[b] = static_cast<float>(want[b]);  // exact: every such value is a float32
      ASSERT_EQ(static_cast<double>(want32[b]) == want[b], !std::isnan(want[b]));
    }
    expect_same_values(f.get("x", DType::f64).to_vector<double>(), want, std::string(dt) + " as f64");
    expect_same_values(f.get("x", DType::f32).to_vector<float>(), want32, std::string(dt) + " as f32");
  }
}

TEST(Safetensors, SmallIntegerDtypesWidenToInt64AndUnsupportedOnesThrowOnGet) {
  ScratchDir scratch("ints");
  const std::string path = scratch.path + "/x.safetensors";
  const std::string header =
      R"({"i8":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},)"
      R"("u8":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
      R"("i16":{"dtype":"I16","shape":[2],"data_offsets":[4,8]},)"
      R"("flag":{"dtype":"BOOL","shape":[2],"data_offsets":[8,10]},)"
      R"("big":{"dtype":"U64","shape":[1],"data_offsets":[16,24]}})";
  std::string data(24, '\0');
  data[0] = static_cast<char>(0xff);  // i8 -1
  data[1] = 5;
  data[2] = static_cast<char>(0xff);  // u8 255
  data[3] = 7;
  data[4] = static_cast<char>(0x00);  // i16 -32768
  data[5] = static_cast<char>(0x80);
  data[6] = 3;
  data[9] = 1;  // bool [false, true]
  write_bytes_plain(path, u64_le(header.size()) + header + data);
  SafetensorsFile f = SafetensorsFile::open(path);  // the gap at [10, 16) is harmless
  EXPECT_EQ(f.get("i8", DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{-1, 5}));
  EXPECT_EQ(f.get("u8", DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{255, 7}));
  EXPECT_EQ(f.get("i16", DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{-32768, 3}));
  EXPECT_EQ(f.get("flag", DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
  EXPECT_THROW_MSG(f.get("big"), IOError, path.c_str(), "'big'", "U64");
}

// ---------------------------------------------------------------- corrupt files

TEST(Safetensors, MissingEmptyAndShortFilesAreIOErrors) {
  ScratchDir scratch("short");
  const std::string& dir = scratch.path;
  const std::string absent = dir + "/absent.safetensors";
  EXPECT_THROW_MSG(SafetensorsFile::open(absent), IOError, absent.c_str(), "cannot open");
  EXPECT_THROW_MSG(SafetensorsFile::open(dir), IOError, dir.c_str(), "not a regular file");
  write_bytes_plain(dir + "/empty.safetensors", "");
  EXPECT_THROW_MSG(SafetensorsFile::open(dir + "/empty.safetensors"), IOError, "empty.safetensors", "empty");
  write_bytes_plain(dir + "/five.safetensors", std::string("\x10\0\0\0\0", 5));
  EXPECT_THROW_MSG(SafetensorsFile::open(dir + "/five.safetensors"), IOError, "five.safetensors", "5 bytes",
                   "shorter than the 8-byte");
}

TEST(Safetensors, BadHeaderLengthsAreIOErrors) {
  ScratchDir scratch("len");
  const std::string& dir = scratch.path;
  write_bytes_plain(dir + "/huge.safetensors", u64_le(uint64_t{1} << 62) + "{}");
  EXPECT_THROW_MSG(SafetensorsFile::open(dir + "/huge.safetensors"), IOError, "huge.safetensors", "absurdly large");
  write_bytes_plain(dir + "/past.safetensors", u64_le(1000) + "{}      ");
  EXPECT_THROW_MSG(SafetensorsFile::open(dir + "/past.safetensors"), IOError, "past.safetensors", "header length 1000",
                   "past the end");
}

TEST(Safetensors, TruncatedFileNamesTheCutTensor) {
  ScratchDir scratch("trunc");
  const std::string& dir = scratch.path;
  const std::string path = dir + "/x.safetensors";
  save_safetensors(path, {{"first", ones({4})}, {"last", ones({4})}});
  std::string bytes = read_bytes(path);
  write_bytes_plain(path, bytes.substr(0, bytes.size() - 3));
  EXPECT_THROW_MSG(SafetensorsFile::open(path), IOError, path.c_str(), "'last'", "past the end of the data");
  // Cut inside the header: the stated header length now runs past the end of the file.
  write_bytes_plain(path, bytes.substr(0, 8 + 20));
  EXPECT_THROW_MSG(SafetensorsFile::open(path), IOError, path.c_str(), "header length", "past the end");
  // A header length that stops halfway through the JSON text.
  const uint64_t real_n = bytes.size() - 8 - 2 * 16;
  write_bytes_plain(path, u64_le(real_n / 2) + bytes.substr(8));
  EXPECT_THROW_MSG(SafetensorsFile::open(path), IOError, path.c_str(), "not valid JSON");
}

// Each malformed header: the message names the file, the tensor at fault, and the problem.
TEST(Safetensors, MalformedHeadersAreIOErrorsNamingFileAndTensor) {
  ScratchDir scratch("malformed");
  const std::string& dir = scratch.path;
  struct Case {
    const char* label;
    std::string header;
    size_t data_bytes;
    std::vector<std::string> fragments;
  };
  const std::string ok_w = R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
  const std::vector<Case> cases = {
      {"badjson", R"({"w": {"dtype": "F32",)", 16, {"not valid JSON"}},
      {"notjson", "hello world", 0, {"not valid JSON"}},
      {"array", "[1, 2, 3]", 0, {"not a JSON object", "array"}},
      {"entry_not_object", R"({"w": 5})", 0, {"'w'", "not an object"}},
      {"no_dtype", R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8, {"'w'", "no \"dtype\""}},
      {"no_shape", R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8, {"'w'", "no \"shape\""}},
      {"no_offsets", R"({"w":{"dtype":"F32","shape":[2]}})", 8, {"'w'", "no \"data_offsets\""}},
      {"dtype_number", R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8, {"'w'", "dtype is not a string"}},
      {"unknown_dtype", R"({"w":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}})", 8,
       {"'w'", "unknown dtype 'F128'"}},
      {"shape_string", R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8, {"'w'", "shape is not a list"}},
      {"negative_dim", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
       {"'w'", "negative dimension -2"}},
      {"float_dim", R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8, {"'w'", "non-integer"}},
      {"huge_shape", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8,
       {"'w'", "too large"}},
      {"offsets_three", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", 8, {"'w'", "data_offsets"}},
      {"offsets_negative", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8, {"'w'", "data_offsets"}},
      {"offsets_reversed", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, {"'w'", "begin > end"}},
      {"offsets_past_end", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8,
       {"'w'", "[8, 16]", "past the end of the data", "8 bytes"}},
      {"lying_size", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16,
       {"'w'", "got 12 bytes", "expected 16", "F32 [2, 2]"}},
      {"lying_dtype", R"({"w":{"dtype":"F64","shape":[2,2],"data_offsets":[0,16]}})", 16,
       {"'w'", "got 16 bytes", "expected 32"}},
      {"overlap", "{" + ok_w + R"(,"v":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16,
       {"'w'", "'v'", "overlap"}},
      {"duplicate", "{" + ok_w + "," + ok_w + "}", 16, {"duplicate tensor name 'w'"}},
      {"duplicate_key", R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8,
       {"'w'", "repeats key 'dtype'"}},
      {"metadata_number", "{\"__metadata__\":{\"epochs\":3}," + ok_w + "}", 16,
       {"__metadata__", "'epochs'", "not a string"}},
      {"metadata_list", "{\"__metadata__\":[\"a\"]," + ok_w + "}", 16, {"__metadata__", "not an object"}},
  };
  for (const Case& c : cases) {
    const std::string path = dir + "/" + c.label + ".safetensors";
    write_bytes_plain(path, raw_file(c.header, c.data_bytes));
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << c.label << ": expected IOError";
    } catch (const IOError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << c.label << ": '" << msg << "' lacks the path";
      for (const std::string& frag : c.fragments)
        EXPECT_NE(msg.find(frag), std::string::npos) << c.label << ": '" << msg << "' lacks '" << frag << "'";
      EXPECT_EQ(msg.find('\n'), std::string::npos) << c.label << ": message is not one line";
    }
  }
}

TEST(Safetensors, SpacePaddedAndUnpaddedValidHeadersOpen) {
  ScratchDir scratch("padding");
  const std::string& dir = scratch.path;
  const std::string h = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})";
  for (const std::string& header : {h, h + "      ", h + std::string(1, ' ')}) {
    const std::string path = dir + "/p" + std::to_string(header.size()) + ".safetensors";
    std::string bytes = u64_le(header.size()) + header + std::string("\0\0\x80\x3f", 4);  // 1.0f
    write_bytes_plain(path, bytes);
    SafetensorsFile f = SafetensorsFile::open(path);
    EXPECT_EQ(f.get("w").item(), 1.0);
    EXPECT_EQ(f.get("e").numel(), 0);  // an empty tensor shares its offset with "w" without overlapping
  }
}

// ---------------------------------------------------------------- atomic writes

TEST(AtomicFile, FailingWriterLeavesExistingFileAndNoTempFile) {
  ScratchDir scratch("atomic");
  const std::string& dir = scratch.path;
  const std::string path = dir + "/metrics.txt";
  write_text_atomic(path, "old content\n");
  EXPECT_EQ(read_bytes(path), "old content\n");
  try {
    write_file_atomic(path, [&](std::FILE* f) {
      write_bytes(f, "half of the new", 15, path);
      throw std::runtime_error("writer gave up");
    });
    ADD_FAILURE() << "expected the writer's exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "writer gave up");  // propagated unchanged
  }
  EXPECT_EQ(read_bytes(path), "old content\n");
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"metrics.txt"}));

  // A writer that fails before any target exists leaves nothing at all.
  EXPECT_THROW(write_file_atomic(dir + "/new.txt", [](std::FILE*) { throw ValueError("no"); }), ValueError);
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"metrics.txt"}));

  write_text_atomic(path, "new\n");
  EXPECT_EQ(read_bytes(path), "new\n");
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"metrics.txt"}));
}

TEST(AtomicFile, UnwritableDirectoryIsAnIOErrorNamingThePath) {
  ScratchDir scratch("nodir");
  const std::string path = scratch.path + "/missing/sub/x.safetensors";
  EXPECT_THROW_MSG(save_safetensors(path, {{"w", ones({1})}}), IOError, path.c_str());
  EXPECT_THROW_MSG(write_text_atomic(path, "x"), IOError, path.c_str(), "Hint:");
}

TEST(Safetensors, OverwriteIsAtomicAndOpenFilesKeepTheirSnapshot) {
  ScratchDir scratch("overwrite");
  const std::string& dir = scratch.path;
  const std::string path = dir + "/ckpt.safetensors";
  save_safetensors(path, {{"w", full({3}, 1.0)}});
  SafetensorsFile before = SafetensorsFile::open(path);
  save_safetensors(path, {{"w", full({3}, 2.0)}, {"extra", ones({1})}});
  // The rename gives the path a new inode; the old mapping still reads the old tensor.
  EXPECT_EQ(before.get("w").to_vector<float>(), (std::vector<float>{1, 1, 1}));
  SafetensorsFile after = SafetensorsFile::open(path);
  EXPECT_EQ(after.get("w").to_vector<float>(), (std::vector<float>{2, 2, 2}));
  EXPECT_EQ(after.size(), 2u);
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"ckpt.safetensors"}));
}
