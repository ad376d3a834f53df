// CLIP byte-level BPE tokenizer (methods.md section 3): text cleaning, pre-tokenisation, BPE.
#include "data/clip_tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <limits>
#include <mutex>
#include <queue>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "data/unicode_tables.h"

namespace peft {

namespace {

constexpr char32_t kReplacement = 0xFFFD;

// ---- UTF-8 <-> code points

// Decodes like Python's bytes.decode('utf-8', errors='replace'): each maximal ill-formed subpart
// (a bad lead byte, or a lead byte plus the continuation bytes that were still valid) becomes
// one U+FFFD. Returns false in *ok when anything was replaced.
std::u32string utf8_decode(const std::string& s, bool* ok = nullptr) {
  std::u32string out;
  out.reserve(s.size());
  if (ok) *ok = true;
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    int need = 0;  // continuation bytes after the lead
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
    char32_t cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      need = 1, cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      need = 2, cp = b0 & 0x0F;
      if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
      if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      need = 3, cp = b0 & 0x07;
      if (b0 == 0xF0) lo = 0x90;  // no overlong forms
      if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {  // 0x80..0xC1, 0xF5..0xFF never start a character
      out.push_back(kReplacement);
      if (ok) *ok = false;
      ++i;
      continue;
    }
    size_t j = i + 1;
    bool good = true;
    for (int k = 0; k < need; ++k, ++j) {
      const unsigned char lo_k = k == 0 ? lo : 0x80, hi_k = k == 0 ? hi : 0xBF;
      if (j >= n || static_cast<unsigned char>(s[j]) < lo_k || static_cast<unsigned char>(s[j]) > hi_k) {
        good = false;
        break;
      }
      cp = (cp << 6) | (static_cast<unsigned char>(s[j]) & 0x3F);
    }
    if (good) {
      out.push_back(cp);
    } else {
      out.push_back(kReplacement);
      if (ok) *ok = false;
    }
    i = j;  // past the lead and every continuation byte that was valid so far
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(const std::u32string& s, size_t begin = 0, size_t end = std::u32string::npos) {
  std::string out;
  end = std::min(end, s.size());
  for (size_t i = begin; i < end; ++i) utf8_append(out, s[i]);
  return out;
}

// ---- html.unescape

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_ascii_hex(char32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
int hex_value(char32_t c) { return is_ascii_digit(c) ? int(c - '0') : (c >= 'a' ? int(c - 'a' + 10) : int(c - 'A' + 10)); }

// What Python's _replace_charref returns for a numeric reference (num saturated at 0x110000).
void append_numeric_charref(std::u32string& out, uint32_t num) {
  const int32_t fixed = unicode::html_invalid_charref(num);  // 0x00, 0x0D, 0x80..0x9F (cp1252)
  if (fixed >= 0) {
    out.push_back(static_cast<char32_t>(fixed));
  } else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
    out.push_back(kReplacement);
  } else if (!unicode::html_invalid_codepoint(num)) {  // controls and noncharacters vanish
    out.push_back(static_cast<char32_t>(num));
  }
}

// Python's html.unescape on code points. The reference pattern is
//   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
// and a named match that is not an entity falls back to its longest entity prefix (>= 2 chars).
std::u32string html_unescape_u32(const std::u32string& s) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    const size_t j = i + 1;  // first character after '&'
    if (j < n && s[j] == U'#') {
      // Decimal, then hex. Saturating at 0x110000 keeps "too large" without overflow.
      uint32_t num = 0;
      size_t k = j + 1;
      if (k < n && is_ascii_digit(s[k])) {
        for (; k < n && is_ascii_digit(s[k]); ++k) num = std::min<uint32_t>(num * 10 + (s[k] - '0'), 0x110000);
      } else if (k < n && (s[k] == U'x' || s[k] == U'X') && k + 1 < n && is_ascii_hex(s[k + 1])) {
        for (++k; k < n && is_ascii_hex(s[k]); ++k) num = std::min<uint32_t>(num * 16 + hex_value(s[k]), 0x110000);
      } else {  // "&#" not followed by a number: no match, the '&' stays
        out.push_back(s[i++]);
        continue;
      }
      if (k < n && s[k] == U';') ++k;
      append_numeric_charref(out, num);
      i = k;
      continue;
    }
    // Named: 1..32 characters other than \t \n \f space < & # ;, then an optional ';'.
    size_t k = j;
    while (k < n && k - j < 32) {
      const char32_t c = s[k];
      if (c == U'\t' || c == U'\n' || c == U'\f' || c == U' ' || c == U'<' || c == U'&' || c == U'#' || c == U';') break;
      ++k;
    }
    if (k == j) {
      out.push_back(s[i++]);
      continue;
    }
    if (k < n && s[k] == U';') ++k;
    const std::u32string name = s.substr(j, k - j);  // with its ';' when present
    if (const char* value = unicode::html5_entity(utf8_encode(name))) {
      out += utf8_decode(value);
    } else {
      bool found = false;
      for (size_t x = name.size() - 1; x >= 2 && !found; --x) {
        if (const char* v = unicode::html5_entity(utf8_encode(name, 0, x))) {
          out += utf8_decode(v);
          out += name.substr(x);
          found = true;
        }
      }
      if (!found) {
        out.push_back(U'&');
        out += name;
      }
    }
    i = k;
  }
  return out;
}

// ---- strip / whitespace / lower

std::u32string python_strip(const std::u32string& s) {
  size_t b = 0, e = s.size();
  while (b < e && unicode::is_python_space(s[b])) ++b;
  while (e > b && unicode::is_python_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// regex.sub(r'\s+', ' ', s) with the regex module's \s.
std::u32string collapse_whitespace(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (unicode::clip_char_class(s[i]) == unicode::CharClass::space) {
      out.push_back(U' ');
      while (i < s.size() && unicode::clip_char_class(s[i]) == unicode::CharClass::space) ++i;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// Python str.lower: the full per-code-point mapping, plus the one context rule, final sigma:
// U+03A3 becomes U+03C2 when preceded by a cased letter and not followed by one (skipping
// case-ignorable code points both ways), else U+03C3. The context is read from the input.
std::u32string python_lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  char32_t buf[3];
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == 0x03A3) {
      size_t j = i;
      while (j > 0 && unicode::is_case_ignorable(s[j - 1])) --j;
      bool final_sigma = j > 0 && unicode::is_cased(s[j - 1]);
      if (final_sigma) {
        size_t k = i + 1;
        while (k < s.size() && unicode::is_case_ignorable(s[k])) ++k;
        final_sigma = k == s.size() || !unicode::is_cased(s[k]);
      }
      out.push_back(final_sigma ? 0x03C2 : 0x03C3);
      continue;
    }
    const int m = unicode::lower_code_point(s[i], buf);
    out.append(buf, buf + m);
  }
  return out;
}

std::u32string clean_u32(const std::string& utf8) {
  std::u32string t = utf8_decode(utf8);
  t = html_unescape_u32(html_unescape_u32(t));
  t = python_strip(t);
  t = python_strip(collapse_whitespace(t));
  return python_lower(t);
}

// ---- pre-tokenisation

// One character of a literal under IGNORECASE. The regex module folds simply: an ASCII letter
// matches both cases, and 's' also matches U+017F LATIN SMALL LETTER LONG S (so "'\u017F" is a
// contraction piece). tools/reference/gen_unicode_tables.py checks this for every letter of the
// pattern's literals.
bool literal_char_matches(char32_t c, char p) {
  if (c == static_cast<char32_t>(p)) return true;
  if (p >= 'a' && p <= 'z' && c == static_cast<char32_t>(p - 'a' + 'A')) return true;
  return p == 's' && c == 0x017F;
}

// Length of the literal at position i, or 0 when it does not match there.
size_t match_literal(const std::u32string& s, size_t i, const char* lit) {
  size_t k = 0;
  for (; lit[k] != '\0'; ++k)
    if (i + k >= s.size() || !literal_char_matches(s[i + k], lit[k])) return 0;
  return k;
}

// Pieces as code-point ranges [begin, end), in the order of the alternation in methods.md "Tokenizer".
std::vector<std::pair<size_t, size_t>> pre_tokenize_u32(const std::u32string& s) {
  static const char* const kLiterals[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve",
                                          "'m", "'ll", "'d"};
  std::vector<std::pair<size_t, size_t>> pieces;
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    for (const char* lit : kLiterals)
      if ((len = match_literal(s, i, lit)) > 0) break;
    if (len == 0) {
      const unicode::CharClass cls = unicode::clip_char_class(s[i]);
      if (cls == unicode::CharClass::number) {
        len = 1;  // exactly one number character per piece
      } else if (cls == unicode::CharClass::letter || cls == unicode::CharClass::other) {
        while (i + len < s.size() && unicode::clip_char_class(s[i + len]) == cls) ++len;
      }
    }
    if (len == 0) {  // whitespace, or a code point no alternative matches (U+0345): dropped
      ++i;
      continue;
    }
    pieces.emplace_back(i, i + len);
    i += len;
  }
  return pieces;
}

// ---- byte table (methods.md "Tokenizer")

// ORDER: the 188 printable bytes that keep their own code point, then the other 68 bytes.
std::vector<int> byte_order() {
  std::vector<int> keep, rest;
  for (int b = 0; b < 256; ++b) {
    const bool kept = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    (kept ? keep : rest).push_back(b);
  }
  keep.insert(keep.end(), rest.begin(), rest.end());
  return keep;
}

}  // namespace

