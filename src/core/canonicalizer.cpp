// Canonicalisation of prompt text (include/sluice/canonicalizer.hpp), streaming, bounded state.
//
// Per code point of a field:
//   decode UTF-8 (an incomplete sequence at the end of a piece waits in `partial`, ≤ 3 bytes)
//   → count it for the token estimate (raw text)
//   → NFKD: utf8proc_decompose_char (only if the table says the code point decomposes)
//   → each part: removed class dropped; foldable code point replaced by its ASCII lookalike
//   → appended to `held`, the code points since the last safe composition boundary
//   → at the next boundary: canonical reordering + canonical composition (utf8proc) → output
//   → output stage: whitespace runs to one space, trimmed at both ends of the field.
// A boundary is a code point with ccc = 0 that never composes with what precedes it (ICU's
// NFC hasBoundaryBefore): nothing before it can reorder or compose across it, so what is held
// can be composed and emitted. Every decision depends only on the code point sequence, never on
// where the pieces were cut, which is what makes the output split-invariant.
//
// Costs (perf/canonicalizer_bench.cpp, 2-core dev VM shared with other jobs, medians): ASCII
// prose ≈ 400–500 MB/s — runs found 8 bytes at a time, tokens counted per run of one class,
// whitespace collapsed branch-free; mixed-script prose (≈ 30 % non-ASCII bytes) ≈ 240–320 MB/s;
// a two-byte letter ≈ 8.5 ns, of which the homoglyph fold adds ≈ 0.3 ns (one table entry and
// a string-pool read) where a uspoof_getSkeleton call would cost ≈ 110 ns. Every property of a
// code point comes from one two-level table lookup; no ICU call after start-up, no allocation.
#include "sluice/canonicalizer.hpp"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uscript.h>
#include <unicode/uspoof.h>
#include <unicode/utf16.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "sluice/stage_clock.hpp"

