// Regressions found by tests/fuzz/fuzz_image: inputs that crashed or corrupted memory in the
// decoder, now rejected with an IOError naming the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/dataset.h"
#include "data/image.h"
#include "tests/testing.h"

namespace peft::data {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> from_hex(const std::string& h) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

// A JPEG whose DHT segment declares more than 256 Huffman codes: stb_image 2.27 wrote past its
// 257-entry size table (UBSan: index 257 out of bounds in stbi__build_huffman).
const std::string kHuffmanOverflowJpeg =
    "ffd8ffe000104a46494600010100000100010000ffdb0043000201010101010201010102020202020403020202020504"
    "040304060506060605060606070908060709070606080b08090a0a0a0a0a06080b0c0b0a0c090a0a0affdb0043010202"
    "02020202050303050a0706070a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"
    "0a0a0a0a0a0a0a0a0a0a0a0a0a0affc00011080008000803011100021101031101ffc4001f000708090a0bffc400b511"
    "00020102040403040705040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0"
    "156272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a636465666768"
    "696a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
    "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c03010002110311003900"
    "e27e13fecdff00ea89b0f4fe1afb3f133c52f8fdff00c4e2f0738cff0087ef763fffd9";

// The same overflow behind leading 0xFF fill bytes, which stb accepts before the SOI marker.
const std::string kHuffmanOverflowJpegFill =
    "ffffffffffffffffffffffffffd8ffe000104a46494600010100000100010000ffdb0043000201010101010201010102"
    "020202020403020202020504040304060506060605060606070908060709070606080b08090a0a0a0a0a06080b0c0b0a"
    "0c090a0a0affdb004301020202020202050303050a0706070a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0ad8"
    "d8d8d8d8d8d80a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0affc000110800080008030111000211"
    "01031101ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b510000201030302"
    "0403050504040000017d01020300041105122130410613516107227114328191a1082342b1c11552d1f0243362728209"
    "0a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a7374757677"
    "78797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2"
    "d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc4001f0100030101010101ffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff0101010100000000000001020304050607"
    "08090a0bffc400b511000201020404010000000000003402770001f6f7f8f9faffc4001f01ffffffffffffffffffffff"
    "ffffffffffffffff1b47a800030101010101010101010000000000000102030405060708090a0bffc40032";

TEST(ImageRegressions, JpegHuffmanOverflowBehindFillBytesIsRejected) {
  auto bytes = from_hex(kHuffmanOverflowJpegFill);
  ASSERT_EQ(bytes.size(), 571u);
  EXPECT_THROW_MSG(decode_image(bytes.data(), bytes.size(), "fill.jpg", 3), IOError, "fill.jpg", "more than 256 codes");
}

TEST(ImageRegressions, JpegHuffmanTableWithTooManyCodesIsRejected) {
  auto bytes = from_hex(kHuffmanOverflowJpeg);
  ASSERT_EQ(bytes.size(), 419u);
  for (int64_t c : {int64_t{1}, int64_t{3}})
    EXPECT_THROW_MSG(decode_image(bytes.data(), bytes.size(), "evil.jpg", c), IOError, "evil.jpg",
                     "more than 256 codes");
}

// 244 bytes whose TGA header claims a huge image: stb allocated it and decoded for > 25 s.
const std::string kHugeTga =
    "89000a500a3842505300000d4940d8ff080a0a0a0a0a0a0afec0003011080008000803014c00021101031101ffc4001f"
    "0001010101010000000003020403050504040000017d0102031241510761711322328108144291a1b1c109233652f015"
    "6272d10a1624e034e125f11718191a262728292a35363738383a4344455d4695969798999aa2a3a4a5a6ffffffffffff"
    "ffd8ffffd8ffe000104a46494600010100000100010000ffdb004300020105e00010010100a7a8a9aaffd8ffe000104a"
    "46494600010100000100010000ffdb004300020105e00010010100a7a8a9aab2b3b4b5b694f50089504e470d0d444852"
    "1a4e6844";

TEST(ImageRegressions, HeaderClaimingAGigapixelImageIsRejectedQuickly) {
  auto bytes = from_hex(kHugeTga);
  ASSERT_EQ(bytes.size(), 244u);
  EXPECT_THROW_MSG(decode_image(bytes.data(), bytes.size(), "huge.tga", 3), IOError, "huge.tga", "too large", "pixels");
}

// 126 bytes of BMP whose header says 27 x 0 pixels: stb decodes it into an empty buffer, and the
// image used to come back with H = 0 (found by CI's fuzz run).
const std::string kZeroHeightBmp =
    "424d760000000000000036000000280000001b00000000000000010018000000000040000000c40e0000c40e00000000"
    "000000000000e9aa59edb27f7b7180454d4549009a003b043b2cde51327a781c4ed079a64000e8b845a94ecd0a7d3d42"
    "f01d27b61300c2825f1b00000000000000ebcfd921a30f82d9d710bdf800";

TEST(ImageRegressions, BmpWithZeroHeightIsRejected) {
  auto bytes = from_hex(kZeroHeightBmp);
  ASSERT_EQ(bytes.size(), 126u);
  for (int64_t c : {int64_t{1}, int64_t{3}})
    EXPECT_THROW_MSG(decode_image(bytes.data(), bytes.size(), "flat.bmp", c), IOError, "flat.bmp", "empty image");
}

TEST(ImageRegressions, ProbeImageMemoryReadsHeadersAndRejectsBadOnes) {
  auto flat = from_hex(kZeroHeightBmp);
  EXPECT_FALSE(probe_image_memory(flat.data(), flat.size()));
  auto evil = from_hex(kHuffmanOverflowJpeg);
  EXPECT_FALSE(probe_image_memory(evil.data(), evil.size()));  // never reaches stb's Huffman bug
  auto huge = from_hex(kHugeTga);
  int64_t H = 0, W = 0;
  EXPECT_TRUE(probe_image_memory(huge.data(), huge.size(), &H, &W));
  EXPECT_GT(H * W, int64_t{1} << 26);  // the size decode_image refuses
  std::ifstream f(PEFT_SOURCE_DIR "/tests/fixtures/images/smooth.jpg", std::ios::binary);
  std::vector<uint8_t> jpg((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  int64_t C = 0;
  ASSERT_TRUE(probe_image_memory(jpg.data(), jpg.size(), &H, &W, &C));
  Image img = decode_image(jpg.data(), jpg.size(), "smooth.jpg", 3);
  EXPECT_EQ(H, img.H);
  EXPECT_EQ(W, img.W);
  EXPECT_EQ(C, 3);
}

TEST(ImageRegressions, ProbeAndImageFolderRejectItToo) {
  // stbi_info parses the Huffman tables of a JPEG header as well.
  fs::path d = fs::temp_directory_path() / ("peft_img_regr_" + std::to_string(::getpid()));
  fs::create_directories(d / "a");
  auto bytes = from_hex(kHuffmanOverflowJpeg);
  std::ofstream(d / "a" / "evil.jpg", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  EXPECT_FALSE(probe_image((d / "a" / "evil.jpg").string()));
  EXPECT_THROW_MSG(load_image((d / "a" / "evil.jpg").string()), IOError, "evil.jpg", "Huffman");
  EXPECT_THROW_MSG(ImageFolder(d.string(), 8), IOError, "evil.jpg", "not a readable image");
  fs::remove_all(d);
}

TEST(ImageRegressions, ValidJpegStillDecodes) {
  // The check walks the markers of real JPEGs without rejecting them.
  const std::string path = PEFT_SOURCE_DIR "/tests/fixtures/images/smooth.jpg";
  EXPECT_TRUE(probe_image(path));
  Image img = load_image(path, 3);
  EXPECT_GT(img.H, 0);
  EXPECT_EQ(img.C, 3);
}

// Found by CI's fuzz run (tests/fuzz/corpus/image/pnm_huge_width.ppm): a binary PPM whose width
// has 35 digits; stb_image 2.27 accumulates it into an int (signed overflow, UBSan aborts).
TEST(ImageRegressions, PnmHeaderNumberTooLargeIsRejected) {
  std::string ppm = "P6" + std::string(35, '6') + "\n\x1a\xba\xf7\xed\x10";
  const auto* b = reinterpret_cast<const uint8_t*>(ppm.data());
  EXPECT_FALSE(probe_image_memory(b, ppm.size()));
  EXPECT_THROW(decode_image(b, ppm.size(), "huge.ppm"), IOError);
  // a sane PPM still decodes: 2 x 1 pixels
  std::string ok = "P6\n# a comment\n2 1\n255\n";
  ok += std::string("\xff\x00\x00\x00\xff\x00", 6);
  Image img = decode_image(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "ok.ppm");
  EXPECT_EQ(img.W, 2);
  EXPECT_EQ(img.H, 1);
  const std::string path = (std::filesystem::temp_directory_path() / ("peft_huge_" + std::to_string(::getpid()) + ".ppm")).string();
  std::ofstream(path, std::ios::binary) << ppm;
  EXPECT_FALSE(probe_image(path));
  std::filesystem::remove(path);
}


// Found by CI's fuzz run (tests/fuzz/corpus/image/jpeg_undefined_ac_table.jpg): a scan that uses
// an AC Huffman table no DHT defined (its DHT marker was mutated into APP4). stb_image 2.27 would
// decode with uninitialised tables; the marker walk refuses it first.
TEST(ImageRegressions, JpegScanWithUndefinedHuffmanTableIsRejected) {
  const std::string path = std::string(PEFT_SOURCE_DIR) + "/tests/fuzz/corpus/image/jpeg_undefined_ac_table.jpg";
  std::ifstream f(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 100u);
  EXPECT_FALSE(probe_image_memory(bytes.data(), bytes.size()));
  EXPECT_THROW(decode_image(bytes.data(), bytes.size(), "mutated.jpg"), IOError);
}


// A 60-byte binary PPM whose maxval (3333) selects stb_image's 16-bit path: with too few pixel
// bytes stb 2.27 overreads in stbi__convert_16_to_8 (heap-buffer-overflow, fuzz run of session 7).
// 16-bit PNM is refused before stb sees it.
TEST(ImageRegressions, SixteenBitPnmIsRefusedBeforeStbOverreads) {
  auto bytes = from_hex("5036360b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b33330b33333333690000000000000036363636363636363037ffffffffffffffff");
  ASSERT_EQ(bytes.size(), 60u);
  EXPECT_THROW_MSG(decode_image(bytes.data(), bytes.size(), "deep.ppm", 3), IOError, "deep.ppm", "16-bit PNM");
}


// A 92-byte PNG whose second IDAT chunk declares 0x50610000 bytes: stb_image 2.27 reallocated its
// IDAT buffer to 2 GiB before reading (libFuzzer out-of-memory in CI's fuzz run after session 8).
// A chunk that claims more bytes than the file has is refused before stb sees it.
TEST(ImageRegressions, PngChunkLongerThanTheFileIsRefusedBeforeStbAllocates) {
  auto bytes = from_hex(
      "89504e470d0a1a0a0000000d49484452000000030000005c08060000009d74661a0000002349444154789c6300d96770679c700d0a1a0a00"
      "00000d49484452000000030000005c0806000000204905005061000049444154789c6082");
  ASSERT_EQ(bytes.size(), 92u);
  EXPECT_THROW_MSG(decode_image(bytes.data(), bytes.size(), "long-chunk.png", 3), IOError, "long-chunk.png",
                   "chunk claims more bytes");
}

TEST(ImageRegressions, ValidPngStillDecodesAfterTheChunkCheck) {
  const std::string path = ::testing::TempDir() + "/chunk_ok.png";
  Image img(2, 3, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<float>(i % 7) / 6.0f;
  save_png(img, path);
  std::ifstream f(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Image back = decode_image(bytes.data(), bytes.size(), path, 3);
  EXPECT_EQ(back.H, 2);
  EXPECT_EQ(back.W, 3);
  // the same file cut inside its IDAT is refused in one line, not decoded as garbage
  std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + 45);
  EXPECT_THROW(decode_image(cut.data(), cut.size(), "cut.png", 3), IOError);
}


// A 37-byte top-down BMP (negative height) claiming 4194304 x 71 pixels: stb_image's info call
// reports the height as -71, so the pixel limit saw no size and stb decoded 297 million pixels
// (out of memory in a 10-minute fuzz_image run, session 9). The probe takes |height|.
TEST(ImageRegressions, TopDownBmpIsHeldToThePixelLimit) {
  auto bytes = from_hex("424dbc00000000000000330000002800000000004000b9ffffff01000400000027b6bdf800");
  ASSERT_EQ(bytes.size(), 37u);
  int64_t h = 0, w = 0;
  ASSERT_TRUE(probe_image_memory(bytes.data(), bytes.size(), &h, &w));
  EXPECT_EQ(h, 71);
  EXPECT_EQ(w, 4194304);
  EXPECT_THROW_MSG(decode_image(bytes.data(), bytes.size(), "topdown.bmp", 3), IOError, "topdown.bmp", "too large");
}

}  // namespace
}  // namespace peft::data
