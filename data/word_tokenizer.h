// WordTokenizer: a small word-level tokenizer for the built-in tiny CLIP (no vocabulary file).
//
// Ids, for a vocabulary of n words (V = n + 4 = vocab_size()):
//   0        pad (the zero padding of tokenize)
//   1        unk (any word or symbol not in the vocabulary)
//   2..n+1   the words, in the order given to the constructor
//   V-2      sot
//   V-1      eot
// EOT has the largest id, so in every row argmax(token id) is the EOT position, which is how the
// CLIP text tower pools (methods.md "CLIP text tower"). This differs from ClipTokenizer's numbering on purpose.
//
// Splitting: the text is lower-cased (Python str.lower, as in the CLIP tokenizer); a word is a
// maximal run of letters and number characters (Unicode \p{L}, \p{N}); every other
// non-whitespace character is a token of its own ("cat." -> "cat", "."); whitespace separates
// and is dropped. So punctuation can be in the vocabulary ("." is a valid word) or maps to unk.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace peft {

class WordTokenizer {
 public:
  // The vocabulary words, each lower-cased. Throws ValueError for an empty list, a duplicate (after
  // lower-casing) or a word that the splitter would not keep whole ("two words", "a.b", "").
  explicit WordTokenizer(const std::vector<std::string>& words);

  // The tokens of text, as the splitter finds them (lower-cased).
  static std::vector<std::string> split(const std::string& text);
  // Word ids of text, without sot/eot; unknown tokens give unk.
  std::vector<int64_t> encode(const std::string& text) const;
  // [sot] + encode(text) + [eot], cut to context_length with the last id forced to eot; no padding.
  // Throws ValueError when context_length < 1.
  std::vector<int64_t> tokenize_row(const std::string& text, int64_t context_length) const;
  // tokens [K, T=context_length] int64, rows as tokenize_row, zero-padded.
  Tensor tokenize(const std::vector<std::string>& texts, int64_t context_length) const;

  int64_t vocab_size() const { return static_cast<int64_t>(words_.size()) + 4; }
  static constexpr int64_t pad = 0, unk = 1;
  int64_t sot() const { return vocab_size() - 2; }
  int64_t eot() const { return vocab_size() - 1; }
  // The id of a vocabulary word (lower-cased first), or unk.
  int64_t id_of(const std::string& word) const;
  const std::vector<std::string>& words() const { return words_; }

 private:
  std::vector<std::string> words_;                 // lower-cased, in id order from 2
  std::unordered_map<std::string, int64_t> ids_;  // word -> id
};

}  // namespace peft