namespace sluice {
namespace {

// ---------------------------------------------------------------------------------------------
// Per-code-point properties: one 32-bit word per code point.
//   bits 0–7   canonical combining class (utf8proc, so reordering agrees with its composition)
//   bit  8     boundary: ccc = 0 and composes with nothing before it
//   bit  9     decomposes under NFKD (utf8proc_decompose_char must be called)
//   bits 10–11 Action
//   bits 12–14 TokenClass
//   bit  15    a non-ASCII letter of the Latin script (for the token estimate)
//   bits 16–25 fold id (Action::kFold): index of the ASCII replacement in the string pool
//   bits 26–31 token weight of a non-ASCII code point, in sixteenths of a token

enum class Action : uint32_t {
  kKeep = 0,
  kRemove = 1,  // general category Cf (zero-width, bidi controls, tags, soft hyphen …) and
                // Variation_Selector (Mn, not Cf)
  kSpace = 2,   // White_Space
  kFold = 3,    // non-ASCII, NFKD-stable, ccc 0, UTS #39 skeleton entirely ASCII
};

enum class TokenClass : uint32_t {
  kLetter = 0,   // L*, M*
  kDigit = 1,    // N*
  kSpace = 2,    // White_Space except CR, LF (and TAB, VT, FF: kOther, a token each)
  kNewline = 3,  // CR, LF
  kOther = 4,    // punctuation, symbols, everything else
};

// Token estimate, in sixteenths of a token, over the raw code points of each field: a model of
// the cl100k/o200k pre-tokenizer pieces (letters with one leading space, digit groups of three,
// punctuation runs, whitespace runs) with length weights, and a weight per non-ASCII code point
// by script. Calibrated against cl100k_base (the costlier of the two OpenAI encodings for
// non-English text) to err a little high; method and measured error in docs/token-estimate.md.
constexpr uint32_t kToken = 16;
// ASCII letters of a word: the first kWordLettersFree are one token; each further letter costs
// kExtraLetterCost (common English words are one token; long and rare ones split).
constexpr uint32_t kWordLettersFree = 4;
constexpr uint32_t kExtraLetterCost = 2;
// … except in text whose letters are at least 1 in kAccentedShareInverse accented Latin ones
// (German, French, Polish, Turkish …): the words are out of an English-heavy vocabulary, and
// split much more (German 10-letter words: ≈ 2.9 tokens, English ones ≈ 1.3).
constexpr uint32_t kAccentedShareInverse = 200;
constexpr uint32_t kExtraLetterCostAccented = 5;
// Digits: groups of three (\p{N}{1,3}).
constexpr uint32_t kDigitsPerToken = 3;
// ASCII punctuation: the first of a run is a token, each further one kExtraPunctCost.
constexpr uint32_t kExtraPunctCost = 8;
// A second newline in a whitespace run ("\n\n" is one token).
constexpr uint32_t kExtraNewlineCost = 4;

// Sixteenths of a token for one non-ASCII code point (cl100k_base, measured per script).
uint32_t non_ascii_token_weight(UChar32 c) {
  const unsigned length = c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  if ((U_GET_GC_MASK(c) & (U_GC_L_MASK | U_GC_M_MASK | U_GC_N_MASK)) == 0) {
    if (length < 4) return 16;  // punctuation, symbols, spaces, zero-width ≈ 1
    if (u_charType(c) == U_FORMAT_CHAR) return 63;  // tag characters ≈ 3 (cl100k) – 4 (o200k)
    return 40;                                      // emoji ≈ 2–3
  }
  UErrorCode status = U_ZERO_ERROR;
  switch (uscript_getScript(c, &status)) {
    case USCRIPT_LATIN:
      return 20;  // accented letters: ≈ 1–1.6 per letter (vi, tr, pl)
    case USCRIPT_CYRILLIC:
      return 10;  // ≈ 0.45–0.6
    case USCRIPT_GREEK:
      return 18;  // ≈ 1.0
    case USCRIPT_ARABIC:
      return 14;  // ≈ 0.8
    case USCRIPT_HEBREW:
      return 18;  // ≈ 1.0
    case USCRIPT_HAN:
    case USCRIPT_HIRAGANA:
    case USCRIPT_KATAKANA:
      return 17;  // ≈ 0.95
    case USCRIPT_HANGUL:
      return 19;  // ≈ 1.1
    case USCRIPT_THAI:
      return 16;  // ≈ 0.95
    default:
      break;
  }
  if (length == 2) return 16;
  if (length == 3) return 20;  // Devanagari ≈ 1.2 and other Indic scripts
  return 48;                   // mathematical alphanumerics ≈ 3, rare CJK ≈ 2–3
}

constexpr uint32_t kCccMask = 0xff;
constexpr uint32_t kBoundaryBit = 1u << 8;
constexpr uint32_t kDecomposesBit = 1u << 9;
constexpr int kActionShift = 10;
constexpr int kTokenShift = 12;
constexpr uint32_t kLatinLetterBit = 1u << 15;
constexpr int kFoldShift = 16;
constexpr uint32_t kFoldMask = 0x3ff;
constexpr int kWeightShift = 26;

struct Info {
  uint32_t bits;
  uint32_t ccc() const { return bits & kCccMask; }
  bool boundary() const { return bits & kBoundaryBit; }
  bool decomposes() const { return bits & kDecomposesBit; }
  Action action() const { return static_cast<Action>((bits >> kActionShift) & 3); }
  TokenClass token() const { return static_cast<TokenClass>((bits >> kTokenShift) & 7); }
  uint32_t fold_id() const { return (bits >> kFoldShift) & kFoldMask; }
  uint32_t token_weight() const { return bits >> kWeightShift; }
  bool latin_letter() const { return bits & kLatinLetterBit; }
};

// The longest NFKD expansion of one code point (U+FDFA: 18) fits.
constexpr int kMaxDecomposition = 32;
constexpr auto kDecomposeOptions =
    static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
// STABLE: honour the composition exclusions (without it utf8proc recomposes them).
constexpr auto kComposeOptions = static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_STABLE);

[[noreturn]] void fail_start_up(const char* what, UErrorCode status) {
  std::fprintf(stderr, "sluice canonicalizer: %s: %s\n", what, u_errorName(status));
  std::abort();
}

// The table, built once per process from utf8proc (NFKD, ccc) and ICU (categories, White_Space,
// Variation_Selector, NFC boundaries, confusable skeletons); immutable afterwards and shared by
// every worker. Two levels: cp >> 7 selects one of the distinct 128-entry blocks (most of the
// code space shares a few): 251 blocks, 147 KB in all; 646 foldable code points, 144 distinct
// replacements. Build ≈ 55 ms, mostly 130 k uspoof_getSkeleton calls.
class UnicodeTables {
 public:
  static const UnicodeTables& instance() {
    static const UnicodeTables tables;
    return tables;
  }

  Info info(char32_t cp) const {
    return Info{blocks_[(static_cast<uint32_t>(index_[cp >> kBlockShift]) << kBlockShift) |
                        (cp & kBlockMask)]};
  }
  std::string_view fold(uint32_t id) const {
    const uint32_t span = fold_spans_[id];
    return std::string_view(fold_text_).substr(span >> 8, span & 0xff);
  }

