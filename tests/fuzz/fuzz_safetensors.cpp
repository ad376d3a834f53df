// libFuzzer harness: arbitrary bytes as a .safetensors file. SafetensorsFile::open and get() may
// only ever throw peft::Error subclasses; anything else (a crash, a sanitizer report, another
// exception type escaping) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "core/io/safetensors.h"

namespace {

// open() takes a path: each fuzzing process rewrites its own temp file.
const std::string& temp_path() {
  static const std::string p = "/tmp/peft_fuzz_safetensors_" + std::to_string(::getpid()) + ".safetensors";
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  std::FILE* f = std::fopen(temp_path().c_str(), "wb");
  if (!f) return 0;
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    SafetensorsFile st = SafetensorsFile::open(temp_path());
    (void)st.metadata();
    // A file that opens is consistent (safetensors.h): decoding every tensor must work or throw
    // a library error (unsupported dtype, a float asked for as integer).
    for (const std::string& name : st.names()) {
      const SafetensorsInfo& info = st.info(name);
      try {
        Tensor t = st.get(name, DType::f32);
        if (t.numel() != shape_numel(info.shape)) __builtin_trap();  // get() must honour the header's shape
      } catch (const Error&) {
      }
      try {
        (void)st.get(name, DType::i64);
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