// ---- tables and cache

struct ClipTokenizer::Vocab {
  std::string byte_symbol[256];                        // UTF-8 of the symbol of each byte
  std::unordered_map<char32_t, int> symbol_byte;       // inverse of byte_symbol
  std::unordered_map<std::string, int64_t> ids;        // symbol string -> id
  std::unordered_map<std::string, int64_t> ranks;      // "left right" -> merge rank
  std::vector<std::string> id_bytes;                   // id -> raw bytes ('</w>' kept as text)
};

struct ClipTokenizer::Cache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int64_t>> pieces;  // piece (UTF-8) -> ids
  static constexpr size_t kMaxEntries = 1 << 16;                 // bounded: cleared when full
  static constexpr size_t kMaxPieceBytes = 256;                  // longer pieces are not memoised
  std::atomic<int64_t> bpe_steps{0};                             // heap entries taken (bpe_steps())
};

namespace {

constexpr size_t kMaxVocabBytes = size_t{64} << 20;

std::string read_gzip(const std::string& path) {
  const std::string op = "ClipTokenizer::load";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw IOError(op + ": cannot read '" + path + "' (file not found or not a regular file). Hint: pass the path of "
                  "bpe_simple_vocab_16e6.txt.gz from openai/CLIP");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw IOError(op + ": cannot open '" + path + "'. Hint: check the file permissions");
  std::string data;
  char buf[1 << 16];
  int got = 0;
  // The vocabulary inflates to 1.3 MiB; a gzip bomb (8.7 MB inflating to 2 GB took 9.8 GB of
  // memory, issue 20) is refused once it passes the cap.
  while ((got = gzread(f, buf, sizeof buf)) > 0) {
    data.append(buf, static_cast<size_t>(got));
    if (data.size() > kMaxVocabBytes) {
      gzclose(f);
      throw IOError(op + ": '" + path + "' inflates to more than " + std::to_string(kMaxVocabBytes >> 20) +
                    " MiB (bpe_simple_vocab_16e6.txt is 1.3 MiB): not a CLIP vocabulary. Hint: pass "
                    "bpe_simple_vocab_16e6.txt.gz from openai/CLIP");
    }
  }
  int err = Z_OK;
  const char* msg = gzerror(f, &err);
  std::string zmsg = msg ? msg : "";
  if (zmsg.rfind(path + ": ", 0) == 0) zmsg.erase(0, path.size() + 2);  // zlib prefixes the path
  const bool direct = gzdirect(f) != 0;
  gzclose(f);
  if (got < 0 || (err != Z_OK && err != Z_STREAM_END))
    throw IOError(op + ": corrupt gzip data in '" + path + "' (zlib: " + zmsg +
                  "). Hint: re-download bpe_simple_vocab_16e6.txt.gz");
  if (direct)
    throw IOError(op + ": '" + path + "' is not gzip-compressed (expected bpe_simple_vocab_16e6.txt.gz). "
                  "Hint: pass the .gz file as distributed with openai/CLIP");
  return data;
}

}  // namespace