 private:
  static constexpr int kBlockShift = 7;
  static constexpr uint32_t kBlockMask = (1u << kBlockShift) - 1;
  static constexpr uint32_t kCodeSpace = 0x110000;

  UnicodeTables();
  uint32_t compute(char32_t cp);
  std::string skeleton(char32_t cp, UErrorCode& status) const;
  std::string lookalike(char32_t cp, const std::string& skeleton) const;

  std::vector<uint16_t> index_;       // kCodeSpace >> kBlockShift entries
  std::vector<uint32_t> blocks_;      // distinct blocks, 128 entries each
  std::vector<uint32_t> fold_spans_;  // offset << 8 | length into fold_text_
  std::string fold_text_;

  // Start-up only.
  const UNormalizer2* nfc_ = nullptr;
  USpoofChecker* spoof_ = nullptr;
  std::unordered_map<std::string, std::string> ascii_by_skeleton_;
  std::unordered_map<std::string, uint32_t> fold_ids_;
};

UnicodeTables::UnicodeTables() {
  UErrorCode status = U_ZERO_ERROR;
  nfc_ = unorm2_getNFCInstance(&status);
  if (U_FAILURE(status)) fail_start_up("unorm2_getNFCInstance", status);
  spoof_ = uspoof_open(&status);
  if (U_FAILURE(status)) fail_start_up("uspoof_open", status);

  // Which printable ASCII characters share each skeleton ('l' ← "1Il|", 'O' ← "0O", …): a
  // foldable code point becomes the one that looks like it, not the skeleton's prototype.
  for (char32_t a = 0x21; a < 0x7f; ++a) {
    ascii_by_skeleton_[skeleton(a, status)].push_back(static_cast<char>(a));
    if (U_FAILURE(status)) fail_start_up("uspoof_getSkeleton", status);
  }

  std::unordered_map<std::string, uint16_t> block_ids;
  std::array<uint32_t, 1u << kBlockShift> block;
  index_.resize(kCodeSpace >> kBlockShift);
  for (uint32_t b = 0; b < index_.size(); ++b) {
    for (uint32_t i = 0; i < block.size(); ++i) block[i] = compute((b << kBlockShift) | i);
    std::string key(reinterpret_cast<const char*>(block.data()), sizeof(block));
    auto [it, added] = block_ids.try_emplace(key, static_cast<uint16_t>(block_ids.size()));
    if (added) blocks_.insert(blocks_.end(), block.begin(), block.end());
    index_[b] = it->second;
  }
  uspoof_close(spoof_);
  spoof_ = nullptr;
  ascii_by_skeleton_.clear();
  fold_ids_.clear();
}

std::string UnicodeTables::skeleton(char32_t cp, UErrorCode& status) const {
  UChar in[2];
  int32_t in_length = 0;
  U16_APPEND_UNSAFE(in, in_length, static_cast<UChar32>(cp));
  UChar out[64];
  const int32_t out_length = uspoof_getSkeleton(spoof_, 0, in, in_length, out, 64, &status);
  std::string ascii;
  if (U_FAILURE(status)) return ascii;
  for (int32_t i = 0; i < out_length; ++i) {
    if (out[i] >= 0x80) return {};
    ascii.push_back(static_cast<char>(out[i]));
  }
  return ascii;
}

// Of the ASCII characters with this skeleton, the one of the code point's own kind: Greek
// capital iota (skeleton 'l') becomes 'I', Arabic-Indic one becomes '1', Cyrillic palochka 'l'.
std::string UnicodeTables::lookalike(char32_t cp, const std::string& skeleton) const {
  const auto it = ascii_by_skeleton_.find(skeleton);
  if (it == ascii_by_skeleton_.end()) return skeleton;
  const std::string& candidates = it->second;
  if (candidates.size() == 1) return candidates;
  int (*same_kind)(int) = nullptr;
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_UPPERCASE_LETTER:
    case U_TITLECASE_LETTER:
      same_kind = [](int c) { return static_cast<int>(c >= 'A' && c <= 'Z'); };
      break;
    case U_LOWERCASE_LETTER:
      same_kind = [](int c) { return static_cast<int>(c >= 'a' && c <= 'z'); };
      break;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      same_kind = [](int c) { return static_cast<int>(c >= '0' && c <= '9'); };
      break;
    default:
      break;
  }
  if (same_kind != nullptr) {
    for (char c : candidates) {
      if (same_kind(static_cast<unsigned char>(c))) return std::string(1, c);
    }
  }
  return skeleton;
}

