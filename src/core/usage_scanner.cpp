// Streaming token-usage scanner: one pass over the response body, byte spans in, a TokenUsage
// out, bounded state, no allocation.
//
// JSON (RFC 8259), followed strictly enough that a text the scanner accepts is valid JSON:
// structure and nesting (bit stack, kMaxDepth levels), the literals, the number grammar (no
// leading zeros), string escapes (\uXXXX needs four hex digits), no raw control characters in
// strings, nothing but whitespace after the top-level value, which must be an object. Not checked,
// because they cannot move a structural byte: UTF-8 validity of string contents and the pairing
// of \u surrogate escapes (the scanner never decodes a string).
//
// Paths: only three containers have a role, all within depth 3 — the top-level object (kRoot),
// the object under its "message" or "response" key (kWrapper), and a "usage" object directly in
// either (kUsage). Everything else is walked with one bit per level. A key is compared only
// inside a container with a role; its bytes go through a kKeyBytes buffer, and a key that is
// longer or holds an escape cannot match (hosts write these ASCII keys plainly; matching an
// escaped spelling would need the unescaper here for no real body).
//
// Values: a usage member counts when its value is an integer literal without sign, fraction or
// exponent and at most 2^53 (the largest integer every JSON reader holds exactly). Within one
// text, every counting member is applied in document order, so the last one wins per field
// (a repeated key, or prompt_tokens and input_tokens both present); a member that does not count
// (null, -1, 1.5, a string) leaves the field as it was. The members are applied to `document_`,
// which is kept only if the whole text turns out valid.
//
// Event stream (WHATWG HTML, "Interpreting an event stream"): the framing — line ends, the byte
// order mark, `data` lines joined with "\n", other fields skipped — is EventStreamReader's
// (event_stream.cpp). Its data pieces stream straight into the JSON reader, never buffered (the
// "\n" joins are whitespace to it). The end of an event with data dispatches it: if its data is a
// valid JSON text, each field it carried replaces the result's. `[DONE]` and other non-JSON data
// are invalid texts and carry nothing. finish() dispatches an open event (the spec discards it;
// we count a host that closes without the final blank line).
//
// Cost (quick timing: g++ 12 -O2, AMD EPYC VM, 1 MiB bodies fed in 1460-byte pieces, 50 rounds):
// ≈ 0.8–0.95 ns/byte for an OpenAI chat completion body (mostly string content, skipped in a
// tight loop); ≈ 3.0 ns/byte for an OpenAI chat stream (~190-byte chunks, dense in short keys
// and values, each a few mode changes) and ≈ 2.5 ns/byte for an Anthropic one — ≈ 0.5 µs per
// chunk, against tens of ms between chunks from the host.
#include "sluice/usage_scanner.hpp"

#include <algorithm>
#include <array>
#include <string_view>
#include <type_traits>

