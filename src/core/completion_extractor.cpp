// Streaming completion-text extraction: one pass over the response body, byte spans in, decoded
// UTF-8 pieces out, bounded state, no allocation.
//
// JSON (RFC 8259), followed strictly, as a prefix validator: the first byte at which the input
// stops being the prefix of a valid text fails it, so the text handed out before a failure is
// exactly the text of the valid prefix. Checked: structure and nesting (bit stack, kMaxDepth
// levels), the literals, the number grammar (no leading zeros), string escapes (\uXXXX needs four
// hex digits), no raw control characters in strings, only ASCII outside strings, nothing but
// whitespace after the top-level value, which must be an object (or, as a whole event of an event
// stream, `[DONE]`). Not a failure: ill-formed UTF-8 inside a string and lone surrogate escapes —
// they cannot move a structural byte, and a field's text is decoded with U+FFFD for them (the
// header says why) rather than dropping the rest of the completion from the scan.
//
// Paths: a container has a role only when its whole path is one of the fields' (below); roles are
// kept for depth 1..7 (root > choices > choice > message > tool_calls > tool call > function is
// the deepest), everything else is walked with one bit per level. A key is compared only inside a
// container with a role, through the kBufferBytes buffer; a key that is longer or holds an escape
// cannot match.
//
//   root          choices → [choice]   output → [output item]   content → [part]
//                 delta → text (gated, see the header) or {text}   type → the event type
//   choice        message → message   delta → message   text → text
//   message       content → text or [part]   refusal → text   tool_calls → [tool call]
//   tool call     function → {arguments → text}
//   output item   content → [part]   arguments → text
//   part          text → text
//
// Strings: a field's bytes go through the decoder (scan_text); every other string is only
// validated (scan_skipped), its bytes kept only when it is a key in a tracked container or the
// top-level type. Decoded bytes are batched in Output, a buffer on feed()'s stack, and handed to
// the sink when it fills, when a field ends and when feed() returns; a run of 64 bytes or more of
// the input is handed over in place, without a copy.
//
// Event stream (WHATWG HTML, "Interpreting an event stream"), as in usage_scanner.cpp: the
// framing — line ends, the byte order mark, `data` lines joined with "\n", other fields skipped —
// is EventStreamReader's (event_stream.cpp). Its data pieces stream straight into the JSON reader,
// never buffered (the "\n" joins are whitespace to it). The end of an event with data ends the
// text: data that is not a whole valid object (nor `[DONE]`, nor blank) is malformed. finish()
// ends an open event.
//
// Cost (quick timing: g++ 12 -O2, AMD EPYC VM, 1 MiB bodies fed in 1460-byte pieces, 50 rounds,
// process CPU time, a sink that only counts; usage_scanner on the same bodies in brackets):
// ≈ 0.13 ns/byte for an OpenAI chat completion body of English text (SSE2 over the content,
// handed over in place; [0.7]); ≈ 1.4 ns/byte for CJK text (each 3-byte character checked, [0.6]);
// ≈ 1.7–1.9 ns/byte for OpenAI chat, Anthropic and Responses streams (~190-byte events dense in
// keys; [1.5–1.8]) — ≈ 0.35 µs per event, against tens of ms between events from the host.
#include "sluice/completion_extractor.hpp"

#include <array>
#include <cstring>
#include <string_view>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "sluice/utf8.hpp"

