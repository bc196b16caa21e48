// Streaming extraction of the completion text of an inference response, for the rules of scope
// `completion`. The body (already de-chunked and decoded) is fed in pieces split anywhere, down to
// one byte; state is bounded and feed() never allocates. The decoded text of each completion
// field goes to a CompletionSink, in document order, in pieces.
//
// Fields: every JSON string value of the answer is completion text — what a client shows is not
// a fixed list of paths (reasoning_content, thinking, tool_use input, custom tool input, audio
// transcripts, annotations … all reach users), so Sluice reads them all — except:
//   - the value of a key on kExcludedKeys (completion_extractor.cpp): identifiers, enumerations
//     and timestamps no client shows as text (id, object, model, role, type, status,
//     finish_reason, stop_reason, index, created, system_fingerprint, obfuscation padding, …) and
//     opaque blobs (data, b64_json, encrypted_content, signature);
//   - anything under usage, logprobs and top_logprobs (token accounting; per-token copies of
//     the text that is scanned, which would interleave with it).
// docs/normalisation.md ("Responses") has the list. Keys are compared as written: an escaped key
// (`"\u0069d"`) or one longer than kBufferBytes is never excluded — its value is text. Array
// elements are text unless inside an excluded tree.
//
// Texts of a stream: in an event stream or NDJSON, a text is what a client accumulates on its
// own. Inside a choice (root.choices[*], named by its `index`, else its position) that is one
// field path: the keys below the choice with the first object key dropped (delta / message, which
// a client merges into one message), and the element of each array on the way, named by its
// `index` key (tool_calls[].index), else its position — so delta.content, delta.reasoning_content,
// delta.tool_calls[0].function.arguments, [1]'s arguments, its name, audio.transcript … are texts
// of their own, and choice.message.content joins choice.delta.content. Outside choices, one
// content block (root `index`, Anthropic) or one output item (root `output_index`, Responses) is
// one text, except the members of a root.delta or root.content_block object (Anthropic: text,
// thinking, partial_json …), each a text of that block (content_block.text joins delta.text);
// NDJSON (Ollama): each member of root.message (content, thinking …) and each root string
// (/api/generate's response, thinking) is a text of its own. Each
// text is told to the sink with on_completion_select so that it is scanned on its own (n > 1
// choices, fields and tool calls interleave). An index that comes after text it names and differs
// from what the text was given to (its position, or an earlier index) is malformed: that text went
// to the wrong scan. So is a Responses content_index below the highest one its output item had
// (parts 0, 1, 0: a client keeps them apart; the item is one text here), while no other item's
// content_index came between. So is a text under an escaped key of a choice or block (a client
// decodes it; Sluice does not, and would split the text it names).
//
// Decoding: every escape, \uXXXX included, surrogate pairs combined; a lone surrogate escape
// becomes U+FFFD, and so does each maximal ill-formed subsequence of raw bytes (WHATWG Encoding
// "UTF-8 decode", as a browser or Python's errors="replace" would show the text), so the sink
// always receives valid UTF-8 — and one bad byte cannot hide the rest of a completion from the
// scan, as failing the body would. A piece never ends inside a character: up to 3 bytes of a
// character cut by the end of a fed piece are held back until it completes.
//
// Malformed input (src/core/completion_extractor.cpp has the grammar): a plain body must be
// exactly one JSON object (RFC 8259, nesting up to kMaxDepth); at the first byte where it stops
// being the prefix of one, extraction stops and malformed() turns true. Text already handed to the
// sink stays handed out — it was scanned as it streamed, and a field cut by the failure still gets
// its on_completion_field_end (a held partial character or lone high surrogate is dropped).
// event_stream (text/event-stream, WHATWG HTML §9.2.6): each event's data lines, joined by "\n",
// are one JSON text read as above; `[DONE]` and blank data are ignored; a malformed event sets
// malformed() and the next event is read afresh.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "sluice/event_stream.hpp"

namespace sluice {

// Receives the decoded text of each completion field. Each string value that is a field gives
// zero or more on_completion_text calls (never empty, never splitting a UTF-8 character) and then
// exactly one on_completion_field_end — an empty string too. Pieces are views into the fed bytes
// or into a buffer on feed()'s stack: valid only during the call.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void on_completion_text(std::string_view utf8) = 0;
  virtual void on_completion_field_end() = 0;  // one text field ended (a content, one delta)
  // A stream's pieces that follow belong to text `text` (0 .. kMaxTexts-1) until the next call:
  // each field path of a choice (root.choices[*], by its `index`; tool calls by theirs),
  // Anthropic content block (`index`) and Responses output item (`output_index`) is its own
  // text, so that interleaved choices, fields and tool calls cannot cut one another's phrases.
  // `fresh`: the text slot was taken from an earlier one, whose text has ended. Never called for a
  // plain body (its fields are separate texts anyway): text 0.
  virtual void on_completion_select(uint8_t /*text*/, bool /*fresh*/) {}
};