namespace sluice {

enum class UsageScanner::Mode : uint8_t {
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
enum class UsageScanner::Step : uint8_t {
  kPlain,   // string: between characters
  kEscape,  // string: after '\'
  kHex,     // string: inside \uXXXX (count_ digits left)
  kMinus,   // number: after '-'
  kZero,    // number: integer part "0"
  kInt,     // number: integer part [1-9][0-9]*
  kDot,     // number: after '.'
  kFrac,    // number: in the fraction
  kExp,     // number: after 'e' / 'E'
  kExpSign,
  kExpDigits,
};

enum class UsageScanner::Role : uint8_t { kSkip, kRoot, kWrapper, kUsage };

enum class UsageScanner::Target : uint8_t {
  kNone,
  kUsage,    // the value is a usage object (if it is an object)
  kWrapper,  // the value is "message" / "response" (if it is an object)
  kPrompt,
  kCompletion,
  kTotal,
};

namespace {

// 2^53: larger integers are not held exactly by every JSON reader (RFC 8259 §6).
constexpr uint64_t kMaxTokens = uint64_t{1} << 53;
constexpr uint8_t kKeyUnmatchable = UsageScanner::kKeyBytes + 1;
constexpr std::string_view kLiterals[] = {"true", "false", "null"};

// Bytes a string holds as they are: anything but '"', '\' and the control characters.
constexpr std::array<bool, 256> kPlainBytes = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x100; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

constexpr bool is_whitespace(uint8_t c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}
constexpr bool is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}
constexpr bool is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
// Each field found in `from` replaces the one in `into`.
void merge(TokenUsage& into, const TokenUsage& from) {
  if (from.prompt_tokens != TokenUsage::kAbsent) into.prompt_tokens = from.prompt_tokens;
  if (from.completion_tokens != TokenUsage::kAbsent)
    into.completion_tokens = from.completion_tokens;
  if (from.total_tokens != TokenUsage::kAbsent) into.total_tokens = from.total_tokens;
}

}  // namespace

static_assert(std::is_trivially_copyable_v<UsageScanner>);
static_assert(sizeof(UsageScanner) <= 104, "state per response grew: update the header's note");

bool TokenUsage::reported() const {
  return prompt_tokens != kAbsent || completion_tokens != kAbsent || total_tokens != kAbsent;
}

uint64_t TokenUsage::used() const {
  if (total_tokens != kAbsent) return static_cast<uint64_t>(total_tokens);
  return static_cast<uint64_t>(std::max<int64_t>(prompt_tokens, 0)) +
         static_cast<uint64_t>(std::max<int64_t>(completion_tokens, 0));
}

UsageScanner::UsageScanner() {
  begin(false);
}

void UsageScanner::begin(bool event_stream) {
  result_ = {};
  reset_document();
  events_ = {};
  event_stream_ = event_stream;
  finished_ = false;
}

void UsageScanner::reset_document() {
  document_ = {};
  object_bits_ = 0;
  number_ = 0;
  mode_ = Mode::kStart;
  step_ = Step::kPlain;
  target_ = Target::kNone;
  depth_ = 0;
  std::fill(std::begin(roles_), std::end(roles_), Role::kSkip);
  literal_ = 0;
  count_ = 0;
  in_key_ = false;
  negative_ = false;
  key_length_ = 0;
}

void UsageScanner::feed(std::span<const uint8_t> bytes) {
  if (finished_ || bytes.empty()) return;
  if (event_stream_) {
    events_.feed(
        bytes,
        [this](std::span<const uint8_t> data) {
          scan_json(data.data(), data.data() + data.size());
        },
        [this] { dispatch(); });
  } else {
    scan_json(bytes.data(), bytes.data() + bytes.size());
  }
}

TokenUsage UsageScanner::finish() {
  if (!finished_) {
    finished_ = true;
    if (event_stream_) {
      if (events_.finish()) dispatch();  // the open event, read as ended (see the top)
    } else if (mode_ == Mode::kDone) {
      result_ = document_;
    }
  }
  return result_;
}

// ---- JSON ---------------------------------------------------------------------------------

void UsageScanner::scan_json(const uint8_t* p, const uint8_t* const end) {
  while (p < end) {
    switch (mode_) {
      case Mode::kString:
        p = scan_string(p, end);
        break;
      case Mode::kNumber:
        if (number_byte(*p)) {
          ++p;
        } else {
          end_number();  // *p is read again in the mode that follows
        }
        break;
      case Mode::kLiteral: {
        const std::string_view literal = kLiterals[literal_];
        if (*p++ != static_cast<uint8_t>(literal[count_])) {
          fail();
        } else if (++count_ == literal.size()) {
          end_scalar();
        }
        break;
      }
      case Mode::kFailed:
        return;
      default:
        structural(*p++);
    }
  }
}

void UsageScanner::fail() {
  mode_ = Mode::kFailed;
}

void UsageScanner::structural(uint8_t c) {
  if (is_whitespace(c)) return;
  switch (mode_) {
    case Mode::kStart:
      // RFC 8259 allows any value here; a usage report is always an object.
      if (c == '{') {
        open(true);
      } else {
        fail();
      }
      return;
    case Mode::kArrayFirst:
      if (c == ']') return close();
      [[fallthrough]];
    case Mode::kValue:
      return start_value(c);
    case Mode::kObjectFirst:
      if (c == '}') return close();
      [[fallthrough]];
    case Mode::kKey:
      if (c == '"') return start_string(true);
      return fail();
    case Mode::kColon:
      if (c == ':') {
        mode_ = Mode::kValue;
      } else {
        fail();
      }
      return;
    case Mode::kAfterValue: {
      const bool object = (object_bits_ >> (depth_ - 1)) & 1;
      if (c == ',') {
        mode_ = object ? Mode::kKey : Mode::kValue;
      } else if (c == (object ? '}' : ']')) {
        close();
      } else {
        fail();
      }
      return;
    }
    default:  // kDone: only whitespace may follow the top-level value
      return fail();
  }
}

void UsageScanner::start_value(uint8_t c) {
  switch (c) {
    case '{':
      return open(true);
    case '[':
      return open(false);
    case '"':
      return start_string(false);
    case 't':
    case 'f':
    case 'n':
      mode_ = Mode::kLiteral;
      literal_ = c == 't' ? 0 : c == 'f' ? 1 : 2;
      count_ = 1;
      return;
    case '-':
      mode_ = Mode::kNumber;
      step_ = Step::kMinus;
      negative_ = true;
      number_ = 0;
      return;
    default:
      if (!is_digit(c)) return fail();
      mode_ = Mode::kNumber;
      step_ = c == '0' ? Step::kZero : Step::kInt;
      negative_ = false;
      number_ = c - '0';
  }
}

void UsageScanner::open(bool object) {
  if (depth_ == kMaxDepth) return fail();
  if (object)
    object_bits_ |= uint64_t{1} << depth_;
  else
    object_bits_ &= ~(uint64_t{1} << depth_);
  ++depth_;
  if (depth_ < std::size(roles_)) {
    Role role = Role::kSkip;
    if (depth_ == 1) {
      role = Role::kRoot;
    } else if (object && target_ == Target::kUsage) {
      role = Role::kUsage;
    } else if (object && target_ == Target::kWrapper) {
      role = Role::kWrapper;
    }
    roles_[depth_] = role;
  }
  target_ = Target::kNone;
  mode_ = object ? Mode::kObjectFirst : Mode::kArrayFirst;
}

void UsageScanner::close() {
  --depth_;
  target_ = Target::kNone;
  mode_ = depth_ == 0 ? Mode::kDone : Mode::kAfterValue;
}

UsageScanner::Role UsageScanner::role() const {
  return depth_ < std::size(roles_) ? roles_[depth_] : Role::kSkip;
}

void UsageScanner::end_scalar() {
  target_ = Target::kNone;
  mode_ = Mode::kAfterValue;  // scalars only occur inside the top-level object
}

void UsageScanner::start_string(bool key) {
  mode_ = Mode::kString;
  step_ = Step::kPlain;
  in_key_ = key;
  // Only keys of containers with a role are worth buffering.
  key_length_ = key && role() != Role::kSkip ? 0 : kKeyUnmatchable;
}

const uint8_t* UsageScanner::scan_string(const uint8_t* p, const uint8_t* const end) {
  while (p < end) {
    switch (step_) {
      case Step::kPlain: {
        if (key_length_ == kKeyUnmatchable) {
          while (p < end && kPlainBytes[*p]) ++p;
        } else {
          for (; p < end && kPlainBytes[*p]; ++p) {
            if (key_length_ < kKeyBytes) {
              key_[key_length_++] = static_cast<char>(*p);
            } else {
              key_length_ = kKeyUnmatchable;
            }
          }
        }
        if (p == end) return p;
        const uint8_t c = *p++;
        if (c == '"') {
          end_string();
          return p;
        }
        if (c != '\\') {  // a raw control character
          fail();
          return p;
        }
        step_ = Step::kEscape;
        key_length_ = kKeyUnmatchable;  // escaped keys never match (see the top of the file)
        break;
      }
      case Step::kEscape: {
        const uint8_t c = *p++;
        if (c == 'u') {
          step_ = Step::kHex;
          count_ = 4;
        } else if (std::string_view("\"\\/bfnrt").find(static_cast<char>(c)) !=
                   std::string_view::npos) {
          step_ = Step::kPlain;
        } else {
          fail();
          return p;
        }
        break;
      }
      default:  // kHex
        if (!is_hex(*p++)) {
          fail();
          return p;
        }
        if (--count_ == 0) step_ = Step::kPlain;
    }
  }
  return p;
}

void UsageScanner::end_string() {
  if (!in_key_) return end_scalar();
  target_ = key_target();
  mode_ = Mode::kColon;
}

UsageScanner::Target UsageScanner::key_target() const {
  if (key_length_ > kKeyBytes) return Target::kNone;
  const std::string_view key(key_, key_length_);
  switch (role()) {
    case Role::kRoot:
      if (key == "usage") return Target::kUsage;
      if (key == "message" || key == "response") return Target::kWrapper;
      return Target::kNone;
    case Role::kWrapper:
      return key == "usage" ? Target::kUsage : Target::kNone;
    case Role::kUsage:
      if (key == "prompt_tokens" || key == "input_tokens") return Target::kPrompt;
      if (key == "completion_tokens" || key == "output_tokens") return Target::kCompletion;
      if (key == "total_tokens") return Target::kTotal;
      return Target::kNone;
    default:
      return Target::kNone;
  }
}

// RFC 8259 §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?. Returns false on the first
// byte that is not part of the number; end_number() then decides whether it was complete.
bool UsageScanner::number_byte(uint8_t c) {
  switch (step_) {
    case Step::kMinus:
      if (!is_digit(c)) return false;
      step_ = c == '0' ? Step::kZero : Step::kInt;
      return true;
    case Step::kInt:
      if (is_digit(c)) {
        // number_ <= 2^53 before the step, so it cannot wrap; once above 2^53 it stops growing.
        if (number_ <= kMaxTokens) number_ = number_ * 10 + (c - '0');
        return true;
      }
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
      if (step_ == Step::kFrac && is_digit(c)) return true;
      return false;
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

void UsageScanner::end_number() {
  const bool integer = step_ == Step::kZero || step_ == Step::kInt;
  if (!integer && step_ != Step::kFrac && step_ != Step::kExpDigits) return fail();
  if (integer && !negative_ && number_ <= kMaxTokens) {
    const auto value = static_cast<int64_t>(number_);
    switch (target_) {
      case Target::kPrompt:
        document_.prompt_tokens = value;
        break;
      case Target::kCompletion:
        document_.completion_tokens = value;
        break;
      case Target::kTotal:
        document_.total_tokens = value;
        break;
      default:
        break;
    }
  }
  end_scalar();
}

// ---- Event stream -------------------------------------------------------------------------

// An event with data has ended: its data was one JSON text.
void UsageScanner::dispatch() {
  if (mode_ == Mode::kDone) merge(result_, document_);
  reset_document();
}

}  // namespace sluice