uint32_t UnicodeTables::compute(char32_t cp) {
  if (cp >= 0xd800 && cp <= 0xdfff) return kBoundaryBit;  // never decoded
  const UChar32 c = static_cast<UChar32>(cp);
  const utf8proc_property_t* property = utf8proc_get_property(c);
  const uint32_t ccc = static_cast<uint32_t>(property->combining_class) & kCccMask;
  uint32_t bits = ccc;

  utf8proc_int32_t parts[kMaxDecomposition];
  const utf8proc_ssize_t parts_length =
      utf8proc_decompose_char(c, parts, kMaxDecomposition, kDecomposeOptions, nullptr);
  if (parts_length < 1 || parts_length > kMaxDecomposition) {
    fail_start_up("NFKD expansion longer than kMaxDecomposition", U_BUFFER_OVERFLOW_ERROR);
  }
  const bool decomposes = parts_length != 1 || parts[0] != c;
  if (decomposes) bits |= kDecomposesBit;
  if (ccc == 0 && unorm2_hasBoundaryBefore(nfc_, c)) bits |= kBoundaryBit;

  const int8_t type = u_charType(c);
  Action action = Action::kKeep;
  if (u_hasBinaryProperty(c, UCHAR_WHITE_SPACE)) {
    action = Action::kSpace;
  } else if (type == U_FORMAT_CHAR || u_hasBinaryProperty(c, UCHAR_VARIATION_SELECTOR)) {
    action = Action::kRemove;
  } else if (cp >= 0x80 && ccc == 0 && !decomposes && type != U_UNASSIGNED &&
             type != U_PRIVATE_USE_CHAR) {
    // Starters only: a combining mark's place is set by canonical reordering, so folding one
    // to ASCII (the only case: U+1D16D combining augmentation dot → '.') would make the output
    // differ between canonically equivalent inputs.
    UErrorCode status = U_ZERO_ERROR;
    const std::string ascii = skeleton(cp, status);
    if (U_FAILURE(status)) fail_start_up("uspoof_getSkeleton", status);
    if (!ascii.empty()) {
      const std::string replacement = lookalike(cp, ascii);
      auto [it, added] =
          fold_ids_.try_emplace(replacement, static_cast<uint32_t>(fold_spans_.size()));
      if (added) {
        fold_spans_.push_back(static_cast<uint32_t>(fold_text_.size()) << 8 |
                              static_cast<uint32_t>(replacement.size()));
        fold_text_ += replacement;
      }
      if (it->second > kFoldMask) {
        fail_start_up("more distinct ASCII replacements than fold id bits",
                      U_BUFFER_OVERFLOW_ERROR);
      }
      action = Action::kFold;
      bits |= it->second << kFoldShift;
    }
  }
  bits |= static_cast<uint32_t>(action) << kActionShift;

  TokenClass token = TokenClass::kOther;
  if (cp == '\n' || cp == '\r') {
    token = TokenClass::kNewline;
  } else if (action == Action::kSpace && cp != '\t' && cp != '\v' && cp != '\f') {
    token = TokenClass::kSpace;
  } else if ((U_GET_GC_MASK(c) & (U_GC_L_MASK | U_GC_M_MASK)) != 0) {
    token = TokenClass::kLetter;
  } else if ((U_GET_GC_MASK(c) & U_GC_N_MASK) != 0) {
    token = TokenClass::kDigit;
  }
  bits |= static_cast<uint32_t>(token) << kTokenShift;
  if (cp >= 0x80) {
    bits |= non_ascii_token_weight(c) << kWeightShift;
    UErrorCode status = U_ZERO_ERROR;
    if (token == TokenClass::kLetter && uscript_getScript(c, &status) == USCRIPT_LATIN) {
      bits |= kLatinLetterBit;
    }
  }
  return bits;
}

// ---------------------------------------------------------------------------------------------
// UTF-8 decoding, Unicode §3.9 Table 3-7.

constexpr char32_t kReplacement = 0xfffd;

