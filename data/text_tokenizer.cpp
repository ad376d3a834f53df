// The CLIP text tokenizers by name, the default BPE vocabulary and prompt files.
#include "data/text_tokenizer.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/small_file.h"
#include "data/clip_tokenizer.h"
#include "data/procedural.h"
#include "data/word_tokenizer.h"

namespace peft::data {

std::string default_bpe_vocab() {
  if (const char* env = std::getenv("PEFT_CLIP_VOCAB"); env && *env) return env;
#ifdef PEFT_ASSETS_DIR
  const std::string committed = std::string(PEFT_ASSETS_DIR) + "/clip/bpe_simple_vocab_16e6.txt.gz";
  std::error_code ec;
  if (std::filesystem::exists(committed, ec)) return committed;
#endif
  return "";
}

TextTokenizer::TextTokenizer(const TokenizerSpec& c, const std::string& vocab_arg) : spec_(c) {
  const std::string vocab_path = vocab_arg.empty() && c.kind != "procedural" ? default_bpe_vocab() : vocab_arg;
  if (c.kind == "procedural") {
    words_ = std::make_shared<WordTokenizer>(procedural_vocabulary());
    if (words_->vocab_size() > c.vocab_size)
      throw ValueError(fmt::format("clip: text.vocab_size {} is smaller than the procedural word tokenizer's {} ids",
                                   c.vocab_size, words_->vocab_size()));
  } else {
    if (vocab_path.empty())
      throw ValueError("clip: this model uses the BPE tokenizer and needs --vocab (bpe_simple_vocab_16e6.txt.gz; "
                       "the repository's assets/clip/ copy is not found, or set PEFT_CLIP_VOCAB)");
    bpe_ = std::make_shared<ClipTokenizer>(ClipTokenizer::load(vocab_path));
    if (bpe_->vocab_size() > c.vocab_size)
      throw ValueError(fmt::format("clip: text.vocab_size {} is smaller than the BPE tokenizer's {} ids", c.vocab_size,
                                   bpe_->vocab_size()));
  }
}

TextTokenizer::~TextTokenizer() = default;

std::vector<int64_t> TextTokenizer::row(const std::string& text) const {
  return words_ ? words_->tokenize_row(text, spec_.context_length) : bpe_->tokenize_row(text, spec_.context_length);
}

Tensor TextTokenizer::tokenize(const std::vector<std::string>& texts) const {
  return words_ ? words_->tokenize(texts, spec_.context_length) : bpe_->tokenize(texts, spec_.context_length);
}

std::vector<std::string> read_text_lines(const std::string& path) {
  // Bounded, regular files only (a FIFO hung, issue 20).
  std::istringstream f(read_small_file(path, "prompt file (--texts)", kMaxTextBytes));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    bool blank = true;
    for (char ch : line) blank = blank && (ch == ' ' || ch == '\t' || ch == '\v' || ch == '\f');
    if (!blank) lines.push_back(line);
  }
  if (lines.empty()) throw IOError(fmt::format("{}: the prompt file has no non-blank line (expected one prompt per class)", path));
  return lines;
}

}  // namespace peft::data