namespace sluice {

enum class CompletionExtractor::Mode : uint8_t {
  kStart,        // before the top-level value
  kValue,        // a value must follow (after ':', or after ',' in an array)
  kArrayFirst,   // after '[': a value or ']'
  kObjectFirst,  // after '{': a key or '}'
  kKey,          // after ',' in an object: a key
  kColon,        // after a key
  kAfterValue,   // ',' or the closing bracket of the current container
  kDone,         // after the top-level value: whitespace only
  kString,
  kNumber,
  kLiteral,
  kFailed,  // not valid JSON: nothing more is read until the text ends
};

// One step field serves strings and numbers (never both at once).
enum class CompletionExtractor::Step : uint8_t {
  kPlain,               // string: between characters
  kUtf8,                // string: inside a character cut by the end of a piece (bytes held)
  kEscape,              // string: after '\'
  kHex,                 // string: inside \uXXXX (count_ digits left)
  kAfterHigh,           // string: after a high-surrogate escape, '\' would start its low half
  kAfterHighBackslash,  // ... and 'u' after that
  kMinus,               // number: after '-'
  kZero,                // number: integer part "0"
  kInt,                 // number: integer part [1-9][0-9]*
  kDot,                 // number: after '.'
  kFrac,                // number: in the fraction
  kExp,                 // number: after 'e' / 'E'
  kExpSign,
  kExpDigits,
};

// What a tracked container is: only the path root.choices[*] matters (each choice of a stream
// is its own text).
enum class CompletionExtractor::Role : uint8_t {
  kOther,
  kRoot,
  kChoices,  // root.choices: array of kChoice
  kChoice,
  kBlockDelta,  // root.delta or root.content_block, an object (Anthropic): its members apart
};

// What the value after the current key is.
enum class CompletionExtractor::Slot : uint8_t {
  kText,          // any key not listed: a string value is completion text
  kExcluded,      // a key whose string value no client shows as text (kExcludedKeys)
  kTree,          // a key whose whole value no client shows (kExcludedTrees)
  kChoices,       // root.choices
  kIndex,         // choice.index, root.index, root.output_index: which text of a stream
  kContentIndex,  // root.content_index (Responses): the part of the output item
  kBlockDelta,    // root.delta, root.content_block: text; an object is a block's fields
};

enum class CompletionExtractor::Dest : uint8_t {
  kDiscard,  // validated only
  kKey,      // a key: buffered
  kText,     // a field: decoded and handed to the sink
};

namespace {

// buffer_length_ beyond the buffer: a string that is not kept (too long, or not worth keeping),
// and one that held a backslash escape. Neither matches; the type tells them apart (see the
// header).
constexpr uint8_t kNotKept = CompletionExtractor::kBufferBytes + 1;
constexpr uint8_t kEscaped = CompletionExtractor::kBufferBytes + 2;
constexpr std::size_t kTrackedDepth = 4;  // roles_ entries: depth 0 (unused) .. 3
constexpr uint32_t kMaxTextKey = 63;
// Identities of a stream's texts (choose_text): a root key's, or a choice key's and its field
// path's, hashed (splitmix64's finaliser over each part; a 64-bit collision between two field
// names of one choice would join their texts). An element's position or index is tagged apart
// from a key's hash.
constexpr uint64_t kRootTag = 0x726f6f74u, kChoiceTag = 0x63686f696365u, kBlockTag = 0x626c6f636bu;
constexpr uint64_t kElementTag = uint64_t{1} << 63;
constexpr uint8_t kChoiceOwner = 0x80;
constexpr uint64_t mix_path(uint64_t hash, uint64_t part) {
  uint64_t z = hash ^ (part + 0x9e3779b97f4a7c15u + (hash << 6) + (hash >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return z == 0 ? 1 : z;
}
// FNV-1a over a key's bytes (never 0: 0 marks an escaped key).
constexpr uint64_t hash_key(std::string_view key, bool longer) {
  uint64_t h = 0xcbf29ce484222325u;
  for (const char c : key) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3u;
  return (mix_path(h, longer ? 1 : 0) & ~kElementTag) | 1;
}
// sniff_: nothing of the body yet; only whitespace so far; decided.
constexpr uint8_t kSniffStart = 0, kSniffAfterWhitespace = 1,
                  kSniffDone = 2;  // a stream's choice / block / item index
// [DONE] ends an OpenAI stream; it is read as a literal, only as an event's whole data.
constexpr std::string_view kLiterals[] = {"true", "false", "null", "[DONE]"};
constexpr uint8_t kDoneLiteral = 3;
// Keys whose string value no client shows as text: identifiers, enumerations, timestamps,
// opaque blobs (docs/normalisation.md, "Responses", lists them). Every other string is text.
constexpr std::string_view kExcludedKeys[] = {
    "id",
    "object",
    "created",
    "created_at",
    "completed_at",
    "model",
    "system_fingerprint",
    "service_tier",
    "finish_reason",
    "stop_reason",
    "done_reason",
    "stop_sequence",
    "role",
    "type",
    "status",
    "index",
    "item_id",
    "call_id",
    "tool_call_id",
    "response_id",
    "previous_response_id",
    "event_id",
    "obfuscation",
    "encrypted_content",
    "signature",
    "data",
    "b64_json",
    "expires_at",
    "output_index",
    "content_index",
    "sequence_number",
};
// Keys whose whole value no client shows as text (token accounting, per-token alternatives).
constexpr std::string_view kExcludedTrees[] = {"usage", "logprobs", "top_logprobs"};
static_assert(std::size(kExcludedKeys[20]) <= CompletionExtractor::kBufferBytes);

// Bytes a skipped string holds as they are: anything but '"', '\' and the control characters.
constexpr std::array<bool, 256> kSkippedBytes = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x100; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

// Bytes a field's text holds as they are without decoding: printable ASCII but '"' and '\'.
constexpr std::array<bool, 256> kAsciiText = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

// RFC 3629 §4: continuation bytes after a lead; the first continuation's range excludes
// overlongs (E0, F0), UTF-16 surrogates (ED) and code points above U+10FFFF (F4).
struct Utf8Lead {
  uint8_t continuations = 0;  // 0: not a valid lead byte
  uint8_t low = 0x80;
  uint8_t high = 0xbf;
};
constexpr std::array<Utf8Lead, 256> kUtf8Leads = [] {
  std::array<Utf8Lead, 256> leads{};
  for (int c = 0xc2; c <= 0xdf; ++c) leads[c] = {1, 0x80, 0xbf};
  for (int c = 0xe0; c <= 0xef; ++c) leads[c] = {2, 0x80, 0xbf};
  for (int c = 0xf0; c <= 0xf4; ++c) leads[c] = {3, 0x80, 0xbf};
  leads[0xe0].low = 0xa0;
  leads[0xed].high = 0x9f;
  leads[0xf0].low = 0x90;
  leads[0xf4].high = 0x8f;
  return leads;
}();

constexpr std::array<int8_t, 256> kHexDigits = [] {
  std::array<int8_t, 256> digits{};
  digits.fill(-1);
  for (int c = '0'; c <= '9'; ++c) digits[c] = static_cast<int8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) digits[c] = static_cast<int8_t>(c - 'a' + 10);
  for (int c = 'A'; c <= 'F'; ++c) digits[c] = static_cast<int8_t>(c - 'A' + 10);
  return digits;
}();

// RFC 8259 §7 short escapes: the byte each stands for; 0 where the letter is not one.
constexpr std::array<uint8_t, 256> kShortEscapes = [] {
  std::array<uint8_t, 256> decoded{};
  decoded['"'] = '"';
  decoded['\\'] = '\\';
  decoded['/'] = '/';
  decoded['b'] = '\b';
  decoded['f'] = '\f';
  decoded['n'] = '\n';
  decoded['r'] = '\r';
  decoded['t'] = '\t';
  return decoded;
}();

constexpr bool is_whitespace(uint8_t c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}
constexpr bool is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}
constexpr bool is_high_surrogate(uint32_t unit) {
  return unit >= 0xd800 && unit <= 0xdbff;
}
constexpr bool is_low_surrogate(uint32_t unit) {
  return unit >= 0xdc00 && unit <= 0xdfff;
}
constexpr uint32_t combine_surrogates(uint32_t high, uint32_t low) {
  return 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
}

// The first byte in [p, end) that a string cannot hold undecoded: '"', '\', a control character,
// or (SSE2 path) any byte >= 0x80 — one signed compare catches both. The caller looks at it.
inline const uint8_t* find_special(const uint8_t* p, const uint8_t* end) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i space = _mm_set1_epi8(0x20);
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i special =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                     _mm_cmplt_epi8(v, space));
    const int mask = _mm_movemask_epi8(special);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end && kAsciiText[*p]) ++p;
  return p;
}

