#!/usr/bin/env python3
"""Generates data/unicode_tables.h and data/unicode_tables.cpp for the CLIP tokenizer.

Every table is measured from the behaviour of this Python (3.11) and its `regex` module, not
read from the Unicode data files, so the C++ tokenizer reproduces exactly what the Python
reference (tools/reference/make_tokenizer_fixture.py) does:

  * the character class of each code point under CLIP's pre-tokenisation pattern (compiled with
    regex.IGNORECASE): `\\s`, `[\\p{L}]`, `[\\p{N}]`, `[^\\s\\p{L}\\p{N}]` or none of them
    (U+0345 is the only one: its case variant iota is a letter),
  * str.isspace (what str.strip() removes),
  * str.lower per code point (runs of constant delta, plus the multi-code-point mappings),
  * Case_Ignorable and Cased as str.lower's final-sigma rule sees them,
  * html.entities.html5, html._invalid_charrefs and html._invalid_codepoints.

Usage: /usr/bin/python3 tools/reference/gen_unicode_tables.py   (from the repository root)
"""
import html
import html.entities
import os
import sys

import regex

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAX_CP = 0x110000


def code_points():
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates never reach the tokenizer (UTF-8 input)
            continue
        yield cp


def ranges_of(predicate):
    """Sorted inclusive [first, last] ranges of the code points where predicate holds."""
    out = []
    for cp in code_points():
        if predicate(cp):
            if out and out[-1][1] == cp - 1:
                out[-1][1] = cp
            else:
                out.append([cp, cp])
    return out


def class_runs():
    """(first code point, class) runs over the whole code space; surrogates get class 'none'."""
    flags = regex.IGNORECASE
    space = regex.compile(r"\s", flags)
    letter = regex.compile(r"[\p{L}]", flags)
    number = regex.compile(r"[\p{N}]", flags)
    other = regex.compile(r"[^\s\p{L}\p{N}]", flags)
    runs = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:
            cls = 4
        else:
            c = chr(cp)
            hits = [bool(p.fullmatch(c)) for p in (space, letter, number, other)]
            if sum(hits) > 1:
                sys.exit(f"U+{cp:04X} is in two classes: the C++ lookup assumes one")
            cls = hits.index(True) if any(hits) else 4
        if not runs or runs[-1][1] != cls:
            runs.append((cp, cls))
    return runs


def lower_tables():
    """Single-code-point lowercase mappings as runs (first, last, step, delta) plus multi ones."""
    single, multi = [], []
    for cp in code_points():
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) == 1:
            single.append((cp, ord(low) - cp))
        else:
            multi.append((cp, [ord(x) for x in low]))
    runs = []  # [first, last, step, delta]
    for cp, delta in single:
        if runs:
            r = runs[-1]
            if r[3] == delta and ((r[0] == r[1] and cp - r[1] in (1, 2)) or
                                  (r[0] != r[1] and cp - r[1] == r[2])):
                r[2] = cp - r[1]
                r[1] = cp
                continue
        runs.append([cp, cp, 1, delta])
    return runs, multi


def sigma_sets():
    """Case_Ignorable, and Cased among the others, exactly as str.lower's final-sigma rule sees
    them: c + 'Σ' ends in 'ς' iff c is cased and not case-ignorable; 'A' + c + 'Σ' ends in 'ς'
    iff c is case-ignorable or cased."""
    def final(s):
        return s.lower()[-1] == "\u03c2"
    cased = ranges_of(lambda cp: final(chr(cp) + "\u03a3"))
    ignorable = ranges_of(lambda cp: final("A" + chr(cp) + "\u03a3") and not final(chr(cp) + "\u03a3"))
    return ignorable, cased


def check_literal_folding():
    """clip_tokenizer.cpp matches the pattern's literals with ASCII case folding plus 's' ~ U+017F.
    Verify that this is exactly what regex.IGNORECASE does for each of their characters."""
    everything = "".join(chr(cp) for cp in code_points())
    for ch in sorted(set("<|startoftext|><|endoftext|>'s't're've'm'll'd")):
        got = {ord(m) for m in regex.findall(regex.escape(ch), everything, regex.IGNORECASE)}
        want = {ord(ch), ord(ch.upper())} | ({0x17F} if ch == "s" else set())
        if got != want:
            sys.exit(f"IGNORECASE equivalents of {ch!r} changed: {sorted(map(hex, got))}")


