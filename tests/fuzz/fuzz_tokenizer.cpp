// libFuzzer harness: arbitrary bytes (valid UTF-8 or not) through the CLIP BPE tokenizer with the
// real vocabulary. encode/tokenize_row may only throw peft::Error subclasses; every id must be a
// valid token ("<|startoftext|>" in the text is the SOT id itself) and decode must accept what encode produced.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "data/clip_tokenizer.h"

#ifndef PEFT_CLIP_VOCAB
#error "PEFT_CLIP_VOCAB (path of bpe_simple_vocab_16e6.txt.gz) must be defined by the build"
#endif

namespace {

// Loaded once per process (a few hundred ms); PEFT_CLIP_VOCAB env var overrides the build path.
const peft::ClipTokenizer& tokenizer() {
  static const peft::ClipTokenizer tok = [] {
    const char* env = std::getenv("PEFT_CLIP_VOCAB");
    return peft::ClipTokenizer::load(env ? env : PEFT_CLIP_VOCAB);
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  try {
    (void)tokenizer();
  } catch (const peft::Error& e) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", e.what());
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace peft;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    std::vector<int64_t> ids = tokenizer().encode(text);
    for (int64_t id : ids)
      if (id < 0 || id >= tokenizer().vocab_size()) __builtin_trap();
    (void)tokenizer().decode(ids);
    std::vector<int64_t> row = tokenizer().tokenize_row(text, 77);
    if (row.empty() || row.size() > 77 || row.front() != ClipTokenizer::sot || row.back() != ClipTokenizer::eot)
      __builtin_trap();
  } catch (const Error&) {
  }
  return 0;
}