// The end of the run at p of what a field's text holds as it stands: printable ASCII but '"' and
// '\', and whole well-formed UTF-8 characters, checked in place. What ends it (a quote, an
// escape, a control character, an ill-formed or cut sequence, or the end) is the caller's.
inline const uint8_t* find_text_run_end(const uint8_t* p, const uint8_t* end) {
  while (true) {
    p = find_special(p, end);
    // Non-ASCII text comes in stretches (CJK, emoji): its characters one after another.
    while (p < end && *p >= 0x80) {
      const Utf8Lead lead = kUtf8Leads[*p];
      const std::ptrdiff_t size = lead.continuations + 1;
      if (size == 1 || end - p < size || p[1] < lead.low || p[1] > lead.high) return p;
      if (size >= 3 && (p[2] & 0xc0) != 0x80) return p;
      if (size == 4 && (p[3] & 0xc0) != 0x80) return p;
      p += size;
    }
    if (p == end || !kAsciiText[*p]) return p;
  }
}

// Reads an event end through a copy of the extractor: its text is not scanned.
class DiscardSink final : public CompletionSink {
 public:
  void on_completion_text(std::string_view) override {}
  void on_completion_field_end() override {}
};

}  // namespace

// Decoded pieces on their way to the sink. Everything appended is whole characters, so a piece
// handed over never splits one; a flush happens before an append that would not fit.
class CompletionExtractor::Output {
 public:
  explicit Output(CompletionSink& sink) : sink_(sink) {}

  void text(const uint8_t* data, std::size_t size) {
    if (size == 0) return;
    if (size >= kInPlace) {
      flush();
      sink_.on_completion_text({reinterpret_cast<const char*>(data), size});
      return;
    }
    if (size > sizeof(buffer_) - size_) flush();
    std::memcpy(buffer_ + size_, data, size);
    size_ += size;
  }

  // A scalar value (never a surrogate) as UTF-8.
  void code_point(uint32_t cp) {
    uint8_t bytes[4];
    text(bytes, encode_utf8(cp, bytes));
  }

  void replacement() {
    static constexpr uint8_t kReplacement[] = {0xef, 0xbf, 0xbd};  // U+FFFD
    text(kReplacement, sizeof(kReplacement));
  }

  void field_end() {
    flush();
    sink_.on_completion_field_end();
  }

  void select(uint8_t text, bool fresh) {
    flush();
    sink_.on_completion_select(text, fresh);
  }

  void flush() {
    if (size_ == 0) return;
    sink_.on_completion_text({reinterpret_cast<const char*>(buffer_), size_});
    size_ = 0;
  }

 private:
  // Runs at least this long are handed over in place: the copy is skipped and the sink (a
  // Hyperscan stream) sees few, long pieces either way.
  static constexpr std::size_t kInPlace = 64;
  CompletionSink& sink_;
  std::size_t size_ = 0;
  uint8_t buffer_[256];
};

static_assert(std::is_trivially_copyable_v<CompletionExtractor>);
static_assert(sizeof(CompletionExtractor) <= 400, "state per response grew: update the header");

CompletionExtractor::CompletionExtractor() {
  begin(false);
}

long CompletionExtractor::write_event_end(std::span<char> out) const {
  if (!event_stream_ || finished_) return -1;
  std::size_t n = 0;
  const auto put = [&](std::string_view text) {
    if (text.empty()) return true;  // (an empty view's data may be null: no memcpy from it)
    if (n + text.size() > out.size()) return false;
    std::memcpy(out.data() + n, text.data(), text.size());
    n += text.size();
    return true;
  };
  const bool in_value = events_.in_data_value();
  // A field name cut short ("dat", or "data" without its colon yet) is made another name, so
  // that its line adds no data.
  if (events_.in_field_name() && !put("-")) return -1;
  if (!in_value && !events_.event_has_data()) {
    // Between events, or in a line that adds no data (a comment, `event:`, a partial field name):
    // that line is ended, and nothing is left to dispatch.
    if (events_.at_line_start()) return 0;
    return put("\n") ? static_cast<long>(n) : -1;
  }
  if (mode_ == Mode::kFailed) return -1;
  std::string_view json;  // what completes the JSON text before its containers close
  char literal_rest[8] = {};
  switch (mode_) {
    case Mode::kStart:
      json = "{}";  // data, but no value yet: an empty object, which a client can parse
      break;
    case Mode::kValue:
      json = "null";
      break;
    case Mode::kKey:
      json = "\"\":null";
      break;
    case Mode::kColon:
      json = ":null";
      break;
    case Mode::kString: {
      const bool key = dest_ == Dest::kKey;
      switch (step_) {
        case Step::kEscape:
        case Step::kAfterHighBackslash:
          json = key ? "n\":null" : "n\"";  // "\" + "n": an escaped newline
          break;
        case Step::kHex:
          json = key ? std::string_view("0000\":null").substr(4 - count_)
                     : std::string_view("0000\"").substr(4 - count_);
          break;
        default:
          json = key ? "\":null" : "\"";
      }
      break;
    }
    case Mode::kNumber:
      if (step_ == Step::kMinus || step_ == Step::kDot || step_ == Step::kExp ||
          step_ == Step::kExpSign)
        json = "0";
      break;
    case Mode::kLiteral: {
      const std::string_view literal = kLiterals[literal_];
      const std::string_view rest = literal.substr(std::min<std::size_t>(count_, literal.size()));
      std::memcpy(literal_rest, rest.data(), rest.size());
      json = {literal_rest, rest.size()};
      break;
    }
    default:  // kArrayFirst, kObjectFirst, kAfterValue, kDone: nothing is missing
      break;
  }
  // Outside a data value, the completion goes in a data line of its own (JSON allows the line
  // break between tokens that the data line join makes).
  if (!in_value) {
    // A token cannot continue across the data line join ("\n" inside a string or a number).
    if (mode_ == Mode::kString || mode_ == Mode::kLiteral ||
        (mode_ == Mode::kNumber && !json.empty()))
      return -1;
    if (!events_.at_line_start() && !put("\n")) return -1;
    if ((!json.empty() || depth_ > 0) && !put("data: ")) return -1;
  }
  if (!put(json)) return -1;
  for (uint8_t depth = depth_; depth > 0; --depth) {
    const bool object = (object_bits_ >> (depth - 1) & 1) != 0;
    if (!put(object ? "}" : "]")) return -1;
  }
  if (!put("\n\n")) return -1;
  // Invariant: the event end reads on without a failure. Completing a value can still fail the
  // event where the value was only cut before: an `index` number whose last digit makes it
  // contradict the text it names (`"text":"…","index":5` cut after the 5, the text already went
  // to the position). Then there is no well-formed end: the caller resets the connection.
  CompletionExtractor after = *this;
  after.malformed_ = false;
  DiscardSink ignore;
  after.feed({reinterpret_cast<const uint8_t*>(out.data()), n}, ignore);
  return after.malformed_ ? -1 : static_cast<long>(n);
}