ClipTokenizer ClipTokenizer::load(const std::string& vocab_gz_path) {
  const std::string op = "ClipTokenizer::load";
  const std::string text = read_gzip(vocab_gz_path);
  bool utf8_ok = true;
  utf8_decode(text, &utf8_ok);
  if (!utf8_ok)
    throw IOError(op + ": '" + vocab_gz_path + "' is not UTF-8 text. Hint: pass bpe_simple_vocab_16e6.txt.gz");

  // Lines split on '\n' only, like Python's str.split('\n'); line 0 is the version header.
  std::vector<std::string_view> lines;
  const std::string_view all(text);
  for (size_t b = 0; lines.size() <= static_cast<size_t>(num_merges);) {
    const size_t e = all.find('\n', b);
    lines.push_back(all.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b));
    if (e == std::string_view::npos) break;
    b = e + 1;
  }
  if (lines.size() < static_cast<size_t>(num_merges) + 1)
    throw IOError(op + ": '" + vocab_gz_path + "' has too few lines (got " + std::to_string(lines.size()) +
                  ", expected at least " + std::to_string(num_merges + 1) +
                  ": a header and 48894 merges). Hint: pass bpe_simple_vocab_16e6.txt.gz");

  auto vocab = std::make_shared<Vocab>();
  const std::vector<int> order = byte_order();
  for (size_t i = 0; i < order.size(); ++i) {  // kept bytes map to themselves, the others to U+0100..U+0143
    const int b = order[i];
    const char32_t sym = i < 188 ? static_cast<char32_t>(b) : static_cast<char32_t>(0x100 + (i - 188));
    utf8_append(vocab->byte_symbol[b], sym);
    vocab->symbol_byte[sym] = b;
  }

  // Vocabulary in id order (methods.md "Tokenizer").
  std::vector<std::string> symbols;
  symbols.reserve(49408);
  for (int b : order) symbols.push_back(vocab->byte_symbol[b]);
  for (int b : order) symbols.push_back(vocab->byte_symbol[b] + "</w>");
  for (int64_t j = 0; j < num_merges; ++j) {
    const std::string_view line = lines[static_cast<size_t>(j) + 1];
    std::vector<std::string> parts;  // whitespace-separated fields (str.split())
    size_t p = 0;
    while (p < line.size()) {
      while (p < line.size() && (line[p] == ' ' || line[p] == '\t' || line[p] == '\r')) ++p;
      size_t q = p;
      while (q < line.size() && line[q] != ' ' && line[q] != '\t' && line[q] != '\r') ++q;
      if (q > p) parts.emplace_back(line.substr(p, q - p));
      p = q;
    }
    if (parts.size() != 2)
      throw IOError(op + ": '" + vocab_gz_path + "' line " + std::to_string(j + 1) + " is not a merge (got " +
                    std::to_string(parts.size()) + " fields, expected 2). Hint: pass bpe_simple_vocab_16e6.txt.gz");
    vocab->ranks.emplace(parts[0] + " " + parts[1], j);
    symbols.push_back(parts[0] + parts[1]);
  }
  symbols.push_back("<|startoftext|>");
  symbols.push_back("<|endoftext|>");

  vocab->id_bytes.reserve(symbols.size());
  for (size_t id = 0; id < symbols.size(); ++id) {
    if (!vocab->ids.emplace(symbols[id], static_cast<int64_t>(id)).second)
      throw IOError(op + ": '" + vocab_gz_path + "' gives a duplicate vocabulary entry '" + symbols[id] +
                    "' (id " + std::to_string(id) + "). Hint: pass bpe_simple_vocab_16e6.txt.gz");
    std::string raw;  // the bytes behind the symbols; special tokens and '</w>' are plain ASCII
    for (char32_t c : utf8_decode(symbols[id])) {
      const auto it = vocab->symbol_byte.find(c);
      if (it == vocab->symbol_byte.end())
        throw IOError(op + ": '" + vocab_gz_path + "' uses a character that is no byte symbol (U+" +
                      std::to_string(static_cast<uint32_t>(c)) + " in '" + symbols[id] +
                      "'). Hint: pass bpe_simple_vocab_16e6.txt.gz");
      raw.push_back(static_cast<char>(it->second));
    }
    vocab->id_bytes.push_back(std::move(raw));
  }

  ClipTokenizer tok;
  tok.vocab_ = std::move(vocab);
  tok.cache_ = std::make_shared<Cache>();
  return tok;
}

