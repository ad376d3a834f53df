// ClipTokenizer: OpenAI CLIP's byte-level BPE tokenizer (clip/simple_tokenizer.py + clip.tokenize
// with truncate=True), bit-exact with the contract of methods.md section 3.
//
// Pipeline of encode(text):
//   UTF-8 decode -> html.unescape twice -> strip -> collapse whitespace runs -> strip -> str.lower
//   -> pre-tokenise (CLIP's regex) -> per piece: special token id, or byte symbols + BPE merges.
// ftfy.fix_text is not applied (methods.md "Tokenizer"). Input that is not valid UTF-8 is decoded like
// Python's bytes.decode('utf-8', errors='replace') (each maximal ill-formed subpart -> U+FFFD).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft {

class ClipTokenizer {
 public:
  // Reads the gzipped merges file (bpe_simple_vocab_16e6.txt.gz). Throws IOError naming the file
  // when it is missing, inflates to more than 64 MiB, not a valid gzip stream, not UTF-8 text with enough merge lines
  // (header + 48894), or a merge line is not two symbols.
  static ClipTokenizer load(const std::string& vocab_gz_path);

  // BPE ids of text, without SOT/EOT and without truncation.
  std::vector<int64_t> encode(const std::string& text) const;
  // [SOT] + encode(text) + [EOT], cut to context_length with the last id forced to EOT; no
  // padding. Throws ValueError when context_length < 1.
  std::vector<int64_t> tokenize_row(const std::string& text, int64_t context_length = 77) const;
  // tokens [K, T=context_length] int64, rows as tokenize_row, zero-padded (id 0 is '!').
  Tensor tokenize(const std::vector<std::string>& texts, int64_t context_length = 77) const;
  // Python's decode: concatenated symbols -> bytes -> UTF-8 (errors='replace'), '</w>' -> ' '.
  // Throws ValueError for an id outside [0, 49408).
  std::string decode(const std::vector<int64_t>& ids) const;

  // Work done by BPE so far (merge candidates taken from its heap, over all calls of this
  // tokenizer and its copies): at most three times the bytes of the pieces encoded, so tests can
  // check that BPE stays linear on long words without timing it (issue 20).
  int64_t bpe_steps() const;

  int64_t vocab_size() const { return 49408; }
  static constexpr int64_t sot = 49406, eot = 49407;
  static constexpr int64_t num_merges = 48894;

  struct Vocab;  // symbol <-> id tables and merge ranks (defined in the .cpp)
  struct Cache;  // memo of BPE results per piece, guarded by a mutex

 private:
  ClipTokenizer() = default;
  // encode, stopping after the piece that brings the ids to max_ids or more (-1: all).
  std::vector<int64_t> encode(const std::string& text, int64_t max_ids) const;
  std::vector<int64_t> bpe(const std::string& piece) const;

  std::shared_ptr<const Vocab> vocab_;
  std::shared_ptr<Cache> cache_;  // shared by copies of one tokenizer; thread-safe
};

// The text-level steps of encode, exposed for tests and for the `tokenize` CLI diagnostics.
namespace clip_text {
// Python html.unescape (once): named HTML5 entities incl. the legacy forms without ';' (longest
// prefix), decimal/hex references with the HTML5 replacements.
std::string html_unescape(const std::string& utf8);
// methods.md "Tokenizer": unescape twice, strip, collapse whitespace runs to ' ', strip, lower.
std::string clean(const std::string& utf8);
// methods.md "Tokenizer": the pre-tokens of an already cleaned text, left to right.
std::vector<std::string> pre_tokenize(const std::string& clean_utf8);

// Helpers shared with WordTokenizer. decode_utf8 replaces ill-formed bytes like Python's
// errors='replace'; lower is Python str.lower (full mapping, final sigma).
std::u32string decode_utf8(const std::string& utf8);
std::string encode_utf8(const std::u32string& text);
std::u32string lower(const std::u32string& text);
}  // namespace clip_text

}  // namespace peft