def c_bytes(s):
    """A C string literal of s's UTF-8 bytes, every byte escaped (no hex-digit run-on)."""
    return '"' + "".join(f"\\x{b:02X}" for b in s.encode("utf-8")) + '"'


def emit_ranges(name, ranges):
    lines = [f"const Range {name}[] = {{"]
    row = []
    for a, b in ranges:
        row.append(f"{{0x{a:X}, 0x{b:X}}}")
        if len(row) == 6:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("};")
    return "\n".join(lines)


HEADER = """\
// Unicode and HTML tables for the CLIP tokenizer, measured from Python 3.11 (str.isspace,
// str.lower, the `regex` module, html.entities.html5). GENERATED by
// tools/reference/gen_unicode_tables.py: do not edit, rerun the script.
#pragma once
#include <cstdint>
#include <string_view>

namespace peft::unicode {

// The class of a code point under CLIP's pre-tokenisation pattern (regex module, IGNORECASE):
// `\\s`, `[\\p{L}]`, `[\\p{N}]`, `[^\\s\\p{L}\\p{N}]`, or none (U+0345, surrogates): such code
// points are never part of a match and are dropped like whitespace.
enum class CharClass : uint8_t { space = 0, letter = 1, number = 2, other = 3, none = 4 };
CharClass clip_char_class(char32_t c);

// Python str.isspace(): what str.strip() removes (regex `\\s` plus U+001C..U+001F).
bool is_python_space(char32_t c);

// Python str.lower() of one code point, without the final-sigma context (the caller applies it).
// Writes 1 to 3 code points to out and returns how many.
int lower_code_point(char32_t c, char32_t out[3]);

// The two properties of str.lower's final-sigma rule. is_cased is only meaningful for code points
// that are not case-ignorable (the rule skips case-ignorable ones before asking).
bool is_case_ignorable(char32_t c);
bool is_cased(char32_t c);

// html.entities.html5[name] as UTF-8 (name includes the ';' when it has one), or nullptr.
const char* html5_entity(std::string_view name);

// html._invalid_charrefs: the replacement code point for a numeric reference, or -1.
int32_t html_invalid_charref(uint32_t num);
// html._invalid_codepoints: numeric references that unescape to nothing.
bool html_invalid_codepoint(uint32_t num);

}  // namespace peft::unicode
"""