// ---- BPE (methods.md "Tokenizer")

std::vector<int64_t> ClipTokenizer::bpe(const std::string& piece) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    const auto it = cache_->pieces.find(piece);
    if (it != cache_->pieces.end()) return it->second;
  }
  const Vocab& v = *vocab_;
  if (piece.empty()) return {};  // pre-tokenisation never yields one; keeps word.back() valid
  // word: the byte symbols of the piece, with '</w>' glued to the last one, as a linked list.
  const size_t n = piece.size();
  std::vector<std::string> sym(n);
  for (size_t k = 0; k < n; ++k) sym[k] = v.byte_symbol[static_cast<unsigned char>(piece[k])];
  sym.back() += "</w>";
  std::vector<size_t> next(n), prev(n);
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  for (size_t k = 0; k < n; ++k) next[k] = k + 1 < n ? k + 1 : kNone, prev[k] = k > 0 ? k - 1 : kNone;

  // The reference merges, round after round, every non-overlapping occurrence of the adjacent
  // pair of lowest rank, left to right. Rescanning the word each round is quadratic (a 400 KB
  // word took 131 s, issue 20); a heap of (rank, left node) gives the same rounds in
  // O(n log n): all entries of the lowest rank are taken out first and merged in position order
  // (a merged node is longer than either half, so no pair created in a round has its rank, and
  // lower-ranked new pairs wait for the next round, as in the reference).
  using Entry = std::pair<int64_t, size_t>;  // rank, left node (nodes keep their first byte's index)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  int64_t steps = 0;
  auto push_pair = [&](size_t left) {
    if (left == kNone || next[left] == kNone) return;
    const auto it = v.ranks.find(sym[left] + " " + sym[next[left]]);
    if (it != v.ranks.end()) heap.emplace(it->second, left);
  };
  for (size_t k = 0; k + 1 < n; ++k) push_pair(k);
  std::vector<size_t> round;
  while (!heap.empty()) {
    const int64_t rank = heap.top().first;
    round.clear();
    while (!heap.empty() && heap.top().first == rank) round.push_back(heap.top().second), heap.pop();
    steps += static_cast<int64_t>(round.size());
    std::string first, second;  // the pair of this rank, from its first still-valid entry
    for (size_t left : round) {
      const size_t right = next[left];
      if (sym[left].empty() || right == kNone) continue;  // merged into its left neighbour, or now last
      if (first.empty()) {
        const auto it = v.ranks.find(sym[left] + " " + sym[right]);
        if (it == v.ranks.end() || it->second != rank) continue;
        first = sym[left], second = sym[right];
      } else if (sym[left] != first || sym[right] != second) {
        continue;  // stale: a neighbour changed since the entry was pushed
      }
      sym[left] += sym[right];
      sym[right].clear();
      next[left] = next[right];
      if (next[right] != kNone) prev[next[right]] = left;
      push_pair(prev[left]);
      push_pair(left);
    }
  }
  cache_->bpe_steps.fetch_add(steps, std::memory_order_relaxed);
  std::vector<std::string> word;
  for (size_t k = 0; k != kNone; k = next[k]) word.push_back(std::move(sym[k]));

  std::vector<int64_t> ids;
  ids.reserve(word.size());
  for (const std::string& sym : word) ids.push_back(v.ids.at(sym));  // merges are all in the vocab
  if (piece.size() > Cache::kMaxPieceBytes) return ids;  // a long word would pin its bytes in the memo
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->pieces.size() >= Cache::kMaxEntries) cache_->pieces.clear();
  cache_->pieces.emplace(piece, ids);
  return ids;
}

