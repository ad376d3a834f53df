// The tokenizer a CLIP text tower's ids come from, chosen by name, and the prompt files it reads.
//   "bpe"        OpenAI's byte-level BPE (data/clip_tokenizer.h), needs the merges file;
//   "procedural" WordTokenizer over procedural_vocabulary(): no file, a small vocabulary (the
//                built-in tiny CLIP of `peft clip-demo`).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft {
class WordTokenizer;
class ClipTokenizer;
}  // namespace peft

namespace peft::data {

struct TokenizerSpec {
  std::string kind = "bpe";  // bpe | procedural
  int64_t vocab_size = 49408, context_length = 77;
};

// The BPE merges file used when no --vocab is given: $PEFT_CLIP_VOCAB, else the copy committed in
// the repository (assets/clip/bpe_simple_vocab_16e6.txt.gz); "" when neither exists.
std::string default_bpe_vocab();

// For "bpe", `vocab_path` is the merges file (empty: default_bpe_vocab(); ValueError naming --vocab
// when there is none). ValueError when the tokenizer's ids do not fit vocab_size.
class TextTokenizer {
 public:
  TextTokenizer(const TokenizerSpec& spec, const std::string& vocab_path);
  ~TextTokenizer();
  // [sot] ids [eot], truncated to the context length with eot last (no padding).
  std::vector<int64_t> row(const std::string& text) const;
  // tokens [K, context_length] int64, zero-padded.
  Tensor tokenize(const std::vector<std::string>& texts) const;
  const TokenizerSpec& spec() const { return spec_; }

 private:
  TokenizerSpec spec_;
  std::shared_ptr<WordTokenizer> words_;
  std::shared_ptr<ClipTokenizer> bpe_;
};

// Reads a --texts file: one prompt per line (UTF-8), blank / whitespace-only lines skipped.
// Throws IOError naming the file when it is missing or holds no prompt.
std::vector<std::string> read_text_lines(const std::string& path);

}  // namespace peft::data
