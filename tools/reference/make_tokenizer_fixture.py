#!/usr/bin/env python3
"""Reference CLIP tokenizer (methods.md section 3) and the fixture tests/fixtures/tokenizer_ids.json.

This is the official algorithm of openai/CLIP clip/simple_tokenizer.py and clip.tokenize(...,
truncate=True), written out from the spec: byte table, 48894 merges, html.unescape twice, strip,
whitespace collapse, str.lower, the pre-tokenisation regex (module `regex`, IGNORECASE) and
greedy lowest-rank BPE. ftfy is not used (methods.md 3.8: that step is the identity).

Usage: /usr/bin/python3 tools/reference/make_tokenizer_fixture.py   (from the repository root)
"""
import gzip
import html
import json
import os
import random

import regex

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VOCAB = os.path.join(ROOT, "..", "shared", "data", "clip", "bpe_simple_vocab_16e6.txt.gz")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer_ids.json")
SOT, EOT = 49406, 49407
CONTEXT = 77

PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


class Tokenizer:
    def __init__(self, path):
        # 3.1 byte table: KEEP bytes map to themselves, the other 68 to U+0100.. in order.
        keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
        rest = [b for b in range(256) if b not in keep]
        self.order = keep + rest
        self.byte_symbol = {}
        for b in keep:
            self.byte_symbol[b] = chr(b)
        for i, b in enumerate(rest):
            self.byte_symbol[b] = chr(0x100 + i)
        self.symbol_byte = {s: b for b, s in self.byte_symbol.items()}
        # 3.2 merges: lines 1..48894 of the gunzipped file.
        lines = gzip.open(path).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:48895]]
        self.rank = {pair: j for j, pair in enumerate(merges)}
        # 3.3 vocabulary.
        vocab = [self.byte_symbol[b] for b in self.order]
        vocab += [s + "</w>" for s in vocab]
        vocab += [a + b for a, b in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        assert len(vocab) == 49408 and len(set(vocab)) == 49408
        self.vocab = vocab
        self.ids = {s: i for i, s in enumerate(vocab)}

    @staticmethod
    def clean(text):
        # 3.4: unescape twice, strip, collapse whitespace runs (regex \s), strip, lower.
        text = html.unescape(html.unescape(text))
        text = text.strip()
        text = regex.sub(r"\s+", " ", text).strip()
        return text.lower()

    @staticmethod
    def pieces(clean_text):
        return PATTERN.findall(clean_text)

    def bpe(self, piece):
        word = [self.byte_symbol[b] for b in piece.encode("utf-8")]
        word[-1] += "</w>"
        while len(word) > 1:
            ranked = [(self.rank[p], p) for p in zip(word, word[1:]) if p in self.rank]
            if not ranked:
                break
            first, second = min(ranked)[1]
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return [self.ids[s] for s in word]

    def encode(self, text):
        ids = []
        for piece in self.pieces(self.clean(text)):
            if piece == "<|startoftext|>":
                ids.append(SOT)
            elif piece == "<|endoftext|>":
                ids.append(EOT)
            else:
                ids.extend(self.bpe(piece))
        return ids

    def row(self, text, context=CONTEXT):
        row = [SOT] + self.encode(text) + [EOT]
        if len(row) > context:
            row = row[:context]
            row[-1] = EOT
        return row

    def decode(self, ids):
        text = "".join(self.vocab[i] for i in ids)
        data = bytearray(self.symbol_byte[c] for c in text)
        return data.decode("utf-8", errors="replace").replace("</w>", " ")


TEXTS = [
    # plain prompts and known ids
    "a photo of a cat.", "a photo of a dog", "A PHOTO OF A CAT.", "a photo of a {}.",
    "This is a Sentence, with punctuation!?", "hello world", "Hello World", "HELLO",
    "", " ", "   \t\n  ", "x", ".", "a", "!!!", "...", "?!.,;:", "(parenthesised) [bracketed] {braced}",
    "e-mail: someone@example.com", "https://github.com/openai/CLIP", "snake_case_name", "C++ and C#",
    "50% off -- $19.99 only", "#hashtag @mention", "tab\tseparated\tvalues", "line one\nline two\r\nline three",
    # digits: one number character per piece
    "1", "12", "123456789", "2023-11-22", "3.14159", "1st 2nd 3rd 4th", "route66", "0.5x", "x86_64",
    "a photo of 100 cats", "٣٤ arabic-indic digits", "१२३ devanagari", "１２ full-width digits",
    # contractions
    "it's", "don't", "they're", "we've", "I'm", "we'll", "he'd", "IT'S DON'T THEY'RE",
    "'single'", "'s't're've'm'll'd", "rock'n'roll", "'twas", "o'clock", "don''t", "it’s curly",
    # accents, scripts, emoji, marks
    "café", "naïve résumé", "Ærøskøbing", "Ça va? Très bien.", "Straße", "ﬁ ligature",
    "日本語のテキスト", "中文字符", "한국어 텍스트", "Ελληνικά", "русский текст", "עברית", "العربية",
    "हिन्दी", "ไทย", "😀", "👍🏽 thumbs", "👨‍👩‍👧 family", "🇫🇷 flag", "cat 🐱 emoji",
    "e\u0301 combining acute", "a\u0300\u0301\u0302 stacked", "\u0301 leading mark", "ᾳ iota \u0345 subscript",
    "x²", "H₂O", "½ cup", "¼ ¾", "Ⅻ roman twelve", "ⅻ", "Chapter Ⅳ", "①②③ circled", "𝟘𝟙 math digits",
    "𝐀𝐁𝐂 math bold", "Ⓐ circled letter", "ǅungla titlecase", "ſ long s", "'ſ contraction", "Kelvin \u212a",
    "\u00ad soft hyphen", "zero\u200bwidth", "no\u00a0break\u00a0space", "ideo\u3000space", "em\u2003space",
    "ctrl\x1cchar", "\x1fedge\x1f", "bell\x07char", "del\x7fchar", "nel\x85char",
    # whitespace handling
    "  leading", "trailing   ", "  both  ", "many     spaces", "tabs\t\t\tand\n\n\nnewlines",
    "\u2028line\u2029para\u2028", "\x0b\x0cvt ff\x0b",
    # HTML entities
    "&amp;", "&amp;amp;", "&amp;amp;amp;", "&lt;b&gt;bold&lt;/b&gt;", "&#39;", "&#x27;", "&#X27;s",
    "caf&eacute", "caf&eacute;", "&notit;", "&notin;", "&not", "&#150;", "&#128;", "&#0;", "&#13;x",
    "&#x110000;", "&#xD800;", "&#1;", "&#65;&#66;&#x43;", "&#9999999999999999999999;", "&#;", "&#x;",
    "&nbsp;non&nbsp;breaking", "&NotEqualTilde;", "&quot;quoted&quot;", "AT&T", "&&&", "& amp;",
    "&ampx", "&amp;lt;", "&AMP;", "&Aacute;&aacute;", "&fjlig;", "&nosuchentity;",
    "&" + "a" * 40 + ";", "&eacutex", "&lt", "&lt;&lt;&lt;", "&#x1F600;", "&Sigma;&Sigma;",
    # lower-casing
    "İstanbul", "İ", "ΣΑΣ", "ΟΔΟΣ ΟΔΟΣ.", "Σ", "aΣ", "ΣΑΣ'", "A\u0345Σ", "ᾼ", "ǈ ǋ", "ΆΈΉ",
    "ÀÉÎÕÜ", "ŸÿĲĳ", "ꭰ cherokee", "Ꭰ CHEROKEE",
    # special tokens typed inside text
    "<|startoftext|>", "<|endoftext|>", "a <|endoftext|> b", "<|STARTOFTEXT|>hello", "x<|endoftext|>y",
    "<|endoftext|><|startoftext|>", "<|endoftext", "<|ſtartoftext|>", "&lt;|endoftext|&gt;",
    # long texts
    "a photo of a " + " ".join(["very"] * 80) + " big cat.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    " ".join(str(i) for i in range(40)),
    "word " * 74 + "end",
    "word " * 75,
    "word " * 76,
]


def random_texts(count, seed):
    """Seeded random strings over an alphabet of the interesting characters."""
    rng = random.Random(seed)
    alphabet = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3 +
                list(" \t\n'.,!?-&;#<>|") * 2 +
                ["&amp;", "&lt;", "&#39;", "&eacute", "'s", "'ll", "é", "ü", "ß", "İ", "Σ", "ς", "²", "½",
                 "Ⅻ", "日", "本", "😀", "\u0301", "\u0345", "\u00a0", "\u3000", "\x1c", "ſ", "K", "Ǆ"])
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(count)]