class CompletionExtractor {
 public:
  CompletionExtractor();  // ready for a plain JSON body, as after begin(false)

  // A new response body; event_stream: its Content-Type is text/event-stream; ndjson: it is
  // application/x-ndjson (Ollama's /api/ streams: one JSON object per line, each a delta).
  // The body's first bytes decide how it is read, as a client that asked for a stream reads it
  // whatever the Content-Type says: `{` after any whitespace a JSON text (or NDJSON); a first
  // byte that starts an event-stream line (`d`ata, `e`vent, `i`d, `r`etry, `:` comment) an event
  // stream; anything else is read as the Content-Type says (a BOM before `{` is then malformed).
  void begin(bool event_stream, bool ndjson = false);
  // The next body bytes (de-chunked), split anywhere. Ignored after finish() until begin().
  void feed(std::span<const uint8_t> bytes, CompletionSink& sink);
  // The body has ended. A plain body that is not one complete object (an empty one included) is
  // malformed; an event stream's open event is read as ended (a host may close without the last
  // blank line). Calling it again does nothing.
  void finish(CompletionSink& sink);
  // The body, or one of its events, could not be followed. Sticky until begin().
  bool malformed() const { return malformed_; }
  // The body is read as an event stream (after the sniff above).
  bool event_stream() const { return event_stream_; }
  // Its texts are deltas of one text (an event stream or NDJSON), not separate fields.
  bool streamed() const { return event_stream_ || ndjson_; }

  // For Sluice to end an event stream itself after the bytes fed so far (a rule cut the rest):
  // writes the bytes that finish the event in progress so that its data is one complete JSON
  // text — an open escape, string, number or literal completed, a missing value given as null,
  // the open containers closed, in a new data line when the current line is not one — and then
  // a blank line that dispatches it. Writes nothing when the stream stands between events.
  // Returns the length, or -1 when it cannot (not an event stream, the event's data already
  // malformed or made malformed by its completion — an `index` cut after a digit that, ended,
  // contradicts the text before it — `out` too small): the caller then resets the connection.
  long write_event_end(std::span<char> out) const;

  // Deepest nesting followed (the top-level object is depth 1); deeper is malformed.
  static constexpr uint32_t kMaxDepth = 64;
  // Texts of a stream read at once (choices, fields, tool calls, blocks, output items
  // interleaved): content + reasoning + three tool calls (arguments and name) of one choice, or
  // content + reasoning of four choices. Beyond it the slot of the text least recently fed is
  // given to the new one (sequential blocks and tool calls, as hosts send them, never mind); a
  // text whose slot was given up coming back (more than kMaxTexts interleaved), or an index
  // above 63, makes the body malformed (cut). Given-up texts of a choice are remembered exactly,
  // kRetiredTexts of them; beyond that a choice that lost one can start no new text (cut).
  static constexpr uint32_t kMaxTexts = 8;
  static constexpr uint32_t kRetiredTexts = 8;
  // Levels of a choice's field path told apart (choice, delta, tool_calls, tool call, function
  // …); deeper containers share the deepest one's path.
  static constexpr uint32_t kPathDepth = 8;
  // Longest key worth keeping: "previous_response_id" (20). Longer keys are not buffered (and
  // are not excluded: their values are text).
  static constexpr std::size_t kBufferBytes = 24;

  // State per response, all inline: the object/array bit stack (64 levels), the roles of the
  // containers at depth 1..7 (deeper ones never have one), the 38-byte key/type buffer, a held
  // partial character (3 bytes) and its decoder state, a pending high surrogate and \u code
  // unit, one-byte modes and flags, the 4-byte event-stream framing reader, and the texts of a
  // stream: the field path of the
  // current choice (8-byte hash, element key and count per level: 80 bytes), 8 slots (identity,
  // owner, last use: 104 bytes) and 8 retired identities (72 bytes);
  // sizeof(CompletionExtractor) = 400 bytes on x86-64 (static_assert in the .cpp). Trivially
  // copyable: it owns nothing.

 private:
  // Parser states and roles, defined in src/core/completion_extractor.cpp.
  enum class Mode : uint8_t;
  enum class Step : uint8_t;
  enum class Role : uint8_t;
  enum class Slot : uint8_t;
  enum class Dest : uint8_t;
  class Output;  // batches decoded pieces for the sink; lives on feed()'s stack

