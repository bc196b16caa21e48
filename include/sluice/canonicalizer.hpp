// What the scanner sees: the extracted prompt text, unescaped and validated by the extractor,
// then folded to a canonical form, chunk by chunk, with bounded state:
//   NFKC (compatibility composition) → removal of zero-width, bidi, format and tag characters
//   and variation selectors → homoglyphs folded to their ASCII skeleton (Unicode confusables
//   data, through ICU) → runs of whitespace to one space → one newline between fields.
// Also estimates the prompt's token count for the token limits (docs/token-estimate.md).
//
// Exact order, per field (src/core/canonicalizer.cpp): every code point is compatibility-
// decomposed (NFKD, utf8proc); removed classes are dropped and foldable code points replaced by
// their ASCII lookalike *in that decomposed stream*; the result is canonically reordered and
// composed (NFC, utf8proc); whitespace runs become one space, trimmed at both ends. Dropping
// before composing lets a combining mark that followed a removed character reach its base, and
// makes the output a fixed point: canonicalising it again changes nothing (unless a forced cut,
// below, happened).
//
// Homoglyphs: a non-ASCII starter whose UTS #39 skeleton is all ASCII becomes the ASCII
// character of its own kind with that skeleton — Greek capital iota (skeleton "l") becomes 'I',
// Arabic-Indic one '1', Cyrillic 'і' 'i' — or the skeleton itself when no single character
// fits. ASCII input is never changed. Folding is not limited to mixed-script words: Greek,
// Cyrillic, Armenian, Hebrew, Arabic … text comes out partly in ASCII letters (α → a, ο → o,
// ا → l), so rules for those languages are written against the folded form.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice {

// Receives canonical UTF-8 text, in order, in pieces.
class CanonicalSink {
 public:
  virtual ~CanonicalSink() = default;
  virtual void on_canonical(std::string_view utf8) = 0;
};

class Canonicalizer {
 public:
  // The first construction in the process builds the shared, read-only Unicode tables
  // (≈ 55 ms, 147 KB); construct one at start-up, not first on the data path. Later ones
  // allocate nothing: the state is inline, kStateBytes.
  Canonicalizer();
  ~Canonicalizer();
  Canonicalizer(const Canonicalizer&) = delete;
  Canonicalizer& operator=(const Canonicalizer&) = delete;

  void reset();
  // Starts a new field: a newline separates it from the previous one (none before the first).
  // A field still open is ended first; feed() without begin_field() begins one.
  void begin_field(CanonicalSink& sink);
  // The next piece of the field's text: valid UTF-8, possibly cut inside a character sequence
  // that normalisation must see whole (a base and its combining marks) — held back until safe.
  // Whatever the cuts, the total output equals that of one feed() of the whole field. Invalid
  // UTF-8 (a contract breach) becomes U+FFFD per maximal ill-formed subpart; output is always
  // valid UTF-8. Output of a call is handed to the sink before the call returns.
  void feed(std::string_view utf8, CanonicalSink& sink);
  // Flushes what was held back for the current field.
  void end_field(CanonicalSink& sink);
  // Hands over what is held back without ending the field, as if the text were cut here (an
  // incomplete UTF-8 sequence and pending whitespace stay held): for text streamed in deltas
  // whose scan must not wait for the next delta. Only combining marks at the start of the next
  // piece then come out differently from the whole text (they no longer reach their base).
  void flush(CanonicalSink& sink);
  // Hands over what flush() would, from a copy of the state: this one is unchanged. What the
  // text scans as if it were cut here, for a scan that must decide on the text handed out so far
  // (a response cut at a segment's end) without changing what the text becomes when it goes on.
  void flush_copy(CanonicalSink& sink) const;

  // Tokens estimated over everything fed since reset() (the raw text, as the model's tokenizer
  // sees it); see docs/token-estimate.md for the method and its error on the corpora.
  uint64_t token_estimate() const;

  // Times a run of more than kMaxHeldCodePoints code points without a safe composition
  // boundary (a base with ≥ 32 combining marks; real text has at most a few — cf. the
  // Unicode Stream-Safe Text Format, UAX #15 §13, which allows 30) was cut anyway since reset().
  // Only across such a cut may the output differ from the whole-field pipeline above.
  uint64_t forced_cuts() const;

  // Held-back text is bounded to this many code points (UTF-32: 128 bytes).
  static constexpr std::size_t kMaxHeldCodePoints = 32;
  // Bytes of state per flow, all inline (no heap).
  static constexpr std::size_t kStateBytes = 192;

 private:
  // Implementation state: see src/core/canonicalizer.cpp.
  struct State;
  alignas(8) unsigned char state_[kStateBytes];
  State& state();
  const State& state() const;
};

}  // namespace sluice