void CompletionExtractor::begin(bool event_stream, bool ndjson) {
  reset_document();
  events_ = {};
  event_stream_ = event_stream && !ndjson;
  ndjson_ = ndjson;
  sniff_ = kSniffStart;
  std::memset(slot_ids_, 0, sizeof(slot_ids_));
  std::memset(slot_stamps_, 0, sizeof(slot_stamps_));
  std::memset(slot_owners_, 0, sizeof(slot_owners_));
  stamp_ = 0;
  slots_used_ = 0;
  current_text_ = 0;
  retired_ = 0;
  std::memset(retired_ids_, 0, sizeof(retired_ids_));
  std::memset(retired_owners_, 0, sizeof(retired_owners_));
  retired_next_ = 0;
  lost_choices_ = 0;
  content_item_ = 0;
  content_part_ = 0;
  finished_ = false;
  malformed_ = false;
}

void CompletionExtractor::reset_document() {
  object_bits_ = 0;
  std::memset(roles_, 0, sizeof(roles_));  // Role::kOther
  mode_ = Mode::kStart;
  step_ = Step::kPlain;
  slot_ = Slot::kText;
  dest_ = Dest::kDiscard;
  skip_depth_ = 0;
  index_number_ = false;
  content_number_ = false;
  number_value_ = 0;
  choice_key_ = root_key_ = 0;
  choice_key_used_ = root_key_used_ = false;
  choice_count_ = 0;
  std::memset(path_hashes_, 0, sizeof(path_hashes_));
  std::memset(element_keys_, 0, sizeof(element_keys_));
  std::memset(element_counts_, 0, sizeof(element_counts_));
  key_hash_ = 0;
  path_used_ = 0;
  depth_ = 0;
  literal_ = 0;
  count_ = 0;
  code_unit_ = 0;
  high_surrogate_ = 0;
  std::memset(held_, 0, sizeof(held_));
  held_count_ = 0;
  utf8_needed_ = 0;
  utf8_low_ = 0x80;
  utf8_high_ = 0xbf;
  buffer_length_ = 0;
  std::memset(buffer_, 0, sizeof(buffer_));
}

void CompletionExtractor::feed(std::span<const uint8_t> bytes, CompletionSink& sink) {
  if (finished_ || bytes.empty()) return;
  if (sniff_ != kSniffDone) sniff(bytes);
  Output out(sink);
  if (event_stream_) {
    events_.feed(
        bytes,
        [&](std::span<const uint8_t> data) {
          scan_json(data.data(), data.data() + data.size(), out);
        },
        [&] { dispatch(out); });
  } else {
    scan_json(bytes.data(), bytes.data() + bytes.size(), out);
  }
  out.flush();
}

void CompletionExtractor::finish(CompletionSink& sink) {
  if (finished_) return;
  finished_ = true;
  Output out(sink);
  if (event_stream_) {
    if (events_.finish()) dispatch(out);  // a host may close without the last blank line
  } else {
    end_document(out);
  }
  out.flush();
}

// The body's first bytes say how it is read (see begin()): `{` after any whitespace a JSON text;
// an event-stream line start as the very first byte an event stream (after whitespace it would
// be another line: a JSON reading fails on it, which cuts). Whitespace means the same in both
// readings up to there (blank lines, JSON whitespace).
void CompletionExtractor::sniff(std::span<const uint8_t> bytes) {
  for (const uint8_t c : bytes) {
    if (is_whitespace(c)) {
      sniff_ = kSniffAfterWhitespace;
      continue;
    }
    if (c == '{') {
      event_stream_ = false;
    } else if (sniff_ == kSniffStart && !ndjson_ &&
               (c == 'd' || c == 'e' || c == 'i' || c == 'r' || c == ':')) {
      event_stream_ = true;
    }
    sniff_ = kSniffDone;
    return;
  }
}

// The current JSON text has ended: anything short of a whole value is malformed. In an event
// stream, data that was blank (kStart) is no text at all.
void CompletionExtractor::end_document(Output& out) {
  if (mode_ == Mode::kDone || mode_ == Mode::kFailed) return;
  if (event_stream_ && mode_ == Mode::kStart) return;
  fail(out);
}

// ---- JSON ---------------------------------------------------------------------------------

void CompletionExtractor::scan_json(const uint8_t* p, const uint8_t* const end, Output& out) {
  while (p < end) {
    switch (mode_) {
      case Mode::kString:
        p = dest_ == Dest::kText ? scan_text(p, end, out) : scan_skipped(p, end, out);
        break;
      case Mode::kNumber:
        if (number_byte(*p)) {
          if (index_number_ && is_digit(*p) && number_value_ <= kMaxTextKey)
            number_value_ = number_value_ * 10 + (*p - '0');
          ++p;
        } else {
          const bool complete = step_ == Step::kZero || step_ == Step::kInt ||
                                step_ == Step::kFrac || step_ == Step::kExpDigits;
          if (!complete) return fail(out);
          if (index_number_) {
            index_number_ = false;
            // An index is a whole number: anything else cannot name a text.
            if (step_ != Step::kZero && step_ != Step::kInt) return fail(out);
            if (content_number_) {
              set_content_index(number_value_, out);
            } else {
              set_text_key(number_value_, out);
            }
            if (mode_ == Mode::kFailed) return;
          }
          end_scalar();  // *p is read again in the mode that follows
        }
        break;
      case Mode::kLiteral: {
        const std::string_view literal = kLiterals[literal_];
        if (*p++ != static_cast<uint8_t>(literal[count_])) {
          fail(out);
        } else if (++count_ == literal.size()) {
          end_scalar();
        }
        break;
      }
      case Mode::kFailed:
        return;
      default:
        structural(*p++, out);
    }
  }
}