  static Slot key_slot(Role role, std::string_view key, bool ndjson);
  bool choose_text(Output& out);
  uint64_t text_path() const;
  void open_path(bool object);
  bool set_element_key(uint64_t value);
  void retire(uint8_t slot);
  void set_text_key(uint64_t value, Output& out);
  void set_content_index(uint64_t value, Output& out);
  bool inside_choice() const;

  void scan_json(const uint8_t* p, const uint8_t* end, Output& out);
  const uint8_t* scan_text(const uint8_t* p, const uint8_t* end, Output& out);
  const uint8_t* scan_skipped(const uint8_t* p, const uint8_t* end, Output& out);
  void structural(uint8_t c, Output& out);
  void start_value(uint8_t c, Output& out);
  void start_string(Dest dest);
  void end_string(Output& out);
  void code_unit(Output& out);
  bool number_byte(uint8_t c);
  void end_scalar();
  void open(bool object, Slot slot, Output& out);
  void close();
  void fail(Output& out);
  Role role() const;
  bool in_array() const;
  void reset_document();
  void end_document(Output& out);

  void dispatch(Output& out);
  void sniff(std::span<const uint8_t> bytes);

  uint64_t object_bits_;  // bit d-1 set: the container at depth d is an object (else an array)
  Role roles_[4];         // roles of the containers at depth 1..3; deeper ones are never tracked
  Mode mode_;
  Step step_;              // inside a string, number or literal
  Slot slot_;              // what the value after the current key is
  Dest dest_;              // where the current string's bytes go
  uint8_t skip_depth_;     // depth of the excluded tree being walked (kExcludedTrees); 0: none
  bool index_number_;      // the number being read is an index that names a text
  uint64_t number_value_;  // its value so far (saturating)
  // Which text a stream's strings go to: the key (choice index, block index, output index) of
  // the current choice and of the event's root, and whether text went out under it already (an
  // index that comes later and differs would have sent it to the wrong text: malformed).
  uint8_t choice_key_, root_key_;
  bool choice_key_used_, root_key_used_;
  uint8_t choice_count_;  // elements of root.choices so far (a choice's key until its index)
  // The field path inside the current choice, level i = depth 3 + i (the choice itself is
  // level 0): its hash (0: under an escaped key), the key its element has (position or
  // `index`), the elements of an array at that level so far, and the levels under which text
  // went out already (an element index that comes later may not differ).
  uint64_t path_hashes_[kPathDepth];
  uint8_t element_keys_[kPathDepth];
  uint8_t element_counts_[kPathDepth];
  uint64_t key_hash_;   // the last key read inside a choice (0: escaped)
  uint16_t path_used_;  // bit per level
  // Text slots of the response (persist across events): the identity each holds (choice key
  // and field path, or root key), its owner (bit 7: a choice; low bits its key), when it was
  // last fed, how many are in use, and the slot the sink was last told. Retired: root keys
  // whose text was given up (bit per key); the last kRetiredTexts given-up identities of
  // choices, and the choices that lost one beyond those (bit per key).
  uint64_t slot_ids_[kMaxTexts];
  uint32_t slot_stamps_[kMaxTexts];
  uint8_t slot_owners_[kMaxTexts];
  uint32_t stamp_;
  uint8_t slots_used_;
  uint8_t current_text_;
  uint64_t retired_;
  uint64_t retired_ids_[kRetiredTexts];
  uint8_t retired_owners_[kRetiredTexts];
  uint8_t retired_next_;
  uint64_t lost_choices_;
  uint8_t depth_;            // open containers
  uint8_t literal_;          // which of true/false/null/[DONE]
  uint8_t count_;            // literal bytes matched, or \u hex digits left
  uint16_t code_unit_;       // the \u escape being read
  uint16_t high_surrogate_;  // a \u high surrogate waiting for its low half; 0: none
  // A UTF-8 character cut by the end of a piece: its bytes so far, the continuations still due,
  // and the range the next one must be in (RFC 3629 §4).
  uint8_t held_[3];
  uint8_t held_count_;
  uint8_t utf8_needed_;
  uint8_t utf8_low_;
  uint8_t utf8_high_;
  // Bytes in buffer_; beyond kBufferBytes the string cannot match: + 1 not kept (too long, or
  // not worth keeping), + 2 it held an escape.
  uint8_t buffer_length_;
  char buffer_[kBufferBytes];
  EventStreamReader events_;  // event stream framing
  bool event_stream_;
  bool ndjson_;
  uint8_t sniff_;  // how far the body's first bytes have said how it is read (sniff())
  bool finished_;
  bool malformed_;
  bool content_number_;   // the index number being read is a root.content_index
  uint8_t content_item_;  // output_index + 1 of the last content_index read; 0: none
  uint8_t content_part_;  // the highest content_index of that item so far
};

}  // namespace sluice
