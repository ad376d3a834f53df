// WordTokenizer: id layout (pad 0, unk 1, words from 2, sot V-2, eot V-1), splitting, rows, errors.
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/word_tokenizer.h"
#include "tests/testing.h"

namespace peft {
namespace {

WordTokenizer tiny() { return WordTokenizer({"a", "photo", "of", "Cat", "dog", "."}); }

TEST(WordTokenizer, IdLayout) {
  const WordTokenizer tok = tiny();
  EXPECT_EQ(tok.vocab_size(), 10);
  EXPECT_EQ(WordTokenizer::pad, 0);
  EXPECT_EQ(WordTokenizer::unk, 1);
  EXPECT_EQ(tok.id_of("a"), 2);
  EXPECT_EQ(tok.id_of("cat"), 5);  // lower-cased at construction
  EXPECT_EQ(tok.id_of("CAT"), 5);  // and at lookup
  EXPECT_EQ(tok.id_of("."), 7);
  EXPECT_EQ(tok.id_of("bird"), WordTokenizer::unk);
  EXPECT_EQ(tok.sot(), 8);
  EXPECT_EQ(tok.eot(), 9);
  EXPECT_EQ(tok.words(), (std::vector<std::string>{"a", "photo", "of", "cat", "dog", "."}));
}

TEST(WordTokenizer, SplitsOnWhitespaceAndPunctuation) {
  EXPECT_EQ(WordTokenizer::split("A photo of a CAT."),
            (std::vector<std::string>{"a", "photo", "of", "a", "cat", "."}));
  EXPECT_EQ(WordTokenizer::split("  it's\tdog-like,\n2024!! "),
            (std::vector<std::string>{"it", "'", "s", "dog", "-", "like", ",", "2024", "!", "!"}));
  EXPECT_EQ(WordTokenizer::split("Café ΣΑΣ"), (std::vector<std::string>{"café", "σας"}));
  EXPECT_TRUE(WordTokenizer::split(" \t\n").empty());
}

TEST(WordTokenizer, Encode) {
  EXPECT_EQ(tiny().encode("A photo of a bird."), (std::vector<int64_t>{2, 3, 4, 2, 1, 7}));
  EXPECT_TRUE(tiny().encode("").empty());
}

TEST(WordTokenizer, TokenizeRowsPadAndEotIsArgmax) {
  const WordTokenizer tok = tiny();
  const Tensor t = tok.tokenize({"a photo of a cat.", "dog", ""}, 8);
  ASSERT_EQ(t.dtype(), DType::i64);
  ASSERT_EQ(t.sizes(), (Shape{3, 8}));
  EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{8, 2, 3, 4, 2, 5, 7, 9,  //
                                                          8, 6, 9, 0, 0, 0, 0, 0,  //
                                                          8, 9, 0, 0, 0, 0, 0, 0}));
  // argmax pooling (methods.md "CLIP text tower") finds the EOT in every row.
  const std::vector<int64_t> v = t.to_vector<int64_t>();
  const int64_t expected_eot[] = {7, 2, 1};
  for (int64_t r = 0; r < 3; ++r) {
    const auto row = v.begin() + r * 8;
    EXPECT_EQ(std::max_element(row, row + 8) - row, expected_eot[r]);
  }
}

TEST(WordTokenizer, TruncationForcesEot) {
  EXPECT_EQ(tiny().tokenize_row("a photo of a cat.", 4), (std::vector<int64_t>{8, 2, 3, 9}));
  EXPECT_EQ(tiny().tokenize_row("a photo", 1), (std::vector<int64_t>{9}));
  EXPECT_EQ(tiny().tokenize_row("a photo", 4), (std::vector<int64_t>{8, 2, 3, 9}));
}

TEST(WordTokenizer, Errors) {
  EXPECT_THROW_MSG(WordTokenizer({}), ValueError, "empty vocabulary");
  EXPECT_THROW_MSG(WordTokenizer({"cat", "dog", "CAT"}), ValueError, "duplicate", "cat");
  EXPECT_THROW_MSG(WordTokenizer({"two words"}), ValueError, "two words", "got 2 tokens");
  EXPECT_THROW_MSG(WordTokenizer({""}), ValueError, "got 0 tokens");
  EXPECT_THROW_MSG(tiny().tokenize({"a"}, 0), ValueError, "context_length", "got 0");
}

}  // namespace
}  // namespace peft