// Returns the bytes consumed (≥ 1) and the code point, U+FFFD for an ill-formed sequence
// (consuming its maximal subpart, as §3.9 recommends); or 0 when [p, end) is a well-formed but
// incomplete prefix — whether it is ill-formed depends on bytes not seen yet.
unsigned decode(const uint8_t* p, const uint8_t* end, char32_t& cp) {
  const uint8_t lead = p[0];
  if (lead < 0x80) {
    cp = lead;
    return 1;
  }
  unsigned trail;
  char32_t value;
  uint8_t low = 0x80;
  uint8_t high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    trail = 1;
    value = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    trail = 2;
    value = lead & 0x0f;
    if (lead == 0xe0) low = 0xa0;   // overlong
    if (lead == 0xed) high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    trail = 3;
    value = lead & 0x07;
    if (lead == 0xf0) low = 0x90;   // overlong
    if (lead == 0xf4) high = 0x8f;  // > U+10FFFF
  } else {
    cp = kReplacement;
    return 1;
  }
  for (unsigned i = 1; i <= trail; ++i) {
    if (p + i == end) return 0;
    const uint8_t byte = p[i];
    if (byte < low || byte > high) {
      cp = kReplacement;
      return i;
    }
    low = 0x80;
    high = 0xbf;
    value = value << 6 | (byte & 0x3f);
  }
  cp = value;
  return trail + 1;
}

// ASCII White_Space: TAB, LF, VT, FF, CR, SPACE (not the FS/GS/RS/US separators).
constexpr bool is_ascii_space(uint8_t b) {
  return b == ' ' || (b >= '\t' && b <= '\r');
}

// ---------------------------------------------------------------------------------------------
// Output staged on the stack for the length of one call, handed to the sink in pieces of up to
// kCapacity bytes: one virtual call per ~2 KB, no per-flow buffer.
class Output {
 public:
  explicit Output(CanonicalSink& sink) : sink_(sink) {}
  ~Output() { flush(); }
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  void put_ascii(char c) {
    if (size_ == kCapacity) flush();
    buffer_[size_++] = c;
  }
  // A scalar value (never a surrogate: the decoder and utf8proc produce none).
  void put(char32_t cp) {
    if (size_ + 4 > kCapacity) flush();
    char* o = buffer_ + size_;
    if (cp < 0x80) {
      *o++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *o++ = static_cast<char>(0xc0 | cp >> 6);
      *o++ = static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      *o++ = static_cast<char>(0xe0 | cp >> 12);
      *o++ = static_cast<char>(0x80 | (cp >> 6 & 0x3f));
      *o++ = static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      *o++ = static_cast<char>(0xf0 | cp >> 18);
      *o++ = static_cast<char>(0x80 | (cp >> 12 & 0x3f));
      *o++ = static_cast<char>(0x80 | (cp >> 6 & 0x3f));
      *o++ = static_cast<char>(0x80 | (cp & 0x3f));
    }
    size_ = static_cast<std::size_t>(o - buffer_);
  }
  // Room for `n` ≤ kCapacity bytes written in place, then commit(end of what was written).
  char* reserve(std::size_t n) {
    if (size_ + n > kCapacity) flush();
    return buffer_ + size_;
  }
  void commit(const char* end) { size_ = static_cast<std::size_t>(end - buffer_); }
  static constexpr std::size_t kCapacity = 2048;
  void flush() {
    if (size_ == 0) return;
    sink_.on_canonical(std::string_view(buffer_, size_));
    size_ = 0;
  }

 private:
  CanonicalSink& sink_;
  std::size_t size_ = 0;
  char buffer_[kCapacity];
};

// ---------------------------------------------------------------------------------------------
// Token estimate: see the constants at the top.

enum class Piece : uint8_t { kNone, kLetters, kDigits, kOther, kSpaces, kNewlines };

struct TokenCounter {
  uint64_t sixteenths;         // all but the letters of long ASCII words
  uint64_t long_word_letters;  // ASCII letters past the first kWordLettersFree of their word
  // Letters of each kind, saturating (only their ratio matters).
  uint32_t ascii_letters;
  uint32_t accented_letters;  // non-ASCII Latin letters
  uint32_t run;  // ASCII letters, digits or punctuation in the current piece; spaces up to 2
  Piece piece;

  static_assert(kWordLettersFree >= 1);

  uint64_t estimate() const {
    const bool accented =
        accented_letters > 0 && uint64_t{accented_letters} * kAccentedShareInverse >= ascii_letters;
    const uint64_t total =
        sixteenths + long_word_letters * (accented ? kExtraLetterCostAccented : kExtraLetterCost);
    return (total + kToken - 1) / kToken;
  }

  void reset_piece() {
    piece = Piece::kNone;
    run = 0;
  }