// A field cut by the failure is closed: every field the sink saw begin also ends.
void CompletionExtractor::fail(Output& out) {
  if (mode_ == Mode::kString && dest_ == Dest::kText) out.field_end();
  mode_ = Mode::kFailed;
  malformed_ = true;
}

void CompletionExtractor::structural(uint8_t c, Output& out) {
  if (is_whitespace(c)) return;
  switch (mode_) {
    case Mode::kStart:
      // RFC 8259 allows any value here; a response is always an object.
      if (c == '{') return open(true, Slot::kText, out);
      if (c == '[' && event_stream_) {
        mode_ = Mode::kLiteral;
        literal_ = kDoneLiteral;
        count_ = 1;
        return;
      }
      return fail(out);
    case Mode::kArrayFirst:
      if (c == ']') return close();
      [[fallthrough]];
    case Mode::kValue:
      return start_value(c, out);
    case Mode::kObjectFirst:
      if (c == '}') return close();
      [[fallthrough]];
    case Mode::kKey:
      if (c != '"') return fail(out);
      start_string(Dest::kKey);
      return;
    case Mode::kColon:
      if (c != ':') return fail(out);
      mode_ = Mode::kValue;
      return;
    case Mode::kAfterValue: {
      const bool object = !in_array();
      if (c == ',') {
        mode_ = object ? Mode::kKey : Mode::kValue;
      } else if (c == (object ? '}' : ']')) {
        close();
      } else {
        fail(out);
      }
      return;
    }
    default:  // kDone: only whitespace may follow the top-level value; NDJSON: the next object
      if (ndjson_ && c == '{') {
        reset_document();
        return open(true, Slot::kText, out);
      }
      return fail(out);
  }
}

CompletionExtractor::Slot CompletionExtractor::key_slot(Role role, std::string_view key,
                                                        bool ndjson) {
  if (role == Role::kRoot) {
    if (key == "choices") return Slot::kChoices;
    if (key == "index" || key == "output_index") return Slot::kIndex;
    if (key == "content_index") return Slot::kContentIndex;
    if (key == "delta" || key == "content_block") return Slot::kBlockDelta;
    // Ollama's message: content and thinking are accumulated apart, as a block's fields.
    if (ndjson && key == "message") return Slot::kBlockDelta;
  } else if (role == Role::kChoice && key == "index") {
    return Slot::kIndex;
  }
  for (const std::string_view tree : kExcludedTrees) {
    if (key == tree) return Slot::kTree;
  }
  for (const std::string_view excluded : kExcludedKeys) {
    if (key == excluded) return Slot::kExcluded;
  }
  return Slot::kText;
}

bool CompletionExtractor::in_array() const {
  return depth_ > 0 && ((object_bits_ >> (depth_ - 1)) & 1) == 0;
}

bool CompletionExtractor::inside_choice() const {
  return depth_ >= 3 && roles_[3] == Role::kChoice;
}

// The field path of the string that starts now, inside a choice: its container's path and its
// key (object) or position (array). 0: an escaped key is on the way.
uint64_t CompletionExtractor::text_path() const {
  const uint32_t level = std::min<uint32_t>(depth_ - 3u, kPathDepth - 1);
  const uint64_t container = path_hashes_[level];
  if (container == 0) return 0;
  if (depth_ - 3u >= kPathDepth) return container;  // deeper: the deepest level's path
  if (in_array()) return mix_path(container, kElementTag | (element_counts_[level] - 1u));
  return key_hash_ == 0 ? 0 : mix_path(container, key_hash_);
}

// A given-up text: a root key's is remembered by its key, a choice's by its identity (the
// oldest of those forgotten marks its choice as one that can start no new text).
void CompletionExtractor::retire(uint8_t slot) {
  const uint8_t owner = slot_owners_[slot];
  if ((owner & kChoiceOwner) == 0) {
    retired_ |= uint64_t{1} << owner;
    return;
  }
  const uint8_t oldest = retired_owners_[retired_next_];
  if ((oldest & kChoiceOwner) != 0) lost_choices_ |= uint64_t{1} << (oldest & kMaxTextKey);
  retired_ids_[retired_next_] = slot_ids_[slot];
  retired_owners_[retired_next_] = owner;
  retired_next_ = static_cast<uint8_t>((retired_next_ + 1) % kRetiredTexts);
}