UNESCAPE_CASES = [
    "&amp;", "&amp;amp;", "&notit;", "&notin;", "&not", "&eacute", "&eacutex", "&#150;", "&#x27;",
    "&#X1f600;", "&#0;", "&#13;", "&#1;", "&#x110000;", "&#xDFFF;", "&#xFDD0;", "&#xFFFE;", "&#x10FFFF;",
    "&#99999999999999999999;", "&#;", "&#x;", "&#", "&", "a&b", "&" + "b" * 40 + ";", "&lt;&gt;",
    "&NotEqualTilde;", "&fjlig;", "&ThickSpace;", "&ampamp;", "&am", "&amp", "&AMP;", "&AMP",
    "&\tamp;", "x&amp;y&lt;z", "&#65;&#66", "&#x41", "&#X41;", "&amp&lt", "&unknown;", "&#1114111;",
    "&#55296;", "&#128;&#129;&#159;", "&lowast;&lowbar;", "&nbsp", "&copy2023", "&COPY;",
]


def main():
    tok = Tokenizer(VOCAB)
    assert tok.row("a photo of a cat.") == [49406, 320, 1125, 539, 320, 2368, 269, 49407]
    texts = TEXTS + random_texts(60, seed=1234)
    assert len(set(texts)) == len(texts), "duplicate fixture text"
    cases = []
    for text in texts:
        clean = tok.clean(text)
        ids = tok.encode(text)
        cases.append({
            "text": text,
            "clean": clean,
            "pieces": tok.pieces(clean),
            "row": tok.row(text),
            "decoded": tok.decode(ids),
        })
    short = [{"text": t, "context_length": n, "row": tok.row(t, n)}
             for t in ["a photo of a cat.", "", "hello world", "a b c d e f"] for n in (1, 2, 3, 5, 8)]
    unescape = [{"text": t, "once": html.unescape(t)} for t in UNESCAPE_CASES]
    def dump(x):
        return json.dumps(x, ensure_ascii=False, separators=(",", ":"))

    with open(OUT, "w", encoding="utf-8") as f:  # one case per line, so diffs stay readable
        f.write('{"generator":"tools/reference/make_tokenizer_fixture.py","context_length":%d,\n' % CONTEXT)
        for key, rows in (("cases", cases), ("short_context", short), ("unescape", unescape)):
            f.write(f'"{key}":[\n' + ",\n".join(dump(r) for r in rows) + "\n]")
            f.write(",\n" if key != "unescape" else "\n}\n")
    print(f"wrote {OUT}: {len(cases)} texts, {len(short)} short-context rows, "
          f"{len(unescape)} unescape cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
