// libFuzzer harness for the canonicalizer (src/core/canonicalizer.cpp).
//
// Input: byte 0 selects how the rest becomes one field's text and the piece size, byte 1 the
// split point. The text is the bytes themselves (mode 0: usually UTF-8; ill-formed bytes
// break the extractor's contract but must still be handled), or each byte picks one of ~250
// code points chosen to stress normalisation (mode 1: marks of many combining classes,
// backward-composing starters, Hangul jamo, exclusions, singletons, removed classes,
// homoglyphs, long expansions), or each byte pair is a BMP code point (mode 2). Invariants:
//   - the output is well-formed UTF-8, has no whitespace but single inner ASCII spaces;
//   - split invariance: fed whole, in two pieces at the derived point, and in pieces of 1–7
//     bytes, output and token estimate are identical;
//   - fixed point: canonicalising the output again changes nothing (holds unless a run of
//     ≥ kMaxHeldCodePoints code points without a boundary forced a cut);
//   - for well-formed input without a forced cut, the output equals a whole-field reference
//     built straight from the libraries (utf8proc NFKD → ICU removal and skeletons → utf8proc
//     NFC → White_Space collapse), sharing no code with the streaming implementation.
// Build with -fsanitize=fuzzer,address,undefined; seeds in tests/fuzz/corpus/canonicalizer/.
#include <unicode/uchar.h>
#include <unicode/uspoof.h>
#include <unicode/utf16.h>
#include <utf8proc.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "sluice/canonicalizer.hpp"

#include "../unit/core/canonical_reference.hpp"

namespace sluice {
namespace {

void require(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "canonicalizer_fuzz: invariant violated: %s\n", what);
  std::abort();
}

// Code points, for a failure report.
void dump(const char* what, std::string_view s) {
  std::fprintf(stderr, "%s:", what);
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    utf8proc_int32_t cp;
    const auto n = utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    std::fprintf(stderr, " %04X", n > 0 ? static_cast<unsigned>(cp) : 0xFFFFFFFFu);
    i += n > 0 ? static_cast<std::size_t>(n) : 1;
  }
  std::fprintf(stderr, "\n");
}

class StringSink final : public CanonicalSink {
 public:
  void on_canonical(std::string_view utf8) override {
    require(!utf8.empty(), "the sink is never handed an empty piece");
    text.append(utf8);
  }
  std::string text;
};

struct Result {
  std::string text;
  uint64_t tokens;
  uint64_t forced_cuts;
};

// Feeds `field` in pieces: cut at `first_cut`, then every `step` bytes (0: no more cuts).
Result canonicalize(Canonicalizer& c, std::string_view field, std::size_t first_cut,
                    std::size_t step) {
  StringSink sink;
  c.reset();
  c.begin_field(sink);
  std::size_t from = 0;
  std::size_t cut = std::min(first_cut, field.size());
  while (from < field.size()) {
    c.feed(field.substr(from, cut - from), sink);
    from = cut;
    cut = step == 0 ? field.size() : std::min(field.size(), cut + step);
  }
  c.end_field(sink);
  return {std::move(sink.text), c.token_estimate(), c.forced_cuts()};
}

bool well_formed(std::string_view s) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    utf8proc_int32_t cp;
    const auto n = utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) return false;
    i += static_cast<std::size_t>(n);
  }
  return true;
}

std::string utf8(utf8proc_int32_t cp) {
  utf8proc_uint8_t bytes[4];
  const auto n = utf8proc_encode_char(cp, bytes);
  return std::string(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(n));
}

// No whitespace in the output but single ASCII spaces between text.
bool whitespace_collapsed(std::string_view s) {
  if (!s.empty() && (s.front() == ' ' || s.back() == ' ')) return false;
  if (s.find("  ") != std::string_view::npos) return false;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    utf8proc_int32_t cp;
    i += static_cast<std::size_t>(
        utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(s.size() - i), &cp));
    if (cp != ' ' && u_hasBinaryProperty(cp, UCHAR_WHITE_SPACE)) return false;
  }
  return true;
}

