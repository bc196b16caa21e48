// Streaming reader of the token usage an inference host reports in its response body, so the
// tokens reserved at admission can be reconciled with what the request used. The body (already
// de-chunked and decoded) is fed in pieces split anywhere, down to one byte; state is bounded and
// feed() never allocates.
//
// What counts (src/core/usage_scanner.cpp has the details):
//   - A JSON text whose top-level value is an object holding `"usage": {...}` at the top level, or
//     inside the top-level `"message"` (Anthropic message_start) or `"response"` (OpenAI
//     Responses API events) object. Members of that usage object: prompt_tokens | input_tokens,
//     completion_tokens | output_tokens, total_tokens, each a non-negative integer literal
//     (no sign, fraction or exponent) up to 2^53; anything else is ignored.
//   - Numbers count only if the whole text is valid JSON (structure, escapes, literals, numbers,
//     nesting up to kMaxDepth); a malformed text reports nothing.
//   - Keys are compared as written: a key holding a backslash escape never matches (so
//     `"us\u0061ge"` is not `usage`). Hosts do not escape these ASCII keys.
//   - event_stream (text/event-stream, WHATWG HTML §9.2.6): each event's data lines (joined by
//     "\n") are one JSON text read as above; for each field the latest event that carried it wins.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "sluice/event_stream.hpp"

namespace sluice {

struct TokenUsage {
  static constexpr int64_t kAbsent = -1;
  int64_t prompt_tokens = kAbsent;      // prompt_tokens | input_tokens
  int64_t completion_tokens = kAbsent;  // completion_tokens | output_tokens
  int64_t total_tokens = kAbsent;       // total_tokens
  bool reported() const;                // any field present
  // Tokens the request used: total_tokens when present, else prompt + completion (absent parts
  // as 0); 0 when nothing reported.
  uint64_t used() const;
  bool operator==(const TokenUsage&) const = default;
};

class UsageScanner {
 public:
  UsageScanner();  // ready for a plain JSON body, as after begin(false)

  // A new response body; event_stream: its Content-Type is text/event-stream.
  void begin(bool event_stream);
  // The next body bytes (de-chunked), split anywhere. Ignored after finish() until begin().
  void feed(std::span<const uint8_t> bytes);
  // The body has ended: what was found (all fields absent when nothing was). An event stream's
  // open event counts as ended. Calling it again returns the same value.
  TokenUsage finish();

  // Deepest nesting followed (the top-level object is depth 1); deeper is malformed.
  static constexpr uint32_t kMaxDepth = 64;
  // Longest key that can matter ("completion_tokens"); longer keys are not buffered.
  static constexpr std::size_t kKeyBytes = 17;

  // State per response, all inline: two TokenUsage (found so far, found in the current JSON
  // text), the object/array bit stack (64 levels), the number accumulator, the 17-byte key buffer,
  // 15 one-byte modes, counters and flags, and the 4-byte event-stream framing reader;
  // sizeof(UsageScanner) = 104 bytes on x86-64 (static_assert in the .cpp). Trivially copyable:
  // it owns nothing.

 private:
  // Parser states and roles, defined in src/core/usage_scanner.cpp.
  enum class Mode : uint8_t;
  enum class Step : uint8_t;
  enum class Role : uint8_t;
  enum class Target : uint8_t;

  void scan_json(const uint8_t* p, const uint8_t* end);
  const uint8_t* scan_string(const uint8_t* p, const uint8_t* end);
  void structural(uint8_t c);
  void start_value(uint8_t c);
  void start_string(bool key);
  void end_string();
  bool number_byte(uint8_t c);
  void end_number();
  void end_scalar();
  void open(bool object);
  void close();
  void fail();
  Role role() const;
  Target key_target() const;
  void reset_document();

  void dispatch();

  // The result so far (event stream: merged over the dispatched events).
  TokenUsage result_;
  // The current JSON text (the body, or one event's data): what its usage members say, kept
  // until the text is known to be valid.
  TokenUsage document_;
  uint64_t object_bits_;  // bit d-1 set: the container at depth d is an object (else an array)
  uint64_t number_;       // the current number's value, saturating just above 2^53
  Mode mode_;
  Step step_;        // inside a string, number or literal
  Target target_;    // what the value after the current key is
  uint8_t depth_;    // open containers
  Role roles_[4];    // roles of the containers at depth 1..3; deeper ones are never tracked
  uint8_t literal_;  // which of true/false/null
  uint8_t count_;    // literal bytes matched, or \u hex digits left
  bool in_key_;
  bool negative_;
  uint8_t key_length_;  // bytes in key_; kKeyBytes + 1: the key cannot match
  char key_[kKeyBytes];
  EventStreamReader events_;  // event stream framing
  bool event_stream_;
  bool finished_;
};

}  // namespace sluice