  // `n` ASCII bytes of one class in a row, in O(1).
  void add_ascii_run(TokenClass token, uint32_t n) {
    enter(token);
    switch (token) {
      case TokenClass::kLetter: {
        ascii_letters = n > UINT32_MAX - ascii_letters ? UINT32_MAX : ascii_letters + n;
        if (run == 0) sixteenths += kToken;
        const uint32_t long_before = run > kWordLettersFree ? run - kWordLettersFree : 0;
        run += n;
        const uint32_t long_after = run > kWordLettersFree ? run - kWordLettersFree : 0;
        long_word_letters += long_after - long_before;
        return;
      }
      case TokenClass::kDigit: {
        // Groups begun: ⌈(run + n) / 3⌉ − ⌈run / 3⌉.
        const uint32_t groups_before = (run + kDigitsPerToken - 1) / kDigitsPerToken;
        run += n;
        sixteenths += kToken * ((run + kDigitsPerToken - 1) / kDigitsPerToken - groups_before);
        return;
      }
      case TokenClass::kOther:
        sixteenths += run == 0 ? kToken + (n - 1) * kExtraPunctCost : n * kExtraPunctCost;
        run += n;
        return;
      case TokenClass::kSpace:
        // One space merges into the next piece; a longer run is a token of its own (also after
        // a newline: indentation).
        if (run < 2 && run + n >= 2) sixteenths += kToken;
        run = std::min<uint32_t>(run + n, 2);
        return;
      case TokenClass::kNewline:
        // enter() counted the first newline of a whitespace run; "\n\n" is one token.
        sixteenths += (n - 1) * kExtraNewlineCost;
        return;
    }
  }

  // One non-ASCII code point: its table weight, in the piece of its class.
  void add_non_ascii(TokenClass token, uint32_t weight, bool latin) {
    enter(token);
    sixteenths += weight;
    if (latin && accented_letters != UINT32_MAX) ++accented_letters;
  }

 private:
  // Starts the piece of `token` unless the current one continues.
  void enter(TokenClass token) {
    switch (token) {
      case TokenClass::kLetter:
        if (piece != Piece::kLetters) start(Piece::kLetters);
        return;
      case TokenClass::kDigit:
        if (piece == Piece::kDigits) return;
        // A single space does not join digits (" 12" is two tokens).
        if ((piece == Piece::kSpaces || piece == Piece::kNewlines) && run == 1) {
          sixteenths += kToken;
        }
        start(Piece::kDigits);
        return;
      case TokenClass::kOther:
        if (piece != Piece::kOther) start(Piece::kOther);
        return;
      case TokenClass::kSpace:
        // Spaces after a newline stay in its piece: a further newline joins the run.
        if (piece != Piece::kSpaces && piece != Piece::kNewlines) start(Piece::kSpaces);
        return;
      case TokenClass::kNewline:
        if (piece != Piece::kNewlines) {
          sixteenths += kToken;
          piece = Piece::kNewlines;
        } else {
          sixteenths += kExtraNewlineCost;
        }
        run = 0;
        return;
    }
  }
  void start(Piece next) {
    piece = next;
    run = 0;
  }
};