// The whole-field reference (the same as in tests/unit/core/canonicalizer_test.cpp).
using Reference = reference::Reference;

// Code points where normalisation, removal and folding interact.
constexpr char32_t kAlphabet[] = {
    'a',
    'e',
    'o',
    'i',
    'A',
    'I',
    'O',
    'l',
    'm',
    'r',
    'n',
    'k',
    '0',
    '1',
    '=',
    '<',
    '>',
    ' ',
    '\t',
    '\n',
    0x0000,
    // combining marks, classes 1 … 240
    0x0300,
    0x0301,
    0x0302,
    0x0308,
    0x030A,
    0x0313,
    0x0315,
    0x0316,
    0x031B,
    0x0321,
    0x0323,
    0x0327,
    0x0328,
    0x0334,
    0x0338,
    0x0345,
    0x035C,
    0x035D,
    0x05B0,
    0x05B4,
    0x05BC,
    0x05C1,
    0x064B,
    0x064E,
    0x0651,
    0x0652,
    0x0654,
    0x0655,
    0x093C,
    0x094D,
    0x0E38,
    0x0E48,
    0x0F71,
    0x0F72,
    0x0F74,
    0x0F80,
    0x302A,
    0x3099,
    0x309A,
    0x1DCE,
    0x20D2,
    0x1D165,
    0x1D16D,
    // starters that compose with what precedes them, and their partners
    0x0B3E,
    0x0B56,
    0x0B57,
    0x0B47,
    0x0BBE,
    0x0BD7,
    0x0BC6,
    0x0BC7,
    0x0B92,
    0x0CC2,
    0x0CD5,
    0x0CD6,
    0x0CC6,
    0x0CBF,
    0x0CCA,
    0x0D3E,
    0x0D57,
    0x0D46,
    0x0DCF,
    0x0DDF,
    0x0DCA,
    0x0DD9,
    0x102E,
    0x1025,
    0x1B35,
    0x1B05,
    0x1B3A,
    0x11127,
    0x11131,
    0x11132,
    0x1133E,
    0x11347,
    0x114B0,
    0x114BA,
    0x115AF,
    0x115B8,
    0x11930,
    0x11935,
    0x0627,
    0x0648,
    0x064A,
    0x06D5,
    0x30AB,
    0x304B,
    0x30FD,
    0x309D,
    // Hangul
    0x1100,
    0x1101,
    0x1112,
    0x1161,
    0x1162,
    0x1175,
    0x11A7,
    0x11A8,
    0x11C2,
    0x11C3,
    0xAC00,
    0xAC01,
    0xAC1C,
    0xD7A3,
    0x3131,
    0x314F,
    0xFFA1,
    0xFFC2,
    // composition exclusions, singletons, decompositions into marks
    0x0958,
    0x095F,
    0x2ADC,
    0xFB1D,
    0xFB1F,
    0xFB2A,
    0x0340,
    0x0341,
    0x0343,
    0x0344,
    0x0374,
    0x037E,
    0x0387,
    0x1F71,
    0x2126,
    0x212A,
    0x212B,
    0x0F73,
    0x0F75,
    0x0F77,
    0x0F79,
    0x0F81,
    0x1E9B,
    0x1E0C,
    0x1E69,
    0x00C5,
    0x00E9,
    0x00E2,
    0x1EAD,
    0x01D5,
    0x0457,
    0x0419,
    0x1FC1,
    0x1FED,
    0x1FEE,
    0x0385,
    0x00A8,
    0x02D8,
    // compatibility
    0xFB01,
    0xFB03,
    0x2460,
    0x2474,
    0xFF21,
    0xFF41,
    0xFF76,
    0xFF9E,
    0x1D400,
    0x1D422,
    0x1D7CE,
    0x338F,
    0x3392,
    0x33C2,
    0xFDFA,
    0xFDFB,
    0x00BD,
    0x2153,
    0x017F,
    0x01C4,
    0x0149,
    0x00B5,
    0x2102,
    0x210C,
    0x2160,
    0x2167,
    0x00B2,
    0x2082,
    0x1D2C,
    0x3250,
    0x32FF,
    0x1F100,
    0x1F16A,
    0xFE35,
    0xFE4D,
    0xFF0E,
    0x2024,
    0x2025,
    0x2026,
    0x2048,
    0x33FF,
    // whitespace
    0x00A0,
    0x3000,
    0x2028,
    0x2029,
    0x0085,
    0x1680,
    0x2000,
    0x2007,
    0x202F,
    0x205F,
    0x000B,
    // removed: format characters, tags, variation selectors
    0x200B,
    0x200C,
    0x200D,
    0x200E,
    0x200F,
    0x202A,
    0x202E,
    0x2060,
    0x2064,
    0x2066,
    0x2069,
    0xFEFF,
    0x00AD,
    0x061C,
    0x180E,
    0x06DD,
    0x110BD,
    0x1D173,
    0xE0001,
    0xE0041,
    0xE007F,
    0xFE00,
    0xFE0F,
    0xE0100,
    0xE01EF,
    0x180B,
    0x180D,
    0x180F,
    // homoglyphs
    0x0430,
    0x0435,
    0x043E,
    0x0440,
    0x0441,
    0x0445,
    0x0443,
    0x0456,
    0x0458,
    0x0405,
    0x0399,
    0x039F,
    0x03BF,
    0x03BD,
    0x0661,
    0x06F1,
    0x201C,
    0x2018,
    0x0131,
    0x0261,
    0x13AA,
    0x05D5,
    0x0647,
    0x0585,
    0x04CF,
    0x01C0,
    0x2223,
    0xA4F2,
    0x1D5C5,
    // other
    0x4E2D,
    0x1F600,
    0x1F3FD,
    0x1F1FA,
    0xFFFD,
    0x0436,
    0x03BB,
    0xE000,
    0x10FFFF,
};

