// What the scanner sees: the extracted prompt text, unescaped and validated by the extractor,
// then folded to a canonical form, chunk by chunk, with bounded state:
//   NFKC (compatibility composition) → removal of zero-width, bidi, format and tag characters
//   and variation selectors → homoglyphs folded to their ASCII skeleton (Unicode confusables
//   data, through ICU) → runs of whitespace to one space → one newline between fields.
// Also estimates the prompt's token count for the token limits.
#pragma once

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
  Canonicalizer();
  ~Canonicalizer();
  Canonicalizer(const Canonicalizer&) = delete;
  Canonicalizer& operator=(const Canonicalizer&) = delete;

  void reset();
  // Starts a new field: a newline separates it from the previous one (none before the first).
  void begin_field(CanonicalSink& sink);
  // The next piece of the field's text: valid UTF-8, possibly cut inside a character sequence
  // that normalisation must see whole (a base and its combining marks) — held back until safe.
  void feed(std::string_view utf8, CanonicalSink& sink);
  // Flushes what was held back for the current field.
  void end_field(CanonicalSink& sink);

  // Tokens estimated over everything fed since reset(); see the README for the method and its
  // error on the corpora.
  uint64_t token_estimate() const;

 private:
  struct State;
  State* state_;
};

}  // namespace sluice