// A stream's text string starts: the sink is told which text it belongs to. False: failed.
bool CompletionExtractor::choose_text(Output& out) {
  if (!streamed()) return true;
  const bool choice = inside_choice();
  const uint8_t key = choice ? choice_key_ : root_key_;
  (choice ? choice_key_used_ : root_key_used_) = true;
  uint64_t id = mix_path(kRootTag, key);
  uint8_t owner = key;
  if (choice) {
    const uint64_t path = text_path();
    if (path == 0) {  // an escaped key names the field: which text it is cannot be told
      fail(out);
      return false;
    }
    id = mix_path(mix_path(kChoiceTag, key), path);
    owner = static_cast<uint8_t>(kChoiceOwner | key);
    const uint32_t levels = std::min<uint32_t>(depth_ - 3u, kPathDepth - 1) + 1;
    path_used_ |= static_cast<uint16_t>((1u << levels) - 1);
  } else if (depth_ >= 2 && roles_[2] == Role::kBlockDelta) {
    // A block's field: text_delta and thinking_delta of one index are texts apart, as a client
    // accumulates them; content_block.text and delta.text are one.
    if (key_hash_ == 0) {
      fail(out);
      return false;
    }
    id = mix_path(mix_path(kBlockTag, key), key_hash_);
    owner = static_cast<uint8_t>(kChoiceOwner | key);
  } else if (ndjson_ && depth_ == 1) {
    // An NDJSON root string (Ollama /api/generate's response, thinking): a text per key.
    if (key_hash_ == 0) {
      fail(out);
      return false;
    }
    id = mix_path(mix_path(kRootTag, key), key_hash_);
    owner = static_cast<uint8_t>(kChoiceOwner | key);
  }
  ++stamp_;
  for (uint8_t slot = 0; slot < slots_used_; ++slot) {
    if (slot_ids_[slot] != id) continue;
    slot_stamps_[slot] = stamp_;
    if (slot != current_text_) {
      current_text_ = slot;
      out.select(slot, false);
    }
    return true;
  }
  // A new text, or one whose slot was given up: that one cannot go on.
  const bool fields = (owner & kChoiceOwner) != 0;  // a choice's or a block's field
  bool retired = fields ? (lost_choices_ >> key & 1) != 0 : (retired_ >> key & 1) != 0;
  for (uint32_t r = 0; r < kRetiredTexts && fields && !retired; ++r)
    retired = retired_owners_[r] == owner && retired_ids_[r] == id;
  if (retired) {
    fail(out);
    return false;
  }
  uint8_t slot = slots_used_;
  bool fresh = false;
  if (slots_used_ < kMaxTexts) {
    ++slots_used_;
  } else {
    slot = 0;  // the least recently fed
    for (uint8_t s = 1; s < kMaxTexts; ++s) {
      if (slot_stamps_[s] < slot_stamps_[slot]) slot = s;
    }
    retire(slot);
    fresh = true;
  }
  slot_ids_[slot] = id;
  slot_owners_[slot] = owner;
  slot_stamps_[slot] = stamp_;
  if (slot != current_text_ || fresh) out.select(slot, fresh);
  current_text_ = slot;
  return true;
}

// An index that names the text of the current choice (or of the event, at the root), or the
// element of an array inside a choice (tool_calls[].index).
void CompletionExtractor::set_text_key(uint64_t value, Output& out) {
  if (value > kMaxTextKey) return fail(out);
  const bool choice = inside_choice();
  if (choice && depth_ > 3) {
    if (!set_element_key(value)) fail(out);
    return;
  }
  uint8_t& key = choice ? choice_key_ : root_key_;
  const bool used = choice ? choice_key_used_ : root_key_used_;
  // Text already went out under the position (or an earlier index): it went to another text.
  if (used && key != value) return fail(out);
  key = static_cast<uint8_t>(value);
}

// A Responses event's content part (root.content_index) of the output item named so far
// (root_key_: output_index, read before it as OpenAI writes them). A client's item takes a part's
// text from its deltas and content_part.added alike, so the item is read as one text: a part
// that comes back after a later one of the same item began (0, 1, 0) would join what the
// client keeps apart — cut.
void CompletionExtractor::set_content_index(uint64_t value, Output& out) {
  if (value > kMaxTextKey) return fail(out);
  const uint8_t item = static_cast<uint8_t>(root_key_ + 1);
  if (content_item_ == item) {
    if (value < content_part_) return fail(out);
  } else {
    content_item_ = item;
  }
  content_part_ = static_cast<uint8_t>(value);
}

// The element at depth_ (an object in an array, inside a choice) is named by `value`. False:
// text already went out under its position or an earlier index, and `value` differs.
bool CompletionExtractor::set_element_key(uint64_t value) {
  const uint32_t level = depth_ - 3u;
  if (level >= kPathDepth) return true;  // not told apart (the deepest level's path)
  if ((path_used_ >> level & 1) != 0 && element_keys_[level] != value) return false;
  element_keys_[level] = static_cast<uint8_t>(value);
  const uint64_t parent = path_hashes_[level - 1];
  path_hashes_[level] = parent == 0 ? 0 : mix_path(parent, kElementTag | value);
  return true;
}

// A container opens at depth_ inside a choice: its field path. An object under the choice
// (delta, message) adds nothing: a client merges it into one message.
void CompletionExtractor::open_path(bool object) {
  const uint32_t level = depth_ - 3u;
  if (level >= kPathDepth) return;
  if (level == 0) {
    path_hashes_[0] = kChoiceTag;
  } else {
    const uint64_t parent = path_hashes_[level - 1];
    const bool element = (object_bits_ >> (depth_ - 2) & 1) == 0;  // the parent is an array
    if (element) {
      const uint8_t position = element_counts_[level - 1];
      if (position < UINT8_MAX) ++element_counts_[level - 1];  // (beyond: the last position's)
      element_keys_[level] = position;
      path_hashes_[level] = parent == 0 ? 0 : mix_path(parent, kElementTag | position);
    } else if (level == 1) {
      path_hashes_[level] = parent;
    } else {
      path_hashes_[level] = parent == 0 || key_hash_ == 0 ? 0 : mix_path(parent, key_hash_);
    }
  }
  path_used_ = static_cast<uint16_t>(path_used_ & ((1u << level) - 1));
  if (!object) element_counts_[level] = 0;
}

void CompletionExtractor::start_value(uint8_t c, Output& out) {
  const Slot slot = in_array() ? Slot::kText : slot_;
  slot_ = Slot::kText;
  // A scalar element of an array inside a choice takes its position (containers: open_path).
  if (c != '{' && c != '[' && in_array() && depth_ >= 3 && depth_ - 3u < kPathDepth &&
      inside_choice() && element_counts_[depth_ - 3] < UINT8_MAX)
    ++element_counts_[depth_ - 3];
  const bool hidden = skip_depth_ != 0;  // inside an excluded tree
  switch (c) {
    case '{':
      return open(true, slot, out);
    case '[':
      return open(false, slot, out);
    case '"': {
      if (hidden || slot == Slot::kExcluded || slot == Slot::kTree || slot == Slot::kIndex ||
          slot == Slot::kContentIndex)
        return start_string(Dest::kDiscard);
      if (!choose_text(out)) return;
      return start_string(Dest::kText);
    }
    case 't':
    case 'f':
    case 'n':
      mode_ = Mode::kLiteral;
      literal_ = c == 't' ? 0 : c == 'f' ? 1 : 2;
      count_ = 1;
      return;
    default:
      if (c != '-' && !is_digit(c)) return fail(out);
      mode_ = Mode::kNumber;
      step_ = c == '-' ? Step::kMinus : c == '0' ? Step::kZero : Step::kInt;
      index_number_ =
          (slot == Slot::kIndex || slot == Slot::kContentIndex) && !hidden && streamed();
      content_number_ = slot == Slot::kContentIndex;
      number_value_ = is_digit(c) ? static_cast<uint64_t>(c - '0') : UINT64_MAX;  // - : no index
  }
}

