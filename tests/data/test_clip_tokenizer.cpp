// ClipTokenizer against the Python reference (tools/reference/make_tokenizer_fixture.py): every
// fixture text must give the same cleaned text, pieces, row and decoded string, bit for bit.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "data/clip_tokenizer.h"
#include "tests/testing.h"

namespace peft {
namespace {

const std::string kVocab = PEFT_SOURCE_DIR "/assets/clip/bpe_simple_vocab_16e6.txt.gz";

const ClipTokenizer& tokenizer() {
  static const ClipTokenizer tok = ClipTokenizer::load(kVocab);
  return tok;
}

const nlohmann::json& fixture() {
  static const nlohmann::json j = [] {
    std::ifstream f(PEFT_SOURCE_DIR "/tests/fixtures/tokenizer_ids.json");
    if (!f) throw std::runtime_error("missing tests/fixtures/tokenizer_ids.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

// A fresh path in the temp dir (per process), removed at the end of the test.
struct TempFile {
  std::filesystem::path path;
  explicit TempFile(const std::string& name)
      : path(std::filesystem::temp_directory_path() /
             ("peft_tok_" + std::to_string(::getpid()) + "_" + name)),
        name_(path.string()) {}
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  const std::string& name() const { return name_; }
  void write(const std::string& bytes) const {
    std::ofstream f(path, std::ios::binary);
    f << bytes;
  }
  void write_gzip(const std::string& text) const {
    gzFile g = gzopen(name_.c_str(), "wb");
    ASSERT_NE(g, nullptr);
    ASSERT_EQ(gzwrite(g, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
    gzclose(g);
  }

 private:
  std::string name_;
};

TEST(ClipTokenizer, KnownPrompt) {
  EXPECT_EQ(tokenizer().tokenize_row("a photo of a cat."),
            (std::vector<int64_t>{49406, 320, 1125, 539, 320, 2368, 269, 49407}));
  EXPECT_EQ(tokenizer().encode("a photo of a cat."), (std::vector<int64_t>{320, 1125, 539, 320, 2368, 269}));
  EXPECT_EQ(tokenizer().vocab_size(), 49408);
}

TEST(ClipTokenizer, FixtureCoversEnough) {
  EXPECT_GE(fixture().at("cases").size(), 120u);
  EXPECT_EQ(fixture().at("context_length").get<int64_t>(), 77);
}

TEST(ClipTokenizer, FixtureCleanAndPieces) {
  for (const auto& c : fixture().at("cases")) {
    const std::string text = c.at("text");
    const std::string clean = clip_text::clean(text);
    EXPECT_EQ(clean, c.at("clean").get<std::string>()) << "text: " << c.at("text").dump();
    EXPECT_EQ(clip_text::pre_tokenize(clean), c.at("pieces").get<std::vector<std::string>>())
        << "text: " << c.at("text").dump();
  }
}

TEST(ClipTokenizer, FixtureRows) {
  for (const auto& c : fixture().at("cases")) {
    const std::string text = c.at("text");
    EXPECT_EQ(tokenizer().tokenize_row(text), c.at("row").get<std::vector<int64_t>>()) << "text: " << c.at("text").dump();
  }
}

TEST(ClipTokenizer, FixtureDecode) {
  for (const auto& c : fixture().at("cases")) {
    const std::string text = c.at("text");
    EXPECT_EQ(tokenizer().decode(tokenizer().encode(text)), c.at("decoded").get<std::string>())
        << "text: " << c.at("text").dump();
  }
}

TEST(ClipTokenizer, FixtureShortContext) {
  for (const auto& c : fixture().at("short_context")) {
    const std::string text = c.at("text");
    const int64_t n = c.at("context_length");
    EXPECT_EQ(tokenizer().tokenize_row(text, n), c.at("row").get<std::vector<int64_t>>())
        << "text: " << text << " context_length " << n;
  }
}

TEST(ClipTokenizer, FixtureHtmlUnescapeOnce) {
  for (const auto& c : fixture().at("unescape")) {
    const std::string text = c.at("text");
    EXPECT_EQ(clip_text::html_unescape(text), c.at("once").get<std::string>()) << "text: " << c.at("text").dump();
  }
}

TEST(ClipTokenizer, TruncationForcesEot) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "cat ";
  const std::vector<int64_t> row = tokenizer().tokenize_row(text);
  ASSERT_EQ(row.size(), 77u);
  EXPECT_EQ(row.front(), ClipTokenizer::sot);
  EXPECT_EQ(row.back(), ClipTokenizer::eot);
  EXPECT_EQ(row[75], 2368);  // "cat</w>"
  EXPECT_EQ(tokenizer().encode(text).size(), 100u);  // encode itself never truncates
}

TEST(ClipTokenizer, TokenizeTensorIsZeroPadded) {
  const Tensor t = tokenizer().tokenize({"a photo of a cat.", "", "dog"}, 10);
  ASSERT_EQ(t.dtype(), DType::i64);
  ASSERT_EQ(t.sizes(), (Shape{3, 10}));
  EXPECT_EQ(t.to_vector<int64_t>(),
            (std::vector<int64_t>{49406, 320, 1125, 539, 320, 2368, 269, 49407, 0, 0,  //
                                  49406, 49407, 0, 0, 0, 0, 0, 0, 0, 0,                //
                                  49406, 1929, 49407, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(tokenizer().tokenize({}, 77).sizes(), (Shape{0, 77}));
  EXPECT_EQ(tokenizer().tokenize({"x"}).sizes(), (Shape{1, 77}));
}

TEST(ClipTokenizer, BadContextLength) {
  EXPECT_THROW_MSG(tokenizer().tokenize_row("a", 0), ValueError, "context_length", "got 0");
  EXPECT_THROW_MSG(tokenizer().tokenize({"a"}, -3), ValueError, "context_length", "got -3");
}

TEST(ClipTokenizer, DecodeRejectsBadIds) {
  EXPECT_THROW_MSG(tokenizer().decode({320, 49408}), ValueError, "49408");
  EXPECT_THROW_MSG(tokenizer().decode({-1}), ValueError, "-1");
  EXPECT_EQ(tokenizer().decode({49406, 320, 49407}), "<|startoftext|>a <|endoftext|>");
}

TEST(ClipTokenizer, InvalidUtf8BecomesReplacementCharacter) {
  // Python: b"caf\xe9 \xf0\x9f".decode("utf-8", "replace") == "caf\ufffd \ufffd".
  EXPECT_EQ(clip_text::clean("caf\xE9 \xF0\x9F"), "caf\xEF\xBF\xBD \xEF\xBF\xBD");
  EXPECT_EQ(tokenizer().encode("caf\xE9"), tokenizer().encode("caf\xEF\xBF\xBD"));
}

TEST(ClipTokenizer, CacheIsConsistentAcrossThreadsAndCopies) {
  const ClipTokenizer copy = tokenizer();  // shares the cache
  const std::vector<std::string> texts = {"a photo of a cat.", "antidisestablishmentarianism", "日本語のテキスト",
                                          "a photo of a dog"};
  std::vector<std::vector<int64_t>> expected;
  const ClipTokenizer fresh = ClipTokenizer::load(kVocab);  // its own, cold cache
  for (const auto& t : texts) expected.push_back(fresh.encode(t));
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      for (int rep = 0; rep < 50; ++rep)
        for (size_t i = 0; i < texts.size(); ++i)
          if ((w % 2 ? copy : tokenizer()).encode(texts[i]) != expected[i]) bad[static_cast<size_t>(w)]++;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, (std::vector<int>{0, 0, 0, 0}));
}

TEST(ClipTokenizer, MissingFileNamesIt) {
  const std::string path = "/nonexistent/dir/bpe_missing.txt.gz";
  EXPECT_THROW_MSG(ClipTokenizer::load(path), IOError, path.c_str(), "not found");
}

TEST(ClipTokenizer, CorruptGzipNamesIt) {
  TempFile f("corrupt.txt.gz");
  // A gzip header (magic, deflate, no flags) followed by bytes that are not a deflate stream.
  f.write(std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10) + std::string(64, '\xff'));
  EXPECT_THROW_MSG(ClipTokenizer::load(f.name()), IOError, f.name().c_str(), "corrupt gzip");
}

TEST(ClipTokenizer, TruncatedGzipNamesIt) {
  std::ifstream in(kVocab, std::ios::binary);
  std::string head(200000, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  ASSERT_EQ(in.gcount(), 200000);
  TempFile f("truncated.txt.gz");
  f.write(head);
  EXPECT_THROW_MSG(ClipTokenizer::load(f.name()), IOError, f.name().c_str(), "corrupt gzip");
}

TEST(ClipTokenizer, PlainTextIsRejected) {
  TempFile f("plain.txt");
  f.write("#version: 0.2\ni n\nt h\n");
  EXPECT_THROW_MSG(ClipTokenizer::load(f.name()), IOError, f.name().c_str(), "not gzip");
}

TEST(ClipTokenizer, WrongLineCountNamesIt) {
  TempFile f("short.txt.gz");
  f.write_gzip("\"bpe_simple_vocab_16e6.txt#version: 0.2\ni n\nt h\na n\n");
  EXPECT_THROW_MSG(ClipTokenizer::load(f.name()), IOError, f.name().c_str(), "too few lines", "got 5");
}

TEST(ClipTokenizer, MalformedMergeLineNamesIt) {
  std::string text = "#version: 0.2\n";
  for (int j = 0; j < 48894; ++j) text += j == 7 ? "abc\n" : "i n\n";
  TempFile f("badline.txt.gz");
  f.write_gzip(text);
  EXPECT_THROW_MSG(ClipTokenizer::load(f.name()), IOError, f.name().c_str(), "line 8", "got 1 fields");
}

TEST(ClipTokenizer, DuplicateMergeNamesIt) {
  std::string text = "#version: 0.2\n";
  for (int j = 0; j < 48894; ++j) text += "i n\n";  // "in" appears 48894 times
  TempFile f("dup.txt.gz");
  f.write_gzip(text);
  EXPECT_THROW_MSG(ClipTokenizer::load(f.name()), IOError, f.name().c_str(), "duplicate");
}


// Issue 20: BPE rescanned the whole word for every merge (a 400 KB word took 131 s). Its work is
// now counted: at most three heap entries per byte, however long the word.
TEST(ClipTokenizer, LongWordBpeIsLinear) {
  const ClipTokenizer tok = ClipTokenizer::load(kVocab);  // own counter
  std::string word;
  uint64_t x = 88172645463325252ull;  // xorshift: letters without structure, so many merge rounds
  for (int i = 0; i < 300000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    word.push_back(static_cast<char>('a' + x % 26));
  }
  const int64_t before = tok.bpe_steps();
  const std::vector<int64_t> ids = tok.encode(word);
  const int64_t steps = tok.bpe_steps() - before;
  EXPECT_GT(steps, static_cast<int64_t>(word.size()) / 2);  // the counter counts
  EXPECT_LE(steps, 3 * static_cast<int64_t>(word.size()));
  // The row is the first ids of the whole encoding, and tokenize_row encodes no further word.
  const std::vector<int64_t> row = tok.tokenize_row(word + " " + word, 77);
  ASSERT_EQ(row.size(), 77u);
  EXPECT_TRUE(std::equal(row.begin() + 1, row.end() - 1, ids.begin()));
  EXPECT_LE(tok.bpe_steps() - before, 2 * steps);  // the second word was never encoded
}

// Issue 20: an 8.7 MB gzip inflating to 2 GB took 9.8 GB of memory; the inflated size is capped.
TEST(ClipTokenizer, GzipBombIsRefused) {
  TempFile f("bomb.txt.gz");
  f.write_gzip(std::string((size_t{64} << 20) + 1, 'a'));
  EXPECT_THROW_MSG(ClipTokenizer::load(f.name()), IOError, f.name().c_str(), "inflates to more than 64 MiB");
}

}  // namespace
}  // namespace peft