int64_t ClipTokenizer::bpe_steps() const { return cache_->bpe_steps.load(std::memory_order_relaxed); }

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const { return encode(text, -1); }

std::vector<int64_t> ClipTokenizer::encode(const std::string& text, int64_t max_ids) const {
  const std::u32string clean = clean_u32(text);
  std::vector<int64_t> ids;
  for (const auto& [b, e] : pre_tokenize_u32(clean)) {
    // Pieces are encoded independently, so stopping once max_ids are there changes none of them.
    if (max_ids >= 0 && static_cast<int64_t>(ids.size()) >= max_ids) break;
    const std::string piece = utf8_encode(clean, b, e);
    if (piece == "<|startoftext|>") {
      ids.push_back(sot);
    } else if (piece == "<|endoftext|>") {
      ids.push_back(eot);
    } else {
      const std::vector<int64_t> p = bpe(piece);
      ids.insert(ids.end(), p.begin(), p.end());
    }
  }
  return ids;
}

std::vector<int64_t> ClipTokenizer::tokenize_row(const std::string& text, int64_t context_length) const {
  if (context_length < 1)
    throw ValueError("ClipTokenizer::tokenize: context_length must be positive (got " +
                     std::to_string(context_length) + ", expected >= 1). Hint: CLIP uses 77");
  std::vector<int64_t> row{sot};
  const std::vector<int64_t> ids = encode(text, context_length - 1);  // only these can be kept
  row.insert(row.end(), ids.begin(), ids.end());
  row.push_back(eot);
  if (static_cast<int64_t>(row.size()) > context_length) {  // truncate=True
    row.resize(static_cast<size_t>(context_length));
    row.back() = eot;
  }
  return row;
}