// TokenClass of each ASCII byte (the same as the table's, without the lookup).
constexpr std::array<TokenClass, 128> kAsciiTokenClass = [] {
  std::array<TokenClass, 128> classes{};
  for (int b = 0; b < 128; ++b) {
    TokenClass token = TokenClass::kOther;
    if (b == '\n' || b == '\r') {
      token = TokenClass::kNewline;
    } else if (b == ' ') {
      token = TokenClass::kSpace;
    } else if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')) {
      token = TokenClass::kLetter;
    } else if (b >= '0' && b <= '9') {
      token = TokenClass::kDigit;
    }
    classes[static_cast<std::size_t>(b)] = token;
  }
  return classes;
}();

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Canonicalizer::State {
  const UnicodeTables* tables;
  TokenCounter tokens;
  uint64_t forced_cuts;
  uint32_t fields;  // begun since reset()
  // Decomposed, filtered, folded code points since the last boundary; not yet composed.
  // Invariant: a boundary code point can only be at held[0].
  utf8proc_int32_t held[kMaxHeldCodePoints];
  uint8_t held_size;
  uint8_t partial[4];  // a well-formed but incomplete UTF-8 sequence, ≤ 3 bytes
  uint8_t partial_size;
  bool in_field;
  bool field_has_text;  // something other than whitespace was output in this field
  bool pending_space;   // whitespace seen after text: one space goes out before the next text

  void clear(const UnicodeTables* t) {
    tables = t;
    tokens = TokenCounter{};
    forced_cuts = 0;
    fields = 0;
    held_size = 0;
    partial_size = 0;
    in_field = false;
    field_has_text = false;
    pending_space = false;
  }

  void begin_field(Output& out) {
    if (in_field) end_field(out);
    if (fields > 0) out.put_ascii('\n');
    ++fields;
    in_field = true;
  }

  void end_field(Output& out) {
    if (partial_size > 0) {
      partial_size = 0;
      take(kReplacement, out);
    }
    flush_held(out);
    tokens.reset_piece();
    in_field = false;
    field_has_text = false;
    pending_space = false;
  }

  void feed(const uint8_t* p, const uint8_t* end, Output& out) {
    if (!in_field) begin_field(out);
    if (partial_size > 0 && p < end) {
      uint8_t joined[4];
      std::memcpy(joined, partial, partial_size);
      const std::size_t added = std::min<std::size_t>(4 - partial_size, end - p);
      std::memcpy(joined + partial_size, p, added);
      char32_t cp;
      const unsigned consumed = decode(joined, joined + partial_size + added, cp);
      if (consumed == 0) {  // still incomplete: the whole piece joined it
        partial_size = static_cast<uint8_t>(partial_size + added);
        std::memcpy(partial, joined, partial_size);
        return;
      }
      // The partial bytes are a well-formed prefix, so decoding consumed all of them.
      p += consumed - partial_size;
      partial_size = 0;
      take(cp, out);
    }
    while (p < end) {
      if (*p < 0x80) {
        const uint8_t* run_end = p + 1;
        for (uint64_t word; end - run_end >= 8; run_end += 8) {  // 8 bytes at a time
          std::memcpy(&word, run_end, 8);
          if ((word & 0x8080808080808080u) != 0) break;
        }
        while (run_end < end && *run_end < 0x80) ++run_end;
        take_ascii(p, run_end, out);
        p = run_end;
        continue;
      }
      char32_t cp;
      const unsigned consumed = decode(p, end, cp);
      if (consumed == 0) {
        partial_size = static_cast<uint8_t>(end - p);
        std::memcpy(partial, p, partial_size);
        return;
      }
      p += consumed;
      take(cp, out);
    }
  }

  // A run of ASCII: every byte is a boundary that nothing composes into, so what is held goes
  // out, the run but its last byte goes straight to the output stage, and the last byte is held
  // (a combining mark may follow it: '=' + U+0338 → '≠').
  void take_ascii(const uint8_t* p, const uint8_t* end, Output& out) {
    for (const uint8_t* q = p; q < end;) {
      const TokenClass token = kAsciiTokenClass[*q];
      const uint8_t* run_end = q + 1;
      while (run_end < end && kAsciiTokenClass[*run_end] == token) ++run_end;
      tokens.add_ascii_run(token, static_cast<uint32_t>(run_end - q));
      q = run_end;
    }
    flush_held(out);
    const uint8_t* last = end - 1;
    while (p < last) {
      const std::size_t n = std::min<std::size_t>(last - p, Output::kCapacity - 1);
      emit_ascii(p, p + n, out);
      p += n;
    }
    held[0] = *last;
    held_size = 1;
  }

  // The output stage for ≤ Output::kCapacity − 1 ASCII bytes, branch-free per byte: each
  // whitespace byte becomes a space unless the last byte out is one (or nothing is out yet in
  // the field); a space left last becomes pending_space again.
  void emit_ascii(const uint8_t* p, const uint8_t* end, Output& out) {
    char* const begin = out.reserve(static_cast<std::size_t>(end - p) + 1);
    char* o = begin;
    bool after_space = !field_has_text;
    if (pending_space) {
      *o++ = ' ';
      pending_space = false;
      after_space = true;
    }
    for (; p < end; ++p) {
      const bool space = is_ascii_space(*p);
      *o = space ? ' ' : static_cast<char>(*p);
      o += !(space && after_space);
      after_space = space;
    }
    if (o == begin) return;
    field_has_text = true;
    if (after_space) {
      --o;
      pending_space = true;
    }
    out.commit(o);
  }

  void take(char32_t cp, Output& out) {
    const Info info = tables->info(cp);
    tokens.add_non_ascii(info.token(), info.token_weight(), info.latin_letter());
    if (!info.decomposes()) {
      push(static_cast<utf8proc_int32_t>(cp), info, out);
      return;
    }
    utf8proc_int32_t parts[kMaxDecomposition];
    const utf8proc_ssize_t parts_length = utf8proc_decompose_char(
        static_cast<utf8proc_int32_t>(cp), parts, kMaxDecomposition, kDecomposeOptions, nullptr);
    for (utf8proc_ssize_t i = 0; i < parts_length; ++i) {
      push(parts[i], tables->info(static_cast<char32_t>(parts[i])), out);
    }
  }

  // One code point of the NFKD stream.
  void push(utf8proc_int32_t cp, Info info, Output& out) {
    switch (info.action()) {
      case Action::kRemove:
        return;
      case Action::kFold:
        // ASCII: each character a boundary.
        for (char c : tables->fold(info.fold_id())) {
          flush_held(out);
          held[0] = static_cast<unsigned char>(c);
          held_size = 1;
        }
        return;
      case Action::kKeep:
      case Action::kSpace:
        break;
    }
    if (info.boundary()) {
      flush_held(out);
    } else if (held_size == kMaxHeldCodePoints) {
      flush_held(out);
      ++forced_cuts;
    }
    held[held_size++] = cp;
  }

  // Canonical reordering (stable insertion sort of each run of non-starters by ccc; runs are
  // short) and canonical composition of what is held, then the output stage.
  void flush_held(Output& out) {
    if (held_size == 0) return;
    std::size_t size = held_size;
    held_size = 0;
    if (size > 1) {
      uint8_t ccc[kMaxHeldCodePoints];
      for (std::size_t i = 0; i < size; ++i) {
        ccc[i] = static_cast<uint8_t>(tables->info(static_cast<char32_t>(held[i])).ccc());
      }
      for (std::size_t i = 1; i < size; ++i) {
        for (std::size_t j = i; j > 0 && ccc[j] != 0 && ccc[j - 1] > ccc[j]; --j) {
          std::swap(ccc[j], ccc[j - 1]);
          std::swap(held[j], held[j - 1]);
        }
      }
      size = static_cast<std::size_t>(
          utf8proc_normalize_utf32(held, static_cast<utf8proc_ssize_t>(size), kComposeOptions));
    }
    for (std::size_t i = 0; i < size; ++i) emit(static_cast<char32_t>(held[i]), out);
  }

  // Output stage: whitespace runs become one space between text, none at either end.
  void emit(char32_t cp, Output& out) {
    if (cp < 0x80 ? is_ascii_space(static_cast<uint8_t>(cp))
                  : tables->info(cp).action() == Action::kSpace) {
      if (field_has_text) pending_space = true;
      return;
    }
    if (pending_space) {
      out.put_ascii(' ');
      pending_space = false;
    }
    field_has_text = true;
    out.put(cp);
  }
};

