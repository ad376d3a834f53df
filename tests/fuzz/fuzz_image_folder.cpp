// libFuzzer harness (issue 20): the ImageFolder walker on a generated tree. The fuzzer's bytes
// describe a small folder tree (class folders, file names and contents, empty folders) written
// into a temp dir; the dataset is then opened (scan + header probe of every file) and its first
// images are loaded. It may only throw peft::Error subclasses, never crash or hang.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "data/dataset.h"
#include "data/image.h"

namespace fs = std::filesystem;

namespace {

// Reads bytes from the input; 0 when it is used up.
struct Reader {
  const uint8_t* p;
  size_t n, i = 0;
  uint8_t byte() { return i < n ? p[i++] : 0; }
  bool done() const { return i >= n; }
  std::string bytes(size_t k) {
    k = std::min(k, n - std::min(n, i));
    std::string s(reinterpret_cast<const char*>(p + i), k);
    i += k;
    return s;
  }
};

// A file or folder name from fuzzer bytes: any byte but '/' and NUL, never "." or "..".
std::string name_from(Reader& r) {
  const size_t len = 1 + r.byte() % 12;
  std::string s;
  for (size_t k = 0; k < len; ++k) {
    char ch = static_cast<char>(r.byte());
    if (ch == '/' || ch == '\0') ch = '_';
    s.push_back(ch);
  }
  if (s == "." || s == "..") s += "x";
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  static const fs::path root = fs::temp_directory_path() / ("peft_fuzz_folder_" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root, ec);
  Reader r{data, size};
  static const char* kExt[] = {".png", ".jpg", ".jpeg", ".bmp", ".PNG", ".txt", "", ".JPG"};
  for (int entries = 0; entries < 24 && !r.done(); ++entries) {
    const uint8_t op = r.byte();
    const fs::path cls = root / ("c" + std::to_string(op & 3));
    fs::create_directories(cls, ec);
    switch ((op >> 2) & 3) {
      case 0:  // an empty folder (a class, or a folder inside a class)
        fs::create_directories((op & 16) ? root / name_from(r) : cls / name_from(r), ec);
        break;
      case 1:  // a file at the root (not a class folder)
        std::ofstream(root / name_from(r), std::ios::binary) << r.bytes(r.byte());
        break;
      default: {  // an image file (maybe) in a class folder
        const std::string name = name_from(r) + kExt[(op >> 4) & 7];
        const size_t len = static_cast<size_t>(r.byte()) << (op >> 7 ? 4 : 0);
        const std::string bytes = r.bytes(len);
        // As in fuzz_image: a 35-byte TGA can claim up to the decoder's 2^26-pixel limit, and stb
        // then fills that many pixels (6 s per input under ASan, a libFuzzer slow unit). Files
        // claiming more than 2^20 pixels take the same paths with larger loops: not written.
        int64_t h = 0, w = 0;
        if (data::probe_image_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &h, &w) &&
            h * w > (int64_t{1} << 20))
          break;
        std::ofstream(cls / name, std::ios::binary) << bytes;
      }
    }
  }
  try {
    data::Preprocess pre;
    pre.size = 16;
    auto ds = data::open_dataset(root.string(), data::Split::train, pre, 3, 0, 0);
    for (int64_t i = 0; i < std::min<int64_t>(ds->size(), 3); ++i) (void)ds->load(i);
  } catch (const Error&) {
  }
  fs::remove_all(root, ec);
  return 0;
}