Tensor ClipTokenizer::tokenize(const std::vector<std::string>& texts, int64_t context_length) const {
  if (context_length < 1) tokenize_row("", context_length);  // throws the ValueError of a row
  const auto K = static_cast<int64_t>(texts.size());
  std::vector<int64_t> values;
  values.reserve(static_cast<size_t>(K * std::max<int64_t>(context_length, 0)));
  for (const std::string& text : texts) {
    std::vector<int64_t> row = tokenize_row(text, context_length);
    row.resize(static_cast<size_t>(context_length), 0);  // zero padding
    values.insert(values.end(), row.begin(), row.end());
  }
  return from_vector_i64(values, {K, context_length});  // tokens: [K, T]
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string raw;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size())
      throw ValueError("ClipTokenizer::decode: id out of range (got " + std::to_string(id) +
                       ", expected [0, 49408)). Hint: decode ids produced by encode/tokenize");
    raw += vocab_->id_bytes[static_cast<size_t>(id)];
  }
  const std::string text = utf8_encode(utf8_decode(raw));  // errors='replace'
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "</w>") == 0) {
      out.push_back(' ');
      i += 4;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

// ---- exposed text steps

namespace clip_text {

std::string html_unescape(const std::string& utf8) { return utf8_encode(html_unescape_u32(utf8_decode(utf8))); }

std::string clean(const std::string& utf8) { return utf8_encode(clean_u32(utf8)); }

std::u32string decode_utf8(const std::string& utf8) { return utf8_decode(utf8); }
std::string encode_utf8(const std::u32string& text) { return utf8_encode(text); }
std::u32string lower(const std::u32string& text) { return python_lower(text); }

std::vector<std::string> pre_tokenize(const std::string& clean_utf8) {
  const std::u32string s = utf8_decode(clean_utf8);
  std::vector<std::string> out;
  for (const auto& [b, e] : pre_tokenize_u32(s)) out.push_back(utf8_encode(s, b, e));
  return out;
}

}  // namespace clip_text

}  // namespace peft
