// WordTokenizer: lower-case, split into words and single symbols, look up ids (see the header).
#include "data/word_tokenizer.h"

#include "core/error.h"
#include "data/clip_tokenizer.h"
#include "data/unicode_tables.h"

namespace peft {

namespace {

bool is_word_char(char32_t c) {
  const unicode::CharClass cls = unicode::clip_char_class(c);
  return cls == unicode::CharClass::letter || cls == unicode::CharClass::number;
}

bool is_separator(char32_t c) {
  return unicode::is_python_space(c) || unicode::clip_char_class(c) == unicode::CharClass::space;
}

std::vector<int64_t> make_row(std::vector<int64_t> ids, int64_t sot, int64_t eot, int64_t context_length) {
  if (context_length < 1)
    throw ValueError("WordTokenizer::tokenize: context_length must be positive (got " +
                     std::to_string(context_length) + ", expected >= 1). Hint: the tiny CLIP config's context_length");
  ids.insert(ids.begin(), sot);
  ids.push_back(eot);
  if (static_cast<int64_t>(ids.size()) > context_length) {  // like clip.tokenize(truncate=True)
    ids.resize(static_cast<size_t>(context_length));
    ids.back() = eot;
  }
  return ids;
}

}  // namespace

WordTokenizer::WordTokenizer(const std::vector<std::string>& words) {
  if (words.empty())
    throw ValueError("WordTokenizer: empty vocabulary (got 0 words, expected at least 1). Hint: pass the words of the prompts");
  for (const std::string& w : words) {
    const std::vector<std::string> parts = split(w);
    if (parts.size() != 1)
      throw ValueError("WordTokenizer: vocabulary entry '" + w + "' is not one token (got " +
                       std::to_string(parts.size()) + " tokens, expected 1). Hint: give single words or single symbols");
    const std::string& lw = parts[0];
    const int64_t id = static_cast<int64_t>(words_.size()) + 2;
    if (!ids_.emplace(lw, id).second)
      throw ValueError("WordTokenizer: duplicate vocabulary word '" + lw + "' (entry '" + w +
                       "'). Hint: list each word once; matching ignores case");
    words_.push_back(lw);
  }
}

std::vector<std::string> WordTokenizer::split(const std::string& text) {
  const std::u32string s = clip_text::lower(clip_text::decode_utf8(text));
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    if (is_separator(s[i])) {
      ++i;
    } else if (is_word_char(s[i])) {
      size_t j = i;
      while (j < s.size() && is_word_char(s[j])) ++j;
      out.push_back(clip_text::encode_utf8(s.substr(i, j - i)));
      i = j;
    } else {  // one symbol per token
      out.push_back(clip_text::encode_utf8(s.substr(i, 1)));
      ++i;
    }
  }
  return out;
}

int64_t WordTokenizer::id_of(const std::string& word) const {
  const std::string lw = clip_text::encode_utf8(clip_text::lower(clip_text::decode_utf8(word)));
  const auto it = ids_.find(lw);
  return it == ids_.end() ? unk : it->second;
}

std::vector<int64_t> WordTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const std::string& tok : split(text)) {
    const auto it = ids_.find(tok);
    ids.push_back(it == ids_.end() ? unk : it->second);
  }
  return ids;
}

std::vector<int64_t> WordTokenizer::tokenize_row(const std::string& text, int64_t context_length) const {
  return make_row(encode(text), sot(), eot(), context_length);
}

Tensor WordTokenizer::tokenize(const std::vector<std::string>& texts, int64_t context_length) const {
  if (context_length < 1) make_row({}, sot(), eot(), context_length);  // throws the row's ValueError
  std::vector<int64_t> values;
  values.reserve(texts.size() * static_cast<size_t>(context_length));
  for (const std::string& text : texts) {
    std::vector<int64_t> row = tokenize_row(text, context_length);
    row.resize(static_cast<size_t>(context_length), pad);
    values.insert(values.end(), row.begin(), row.end());
  }
  return from_vector_i64(values, {static_cast<int64_t>(texts.size()), context_length});  // tokens: [K, T]
}

}  // namespace peft