void CompletionExtractor::open(bool object, Slot slot, Output& out) {
  if (depth_ == kMaxDepth) return fail(out);
  const Role parent = role();
  if (object) {
    object_bits_ |= uint64_t{1} << depth_;
  } else {
    object_bits_ &= ~(uint64_t{1} << depth_);
  }
  ++depth_;
  if (slot == Slot::kTree && skip_depth_ == 0) skip_depth_ = depth_;
  if (depth_ < kTrackedDepth) {
    Role role = Role::kOther;
    if (depth_ == 1) {
      role = Role::kRoot;
    } else if (object && slot == Slot::kBlockDelta && parent == Role::kRoot) {
      role = Role::kBlockDelta;
    } else if (!object && slot == Slot::kChoices && parent == Role::kRoot) {
      role = Role::kChoices;
      choice_count_ = 0;
    } else if (object && parent == Role::kChoices) {
      role = Role::kChoice;  // its text is its position's until its index says otherwise
      choice_key_ = static_cast<uint8_t>(std::min<uint32_t>(choice_count_, kMaxTextKey + 1));
      choice_key_used_ = false;
      if (choice_count_ > kMaxTextKey) return fail(out);
    }
    roles_[depth_] = role;
  }
  if (parent == Role::kChoices && choice_count_ < UINT8_MAX) ++choice_count_;
  if (streamed() && inside_choice()) open_path(object);
  mode_ = object ? Mode::kObjectFirst : Mode::kArrayFirst;
}

void CompletionExtractor::close() {
  if (depth_ == skip_depth_) skip_depth_ = 0;
  if (depth_ < kTrackedDepth) roles_[depth_] = Role::kOther;
  --depth_;
  mode_ = depth_ == 0 ? Mode::kDone : Mode::kAfterValue;
}

CompletionExtractor::Role CompletionExtractor::role() const {
  return depth_ < kTrackedDepth ? roles_[depth_] : Role::kOther;
}

void CompletionExtractor::end_scalar() {
  mode_ = depth_ == 0 ? Mode::kDone : Mode::kAfterValue;  // depth 0: `[DONE]`
}

void CompletionExtractor::start_string(Dest dest) {
  mode_ = Mode::kString;
  step_ = Step::kPlain;
  dest_ = dest;
  buffer_length_ = dest == Dest::kKey ? 0 : kNotKept;
  high_surrogate_ = 0;
  held_count_ = 0;
}

// A field's string: decoded into `out`. Returns where it stopped: the end of the piece, the byte
// after the closing quote, or (failed) anywhere.
const uint8_t* CompletionExtractor::scan_text(const uint8_t* p, const uint8_t* const end,
                                              Output& out) {
  while (p < end) {
    switch (step_) {
      case Step::kPlain: {
        // Characters that need no decoding go out as they stand; the byte after them is
        // handled below.
        const uint8_t* const run = p;
        p = find_text_run_end(p, end);
        out.text(run, p - run);
        if (p == end) return p;
        const uint8_t c = *p++;
        if (c == '"') {
          end_string(out);
          return p;
        }
        if (c == '\\') {
          step_ = Step::kEscape;
          break;
        }
        if (c < 0x20) {  // a raw control character
          fail(out);
          return p;
        }
        // A byte >= 0x80 the run did not take: not a lead, or a sequence that is ill-formed or
        // cut by the end of the piece. kUtf8 reads its continuations one at a time.
        const Utf8Lead lead = kUtf8Leads[c];
        if (lead.continuations == 0) {
          out.replacement();
          break;
        }
        held_[0] = c;
        held_count_ = 1;
        utf8_needed_ = lead.continuations;
        utf8_low_ = lead.low;
        utf8_high_ = lead.high;
        step_ = Step::kUtf8;
        break;
      }
      case Step::kUtf8: {
        const uint8_t c = *p;
        step_ = Step::kPlain;
        if (c < utf8_low_ || c > utf8_high_) {
          // WHATWG: the maximal ill-formed subpart is one U+FFFD; c is read again.
          out.replacement();
          break;
        }
        ++p;
        if (--utf8_needed_ == 0) {
          uint8_t character[4];
          std::memcpy(character, held_, held_count_);
          character[held_count_] = c;
          out.text(character, held_count_ + 1u);
          held_count_ = 0;
          break;
        }
        held_[held_count_++] = c;
        utf8_low_ = 0x80;
        utf8_high_ = 0xbf;
        step_ = Step::kUtf8;
        break;
      }
      case Step::kEscape: {
        const uint8_t c = *p++;
        if (c == 'u') {
          step_ = Step::kHex;
          count_ = 4;
          code_unit_ = 0;
          break;
        }
        const uint8_t decoded = kShortEscapes[c];
        if (decoded == 0) {
          fail(out);
          return p;
        }
        out.text(&decoded, 1);
        step_ = Step::kPlain;
        break;
      }
      case Step::kHex: {
        const int8_t digit = kHexDigits[*p++];
        if (digit < 0) {
          fail(out);
          return p;
        }
        code_unit_ = static_cast<uint16_t>(code_unit_ << 4 | digit);
        if (--count_ == 0) code_unit(out);
        break;
      }
      case Step::kAfterHigh:
        if (*p == '\\') {
          ++p;
          step_ = Step::kAfterHighBackslash;
        } else {
          out.replacement();  // a lone high surrogate; *p is read again
          high_surrogate_ = 0;
          step_ = Step::kPlain;
        }
        break;
      default:  // kAfterHighBackslash
        if (*p == 'u') {
          ++p;
          step_ = Step::kHex;
          count_ = 4;
          code_unit_ = 0;
        } else {
          out.replacement();  // a lone high surrogate; *p is read again as an escape
          high_surrogate_ = 0;
          step_ = Step::kEscape;
        }
    }
  }
  return p;
}