Canonicalizer::Canonicalizer() {
  static_assert(sizeof(State) <= kStateBytes);
  static_assert(alignof(State) <= 8);
  static_assert(std::is_trivially_destructible_v<State>);
  new (state_) State;
  state().clear(&UnicodeTables::instance());
}

Canonicalizer::~Canonicalizer() = default;

Canonicalizer::State& Canonicalizer::state() {
  return *std::launder(reinterpret_cast<State*>(state_));
}
const Canonicalizer::State& Canonicalizer::state() const {
  return *std::launder(reinterpret_cast<const State*>(state_));
}

void Canonicalizer::reset() {
  state().clear(state().tables);
}

void Canonicalizer::begin_field(CanonicalSink& sink) {
  Output out(sink);
  state().begin_field(out);
}

void Canonicalizer::feed(std::string_view utf8, CanonicalSink& sink) {
  SLUICE_STAGE(kCanonicalise);
  Output out(sink);
  const auto* p = reinterpret_cast<const uint8_t*>(utf8.data());
  state().feed(p, p + utf8.size(), out);
}

void Canonicalizer::end_field(CanonicalSink& sink) {
  SLUICE_STAGE(kCanonicalise);
  Output out(sink);
  if (state().in_field) state().end_field(out);
}

void Canonicalizer::flush(CanonicalSink& sink) {
  SLUICE_STAGE(kCanonicalise);
  Output out(sink);
  if (state().in_field) state().flush_held(out);
}

void Canonicalizer::flush_copy(CanonicalSink& sink) const {
  SLUICE_STAGE(kCanonicalise);
  if (!state().in_field) return;
  State copy = state();
  Output out(sink);
  copy.flush_held(out);
}

uint64_t Canonicalizer::token_estimate() const {
  return state().tokens.estimate();
}

uint64_t Canonicalizer::forced_cuts() const {
  return state().forced_cuts;
}

}  // namespace sluice