def main():
    check_literal_folding()
    runs = class_runs()
    isspace = ranges_of(lambda cp: chr(cp).isspace())
    lower_runs, lower_multi = lower_tables()
    ignorable, cased = sigma_sets()
    entities = sorted(html.entities.html5.items(), key=lambda kv: kv[0].encode("ascii"))
    charrefs = sorted(html._invalid_charrefs.items())
    invalid_cp = []
    for cp in sorted(html._invalid_codepoints):
        if invalid_cp and invalid_cp[-1][1] == cp - 1:
            invalid_cp[-1][1] = cp
        else:
            invalid_cp.append([cp, cp])

    out = []
    out.append("// GENERATED by tools/reference/gen_unicode_tables.py from Python "
               f"{sys.version.split()[0]} (regex {regex.__version__}): do not edit, rerun the script.")
    out.append('#include "data/unicode_tables.h"\n')
    out.append("#include <algorithm>\n#include <iterator>\n")
    out.append("namespace peft::unicode {\nnamespace {\n")
    out.append("struct Range { char32_t first, last; };  // inclusive\n")
    out.append("bool in_ranges(const Range* begin, const Range* end, char32_t c) {\n"
               "  const Range* it = std::upper_bound(begin, end, c, [](char32_t v, const Range& r) { return v < r.first; });\n"
               "  return it != begin && c <= (it - 1)->last;\n}\n")
    # class runs packed as (first << 3) | class
    out.append("// (first code point << 3) | class: the class holds from first up to the next entry.")
    out.append("const uint32_t kClassRuns[] = {")
    row = []
    for first, cls in runs:
        row.append(f"0x{(first << 3) | cls:X}")
        if len(row) == 10:
            out.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        out.append("    " + ", ".join(row) + ",")
    out.append("};\n")
    out.append(emit_ranges("kPythonSpace", isspace) + "\n")
    out.append(emit_ranges("kCaseIgnorable", ignorable) + "\n")
    out.append(emit_ranges("kCased", cased) + "\n")
    out.append("// str.lower: code points first..last stepping by step map to c + delta.")
    out.append("struct LowerRun { char32_t first, last; int32_t step, delta; };")
    out.append("const LowerRun kLowerRuns[] = {")
    row = []
    for a, b, step, delta in lower_runs:
        row.append(f"{{0x{a:X}, 0x{b:X}, {step}, {delta}}}")
        if len(row) == 4:
            out.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        out.append("    " + ", ".join(row) + ",")
    out.append("};")
    out.append("struct LowerMulti { char32_t c; int n; char32_t to[3]; };")
    out.append("const LowerMulti kLowerMulti[] = {")
    for cp, to in lower_multi:
        assert len(to) <= 3
        out.append(f"    {{0x{cp:X}, {len(to)}, {{{', '.join(f'0x{t:X}' for t in to)}}}}},")
    out.append("};\n")
    out.append("struct Entity { const char* name; const char* utf8; };  // sorted by name (bytes)")
    out.append("const Entity kEntities[] = {")
    for k in range(0, len(entities), 4):
        out.append("    " + " ".join(f'{{"{name}", {c_bytes(value)}}},' for name, value in entities[k:k + 4]))
    out.append("};\n")
    out.append("struct CharRef { uint32_t num; char32_t to; };")
    out.append("const CharRef kInvalidCharrefs[] = {")
    out.append("    " + ", ".join(f"{{0x{k:X}, 0x{ord(v):X}}}" for k, v in charrefs) + ",")
    out.append("};\n")
    out.append(emit_ranges("kInvalidCodepoints", invalid_cp) + "\n")
    out.append("}  // namespace\n")
    out.append("""\
CharClass clip_char_class(char32_t c) {
  const uint32_t key = (static_cast<uint32_t>(c) << 3) | 7u;
  const uint32_t* it = std::upper_bound(std::begin(kClassRuns), std::end(kClassRuns), key);
  if (c >= 0x110000 || it == std::begin(kClassRuns)) return CharClass::none;
  return static_cast<CharClass>(*(it - 1) & 7u);
}

bool is_python_space(char32_t c) { return in_ranges(std::begin(kPythonSpace), std::end(kPythonSpace), c); }
bool is_case_ignorable(char32_t c) { return in_ranges(std::begin(kCaseIgnorable), std::end(kCaseIgnorable), c); }
bool is_cased(char32_t c) { return in_ranges(std::begin(kCased), std::end(kCased), c); }

int lower_code_point(char32_t c, char32_t out[3]) {
  for (const LowerMulti& m : kLowerMulti)
    if (m.c == c) {
      for (int i = 0; i < m.n; ++i) out[i] = m.to[i];
      return m.n;
    }
  const LowerRun* it = std::upper_bound(std::begin(kLowerRuns), std::end(kLowerRuns), c,
                                        [](char32_t v, const LowerRun& r) { return v < r.first; });
  out[0] = c;
  if (it != std::begin(kLowerRuns)) {
    const LowerRun& r = *(it - 1);
    if (c <= r.last && (c - r.first) % static_cast<char32_t>(r.step) == 0)
      out[0] = static_cast<char32_t>(static_cast<int64_t>(c) + r.delta);
  }
  return 1;
}

const char* html5_entity(std::string_view name) {
  const Entity* it = std::lower_bound(std::begin(kEntities), std::end(kEntities), name,
                                      [](const Entity& e, std::string_view n) { return std::string_view(e.name) < n; });
  if (it != std::end(kEntities) && std::string_view(it->name) == name) return it->utf8;
  return nullptr;
}

int32_t html_invalid_charref(uint32_t num) {
  for (const CharRef& r : kInvalidCharrefs)
    if (r.num == num) return static_cast<int32_t>(r.to);
  return -1;
}

bool html_invalid_codepoint(uint32_t num) {
  return in_ranges(std::begin(kInvalidCodepoints), std::end(kInvalidCodepoints), static_cast<char32_t>(num));
}

}  // namespace peft::unicode
""")
    with open(os.path.join(ROOT, "data", "unicode_tables.h"), "w") as f:
        f.write(HEADER)
    with open(os.path.join(ROOT, "data", "unicode_tables.cpp"), "w") as f:
        f.write("\n".join(out))
    print(f"class runs {len(runs)}, isspace {len(isspace)}, lower runs {len(lower_runs)} "
          f"+ {len(lower_multi)} multi, case-ignorable {len(ignorable)}, cased {len(cased)}, "
          f"entities {len(entities)}")


if __name__ == "__main__":
    main()