std::string from_alphabet(std::string_view bytes) {
  std::string text;
  for (unsigned char b : bytes)
    text += utf8(static_cast<utf8proc_int32_t>(kAlphabet[b % std::size(kAlphabet)]));
  return text;
}

std::string from_bmp_pairs(std::string_view bytes) {
  std::string text;
  for (std::size_t i = 0; i + 1 < bytes.size(); i += 2) {
    const auto cp = static_cast<utf8proc_int32_t>(static_cast<unsigned char>(bytes[i]) << 8 |
                                                  static_cast<unsigned char>(bytes[i + 1]));
    text += utf8(cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp);
  }
  return text;
}

}  // namespace
}  // namespace sluice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  static Canonicalizer canonicalizer;
  static const Reference reference;
  if (size < 2) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::string field;
  switch (data[0] % 3) {
    case 0:
      field = rest;
      break;
    case 1:
      field = from_alphabet(rest);
      break;
    default:
      field = from_bmp_pairs(rest);
      break;
  }
  const std::size_t first_cut = data[1] % (field.size() + 1);
  const std::size_t step = 1 + data[0] / 3 % 7;

  const Result whole = canonicalize(canonicalizer, field, field.size(), 0);
  require(well_formed(whole.text), "output is well-formed UTF-8");
  require(whitespace_collapsed(whole.text), "whitespace collapsed to single inner spaces");

  const Result two = canonicalize(canonicalizer, field, first_cut, 0);
  require(two.text == whole.text, "two pieces give the same output as one");
  require(two.tokens == whole.tokens, "two pieces give the same token estimate as one");
  require(two.forced_cuts == whole.forced_cuts, "two pieces cut where one does");
  const Result many = canonicalize(canonicalizer, field, first_cut, step);
  require(many.text == whole.text, "small pieces give the same output as one");
  require(many.tokens == whole.tokens, "small pieces give the same token estimate as one");

  if (whole.forced_cuts == 0) {
    const Result again = canonicalize(canonicalizer, whole.text, whole.text.size(), 0);
    require(again.text == whole.text, "canonical text is a fixed point");
    if (well_formed(field)) {
      const std::string expected = reference.canonical(field);
      if (whole.text != expected) {
        dump("input", field);
        dump("canonical", whole.text);
        dump("reference", expected);
      }
      require(whole.text == expected, "agrees with the whole-field reference");
    }
  }
  return 0;
}