// The \u escape just read, in code_unit_.
void CompletionExtractor::code_unit(Output& out) {
  const uint32_t unit = code_unit_;
  step_ = Step::kPlain;
  if (high_surrogate_ != 0) {
    const uint32_t high = high_surrogate_;
    high_surrogate_ = 0;
    if (is_low_surrogate(unit)) return out.code_point(combine_surrogates(high, unit));
    out.replacement();  // the high half was alone; unit stands on its own
  }
  if (is_high_surrogate(unit)) {
    high_surrogate_ = static_cast<uint16_t>(unit);
    step_ = Step::kAfterHigh;
  } else if (is_low_surrogate(unit)) {
    out.replacement();
  } else {
    out.code_point(unit);
  }
}

// Any other string: validated; a key or the type buffered while it can still match.
const uint8_t* CompletionExtractor::scan_skipped(const uint8_t* p, const uint8_t* const end,
                                                 Output& out) {
  while (p < end) {
    switch (step_) {
      case Step::kPlain: {
        if (buffer_length_ > kBufferBytes) {
          while (true) {
            p = find_special(p, end);
            if (p == end || *p < 0x80) break;
            ++p;  // a byte >= 0x80: a skipped string's text is not decoded
          }
        } else {
          for (; p < end && kSkippedBytes[*p]; ++p) {
            if (buffer_length_ < kBufferBytes) {
              buffer_[buffer_length_++] = static_cast<char>(*p);
            } else {
              buffer_length_ = kNotKept;  // the rest of the run is only skipped
            }
          }
        }
        if (p == end) return p;
        const uint8_t c = *p++;
        if (c == '"') {
          end_string(out);
          return p;
        }
        if (c != '\\') {  // a raw control character
          fail(out);
          return p;
        }
        step_ = Step::kEscape;
        buffer_length_ = kEscaped;  // escaped keys never match (see the header)
        break;
      }
      case Step::kEscape: {
        const uint8_t c = *p++;
        if (c == 'u') {
          step_ = Step::kHex;
          count_ = 4;
        } else if (kShortEscapes[c] != 0) {
          step_ = Step::kPlain;
        } else {
          fail(out);
          return p;
        }
        break;
      }
      default:  // kHex
        if (kHexDigits[*p++] < 0) {
          fail(out);
          return p;
        }
        if (--count_ == 0) step_ = Step::kPlain;
    }
  }
  return p;
}

void CompletionExtractor::end_string(Output& out) {
  const bool matchable = buffer_length_ <= kBufferBytes;
  const std::string_view text(buffer_, matchable ? buffer_length_ : 0);
  switch (dest_) {
    case Dest::kKey:
      // A key too long to keep, or escaped, is no excluded key: its value is text.
      slot_ = matchable ? key_slot(role(), text, ndjson_) : Slot::kText;
      // An Anthropic block's field (root.delta.text, root.content_block.thinking …): the key
      // below root.delta / root.content_block, kept while deeper containers are open.
      // NDJSON (Ollama /api/generate): a root string (response, thinking) by its key.
      if (streamed() &&
          ((depth_ == 2 && roles_[2] == Role::kBlockDelta) || (ndjson_ && depth_ == 1)) &&
          skip_depth_ == 0) {
        key_hash_ =
            buffer_length_ == kEscaped
                ? 0
                : hash_key(std::string_view(buffer_, matchable ? buffer_length_ : kBufferBytes),
                           !matchable);
      }
      if (streamed() && inside_choice() && skip_depth_ == 0) {
        // The key names a field of the choice's path: escaped (0) it cannot be told; a longer
        // one is told by its first kBufferBytes (and its being longer).
        key_hash_ =
            buffer_length_ == kEscaped
                ? 0
                : hash_key(std::string_view(buffer_, matchable ? buffer_length_ : kBufferBytes),
                           !matchable);
        // An array element's index names it (tool_calls[].index), as a client accumulates.
        if (text == "index" && depth_ > 3 && depth_ - 3u < kPathDepth &&
            (object_bits_ >> (depth_ - 2) & 1) == 0)
          slot_ = Slot::kIndex;
      }
      mode_ = Mode::kColon;
      return;
    case Dest::kText:
      out.field_end();
      break;
    default:
      break;
  }
  end_scalar();
}

// RFC 8259 §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?. Returns false on the first
// byte that is not part of the number; the caller then decides whether it was complete.
bool CompletionExtractor::number_byte(uint8_t c) {
  switch (step_) {
    case Step::kMinus:
      if (!is_digit(c)) return false;
      step_ = c == '0' ? Step::kZero : Step::kInt;
      return true;
    case Step::kInt:
      if (is_digit(c)) return true;
      [[fallthrough]];
    case Step::kZero:
    case Step::kFrac:
      if (c == '.' && step_ != Step::kFrac) {
        step_ = Step::kDot;
        return true;
      }
      if (c == 'e' || c == 'E') {
        step_ = Step::kExp;
        return true;
      }
      return step_ == Step::kFrac && is_digit(c);
    case Step::kDot:
      if (!is_digit(c)) return false;
      step_ = Step::kFrac;
      return true;
    case Step::kExp:
      if (c == '+' || c == '-') {
        step_ = Step::kExpSign;
        return true;
      }
      [[fallthrough]];
    case Step::kExpSign:
      if (!is_digit(c)) return false;
      step_ = Step::kExpDigits;
      return true;
    default:  // kExpDigits
      return is_digit(c);
  }
}

// ---- Event stream -------------------------------------------------------------------------

// An event with data has ended: its data was one JSON text (or `[DONE]`, or blank).
void CompletionExtractor::dispatch(Output& out) {
  end_document(out);
  reset_document();
}

}  // namespace sluice
