// Streaming JSON prompt extraction: one pass, byte spans in, unescaped UTF-8 text out, bounded
// state, no allocation after construction.
//
// Layers, checked on every byte in this order (the first byte at which the body stops being a
// prefix of a valid document decides the reason; UTF-8 wins a tie with the grammar):
//   1. UTF-8 (RFC 3629): inside strings a full validator (overlongs, UTF-16 surrogates, > U+10FFFF
//      and truncated sequences are json_invalid_utf8); outside strings JSON allows ASCII only, so
//      a byte that can never start a UTF-8 character (0x80–0xC1, 0xF5–0xFF) is
//      json_invalid_utf8 and any other non-ASCII byte is json_invalid.
//   2. The RFC 8259 grammar, strict: top-level value an object, no trailing garbage, no leading
//      zeros, no raw control characters in strings, no byte order mark.
//   3. \u escapes: a high surrogate must be followed at once by a \u low surrogate, else
//      json_lone_surrogate (a malformed hex digit there is json_invalid).
//   4. Paths: a stack of roles for the prefix of containers whose path is known (the root, the
//      messages array, a message, a part, ...). Every string is text unless its path excludes
//      it (the tables below). Deeper or unknown containers are untracked: free-form text (every
//      key and string in them is text) or excluded (nothing is); only a bit saying object or
//      array is kept per level, and one flag for the whole untracked subtree. In a tracked
//      object, a key the tables do not list for it is text too, its name a field of its own (a
//      template that dumps a message or part as JSON renders it); known keys are not. The
//      tools array is tracked (for its duplicate keys) but free-form all the same: its objects'
//      keys are text too, and nothing in it is excluded.
//   5. Enum values (role, type, status, tool_choice): read into the key buffer, excluded only
//      when the whole value is one of the standard values of its key (kStandardRoles, ...);
//      any other value — a custom role, a value longer than the buffer — is text.
//
// Duplicate detection (json_duplicate_key): each tracked object keeps a 16-bit set of the known
// keys it has seen (tables below); a second occurrence of a known key in the same tracked object
// is rejected. Duplicates of unknown keys, and any duplicate inside untracked values, are not
// detected: that would need memory proportional to the object — and both of their values are
// text, scanned whichever one a host keeps.
//
// Scalars: `model` must be a string or null; `stream` true, false or null; `max_tokens`,
// `max_completion_tokens` and `max_output_tokens` a non-negative integer that fits in 64 bits or
// null (null leaves the field unset). Any other value of these keys (negative, fraction,
// exponent, overflow, wrong type) is json_invalid. Any number literal longer than
// JsonLimits::max_scalar_bytes, and a model longer than that, is json_field_too_long.
#include "sluice/prompt_extractor.hpp"

#include "sluice/json_string_unescaper.hpp"
#include "sluice/utf8.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <new>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sluice {
namespace {

// Deepest nesting the object/array bit stack can hold; JsonLimits::max_depth is clamped to it.
constexpr uint32_t kMaxDepth = 128;
// Deepest path that has a role: root > messages > message > content > part > content > part >
// content. A container that would be tracked deeper is read as free text (everything in it is
// text): the bound costs inspection nothing, only exclusions.
constexpr uint32_t kMaxTracked = 8;

enum class Mode : uint8_t {
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
};

enum class StringStep : uint8_t {
  kPlain,               // between characters
  kUtf8,                // inside a multi-byte sequence cut by a piece boundary (bytes held)
  kEscape,              // after '\'
  kHex,                 // inside \uXXXX
  kAfterHigh,           // after a high-surrogate escape: '\' must follow
  kAfterHighBackslash,  // ... then 'u'
};

// kKey: a key of a tracked object, read into the key buffer and emitted as text at its end unless
// known for that object; one longer than the buffer is emitted as it comes. kKeyText: read into
// the key buffer and emitted as it comes (a key of a tools object: every one is text). kEnum: an
// enum value, read into the key buffer (free while a value is read) and emitted at its end unless
// standard; one longer than the buffer is emitted as it comes.
// kJson: text whose bytes go through a second JSON-string unescape (JsonStringUnescaper) before
// the sink: a string holding a JSON document that the host decodes again (Role::kJsonText).
enum class Dest : uint8_t { kDiscard, kEmit, kKey, kKeyText, kEnum, kModel, kJson };

enum class NumberStep : uint8_t { kMinus, kZero, kInt, kDot, kFrac, kExp, kExpSign, kExpDigits };

// What a value is, from its path; a container with a role other than kText and kExcluded is
// tracked. The default is text: every string is emitted, except under kExcluded.
enum class Role : uint8_t {
  kText,              // strings are text; a container is free-form: its keys are text too
  kExcluded,          // nothing in it is text (a documented exclusion: ids, enums, binary)
  kJsonText,          // a string holding a JSON document the host json.loads and a template
                      // prints decoded (tool-call arguments): text, its escapes decoded twice;
                      // any other value is text as kText
  kRefused,           // a key whose presence refuses the request (chat_template)
  kRoot,              // the top-level object
  kMessages,          // messages: array of kMessage
  kMessage,           // messages[i]
  kContent,           // string (text), array of kContent (parts: kParts), or object (kPart)
  kParts,             // array of kContent: a content's parts, which a template may join
  kPart,              // {"type", "text", "content", "source", ...}: one content part or block
  kSource,            // a part's source (Anthropic image/document): {"type", "data", ...}
  kSourceType,        // source.type: an enum of kStandardTypes, read to tell base64 data
                      // (binary) from text data
  kRoleValue,         // role: a string is text unless one of kStandardRoles
  kTypeValue,         // type: a string is text unless one of kStandardTypes
  kStatusValue,       // status: a string is text unless one of kStandardStatuses
  kToolChoice,        // tool_choice: a string is text unless one of kStandardToolChoices; an
                      // object is excluded (it names a tool of `tools`, never rendered)
  kTextOrList,        // prompt, input: string or array of kTextListItem
  kTextList,          // array of kTextListItem
  kTextListItem,      // string (text), number (token id), array (kTokenIds), object (input item)
  kTokenIds,          // array of kTokenId
  kTokenId,           // number: token id
  kInputItem,         // input[i] object (Responses API): a message, a tool call or its output, ...
  kToolCalls,         // array of kToolCall
  kToolCall,          // {"id", "type", "function"}
  kToolCallFunction,  // {"name", "arguments"}
  kTools,             // array of kTool
  kTool,              // {"type", "name", "function", "description", "input_schema"}
  kToolFunction,      // {"name", "parameters", "description"}
  kModel,
  kStream,
  kMaxTokens,
  kMaxCompletionTokens,
  kMaxOutputTokens,
};

// Keys are matched in a zero-padded buffer of this size, compared as a whole (three words, no
// memcmp call): a key longer than every known key cannot be one.
constexpr std::size_t kKeyBuffer = 24;

struct KnownKey {
  constexpr KnownKey(std::string_view key_name, Role key_role,
                     PromptField key_field = PromptField::kMessageContent, bool inherit = false)
      : name(key_name), role(key_role), field(key_field), inherit_field(inherit) {
    if (key_name.size() > kKeyBuffer) throw "known key longer than the key buffer";
    for (std::size_t i = 0; i < key_name.size(); ++i) padded[i] = key_name[i];
  }
  std::string_view name;
  Role role;
  PromptField field;
  bool inherit_field;  // the value's field is the enclosing object's field
  char padded[kKeyBuffer] = {};
};

// Known keys per tracked object. The index of a key is its bit in Level::seen; a second
// occurrence is json_duplicate_key. Keys whose value may not be extracted (role, type, ...) are
// listed so that their duplicates are still caught: they decide how a server reads the text next
// to them. A key no table lists, nor kExcludedKeys, is unknown: its name and its value are text
// (kText), with the object's field, the name a field of its own (`message | tojson` renders
// both); its duplicates are not detected (that would need memory proportional to the object),
// which costs nothing: both of its names and values are scanned. Enum keys take the field of the
// object holding them.
constexpr KnownKey kRootKeys[] = {
    {"messages", Role::kMessages, PromptField::kMessageContent},
    {"tools", Role::kTools, PromptField::kToolDescription},
    {"prompt", Role::kTextOrList, PromptField::kPrompt},
    {"input", Role::kTextOrList, PromptField::kInput},
    {"instructions", Role::kText, PromptField::kInstructions},
    {"system", Role::kContent, PromptField::kSystem},
    {"suffix", Role::kText, PromptField::kSuffix},
    {"model", Role::kModel},
    {"stream", Role::kStream},
    {"max_tokens", Role::kMaxTokens},
    {"max_completion_tokens", Role::kMaxCompletionTokens},
    {"max_output_tokens", Role::kMaxOutputTokens},
    // Never rendered: who asks, how it is billed, which tool must be called (the tool itself is
    // in `tools`; a tool_choice string other than a standard one is text all the same).
    {"user", Role::kExcluded},
    {"service_tier", Role::kExcluded},
    {"tool_choice", Role::kToolChoice, PromptField{}, true},
};
constexpr KnownKey kMessageKeys[] = {
    {"role", Role::kRoleValue, PromptField{}, true},
    {"content", Role::kContent, PromptField::kMessageContent},
    {"name", Role::kText, PromptField::kMessageName},
    {"tool_calls", Role::kToolCalls, PromptField::kToolArguments},
    {"tool_call_id", Role::kText, PromptField{}, true},  // a call id: text (kToolCallKeys)
    // Legacy OpenAI function calling: {"name", "arguments"}, as a tool call's function.
    {"function_call", Role::kToolCallFunction, PromptField::kToolArguments},
};
constexpr KnownKey kPartKeys[] = {
    {"type", Role::kTypeValue, PromptField{}, true},
    {"text", Role::kText, PromptField{}, true},
    {"content", Role::kContent, PromptField{}, true},
    {"source", Role::kSource, PromptField{}, true},
    {"file", Role::kPart, PromptField{}, true},  // {"file_data", "file_id", "filename"}
    {"filename", Role::kText, PromptField{}, true},
    // Anthropic tool_use {"id", "name", "input"}, tool_result {"tool_use_id", "content"} and
    // thinking {"thinking", "signature"} blocks: all text but the signature (kExcludedKeys).
    {"id", Role::kText, PromptField{}, true},
    {"name", Role::kText, PromptField{}, true},
    {"input", Role::kText, PromptField{}, true},
    {"tool_use_id", Role::kText, PromptField{}, true},
    {"thinking", Role::kText, PromptField{}, true},
    {"refusal", Role::kText, PromptField{}, true},
    {"title", Role::kText, PromptField{}, true},  // a document's title and context
    {"context", Role::kText, PromptField{}, true},
};
// Anthropic sources: base64 data (an image, a PDF) is binary, decoded by the host, never text;
// text data (a plain-text document) is text. Only a `type` of "base64" read before `data` makes
// data binary: whatever the order, data that could be text is scanned.
constexpr KnownKey kSourceKeys[] = {
    {"type", Role::kSourceType, PromptField{}, true},  // an enum value; "base64" marks data
    {"media_type", Role::kExcluded},
    {"data", Role::kText, PromptField{}, true},
    {"url", Role::kExcluded},
    {"content", Role::kContent, PromptField{}, true},
};
constexpr uint16_t kBase64Bit = 1u << 15;  // in a kSource level's seen: type was "base64"
// Responses API items: messages (content), the tool traffic the client replays —
// function_call (name, arguments) and function_call_output (output, a string or parts) — and
// reasoning items (summary and content parts).
constexpr KnownKey kInputItemKeys[] = {
    {"type", Role::kTypeValue, PromptField{}, true},
    {"role", Role::kRoleValue, PromptField{}, true},
    {"content", Role::kContent, PromptField::kInput},
    {"output", Role::kContent, PromptField::kInput},
    {"arguments", Role::kJsonText, PromptField::kToolArguments},
    {"name", Role::kText, PromptField::kToolArguments},
    {"summary", Role::kContent, PromptField::kInput},
    {"id", Role::kText, PromptField{}, true},
    {"call_id", Role::kText, PromptField{}, true},
};
// Call ids are text: Mistral-family templates print them ([TOOL_CALLS] ... "id").
constexpr KnownKey kToolCallKeys[] = {
    {"id", Role::kText, PromptField{}, true},
    {"type", Role::kTypeValue, PromptField{}, true},
    {"function", Role::kToolCallFunction, PromptField::kToolArguments},
};
constexpr KnownKey kToolCallFunctionKeys[] = {
    {"name", Role::kText, PromptField::kToolArguments},
    {"arguments", Role::kJsonText, PromptField::kToolArguments},
};
// Tools are free-form (Qwen2.5/Hermes and Llama 3.1 templates dump each tool as JSON): every key
// of these objects is text and nothing in them is excluded; the tables only catch duplicates.
constexpr KnownKey kToolKeys[] = {
    {"type", Role::kText, PromptField::kToolDescription},
    {"name", Role::kText, PromptField::kToolDescription},
    {"function", Role::kToolFunction, PromptField::kToolDescription},
    {"description", Role::kText, PromptField::kToolDescription},
    {"input_schema", Role::kText, PromptField::kToolSchema},
};
constexpr KnownKey kToolFunctionKeys[] = {
    {"name", Role::kText, PromptField::kToolDescription},
    {"parameters", Role::kText, PromptField::kToolSchema},
    {"description", Role::kText, PromptField::kToolDescription},
};

// Keys excluded in every tracked object but the tools (not inside free-form values: a JSON
// Schema's "type" or "id" is rendered with the schema): enums whose standard values a template
// renders as its own markers (any other value is text), a file id the host resolves, opaque or
// binary payloads a host decodes or fetches (images, audio, files, signed or encrypted
// reasoning). Ids (id, call_id, tool_call_id, tool_use_id) are not excluded: Mistral-family
// templates print call ids. As for the known keys, one written with escapes is
// json_escaped_known_key.
constexpr KnownKey kExcludedKeys[] = {
    {"role", Role::kRoleValue},
    {"type", Role::kTypeValue},
    {"file_id", Role::kExcluded},
    {"status", Role::kStatusValue},
    {"cache_control", Role::kExcluded},
    {"signature", Role::kExcluded},
    {"encrypted_content", Role::kExcluded},
    {"image_url", Role::kExcluded},
    {"input_audio", Role::kExcluded},
    {"file_data", Role::kExcluded},
    {"video_url", Role::kExcluded},
    {"audio_url", Role::kExcluded},
};

// Request parameters of the root whose names are known, so not text (no template renders a
// parameter's name); their values are text all the same (kText), and their duplicates are not
// detected (both values are scanned). Any other key of the root is unknown: its name is text.
constexpr KnownKey kRootParameterKeys[] = {
    {"temperature", Role::kText},
    {"top_p", Role::kText},
    {"top_k", Role::kText},
    {"min_p", Role::kText},
    {"n", Role::kText},
    {"seed", Role::kText},
    {"stop", Role::kText},
    {"frequency_penalty", Role::kText},
    {"presence_penalty", Role::kText},
    {"repetition_penalty", Role::kText},
    {"logprobs", Role::kText},
    {"top_logprobs", Role::kText},
    {"logit_bias", Role::kText},
    {"stream_options", Role::kText},
    {"parallel_tool_calls", Role::kText},
    {"response_format", Role::kText},
    {"metadata", Role::kText},
    {"store", Role::kText},
    {"reasoning_effort", Role::kText},
    // A Jinja template the host would run (vLLM ChatCompletionRequest.chat_template): what it
    // renders is computed, not read, so it cannot be inspected: json_request_chat_template,
    // whatever its value. (kRootKeys is full: 15 keys and the base64 bit.)
    {"chat_template", Role::kRefused},
};

// A one-word filter in front of kExcludedKeys, so that an unknown key costs a few instructions,
// not a walk of the table: one bit per (length, first byte, last byte). The multipliers keep
// the common unknown keys (temperature, seed, stop, metadata, stream_options, ...) off the
// excluded keys' bits; a collision only costs the walk.
constexpr unsigned key_filter_bit(const char* key, std::size_t size) {
  return (static_cast<unsigned>(size) * 2u + static_cast<unsigned char>(key[0]) * 26u +
          static_cast<unsigned char>(key[size == 0 ? 0 : size - 1])) %
         64u;
}
constexpr uint64_t kExcludedFilter = [] {
  uint64_t bits = 0;
  for (const KnownKey& excluded : kExcludedKeys)
    bits |= uint64_t{1} << key_filter_bit(excluded.padded, excluded.name.size());
  return bits;
}();

// The standard values of the enum keys: a value is excluded only when it is one of these, byte
// for byte after unescaping (a template renders its own markers for them; vLLM takes any role
// string, and ChatML, Qwen and Llama 3 templates print a role verbatim). Compared whole in the
// zero-padded key buffer, like the keys.
struct EnumValue {
  constexpr EnumValue(const char* value)  // NOLINT(google-explicit-constructor): the tables
      : size(std::string_view(value).size()) {
    if (size > kKeyBuffer) throw "enum value longer than the key buffer";
    for (std::size_t i = 0; i < size; ++i) padded[i] = value[i];
  }
  std::size_t size;
  char padded[kKeyBuffer] = {};
};
constexpr EnumValue kStandardRoles[] = {"system", "developer", "user",  "assistant",
                                        "tool",   "function",  "model", "ipython"};
// Chat parts, Responses items and content, Anthropic blocks and sources, tool calls.
constexpr EnumValue kStandardTypes[] = {
    "text",
    "image_url",
    "input_audio",
    "file",
    "refusal",
    "video_url",
    "audio_url",
    "function",
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
    "input_text",
    "input_image",
    "input_file",
    "output_text",
    "summary_text",
    "reasoning_text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "base64",
    "url",
    "content",
};
constexpr EnumValue kStandardStatuses[] = {"in_progress", "completed", "incomplete"};
constexpr EnumValue kStandardToolChoices[] = {"none", "auto", "required"};

constexpr std::span<const EnumValue> standard_values(Role role) {
  switch (role) {
    case Role::kRoleValue:
      return kStandardRoles;
    case Role::kTypeValue:
    case Role::kSourceType:
      return kStandardTypes;
    case Role::kStatusValue:
      return kStandardStatuses;
    case Role::kToolChoice:
      return kStandardToolChoices;
    default:
      return {};
  }
}

constexpr bool is_enum_role(Role role) {
  return role == Role::kRoleValue || role == Role::kTypeValue || role == Role::kStatusValue ||
         role == Role::kToolChoice || role == Role::kSourceType;
}

constexpr std::span<const KnownKey> keys_of(Role object) {
  switch (object) {
    case Role::kRoot:
      return kRootKeys;
    case Role::kMessage:
      return kMessageKeys;
    case Role::kPart:
      return kPartKeys;
    case Role::kSource:
      return kSourceKeys;
    case Role::kInputItem:
      return kInputItemKeys;
    case Role::kToolCall:
      return kToolCallKeys;
    case Role::kToolCallFunction:
      return kToolCallFunctionKeys;
    case Role::kTool:
      return kToolKeys;
    case Role::kToolFunction:
      return kToolFunctionKeys;
    default:
      return {};
  }
}

// Every table fits Level::seen (kSource keeps its top bit for kBase64Bit).
static_assert([] {
  for (Role role : {Role::kRoot, Role::kMessage, Role::kPart, Role::kSource, Role::kInputItem,
                    Role::kToolCall, Role::kToolCallFunction, Role::kTool, Role::kToolFunction}) {
    if (keys_of(role).size() > 15) return false;
  }
  return true;
}());
constexpr uint8_t kKeyTooLong = 0xff;

// The role of each element of a tracked array.
constexpr Role element_role(Role array) {
  switch (array) {
    case Role::kMessages:
      return Role::kMessage;
    case Role::kParts:
      return Role::kContent;
    case Role::kTextList:
      return Role::kTextListItem;
    case Role::kTokenIds:
      return Role::kTokenId;
    case Role::kToolCalls:
      return Role::kToolCall;
    case Role::kTools:
      return Role::kTool;
    default:
      return Role::kText;
  }
}

// The role a container gets when a value of `role` turns out to be an object or an array:
// kText (free-form, everything is text) unless the path knows better.
constexpr Role container_role(Role role, PromptField field, bool object) {
  switch (role) {
    case Role::kExcluded:
    case Role::kToolChoice:  // {"type": "function", "function": {"name": ...}}: names a tool
      return Role::kExcluded;
    case Role::kRoot:
    case Role::kMessage:
    case Role::kPart:
    case Role::kSource:
    case Role::kInputItem:
    case Role::kToolCall:
    case Role::kToolCallFunction:
    case Role::kTool:
    case Role::kToolFunction:
      return object ? role : Role::kText;
    case Role::kMessages:
    case Role::kToolCalls:
    case Role::kTools:
      return object ? Role::kText : role;
    case Role::kContent:
      return object ? Role::kPart : Role::kParts;
    case Role::kTextOrList:
      return object ? Role::kText : Role::kTextList;
    case Role::kTextListItem:
      if (object) return field == PromptField::kInput ? Role::kInputItem : Role::kText;
      return Role::kTokenIds;
    default:
      return Role::kText;
  }
}

constexpr bool is_tracked_role(Role role) {
  return role != Role::kText && role != Role::kExcluded;
}

constexpr bool is_max_role(Role role) {
  return role == Role::kMaxTokens || role == Role::kMaxCompletionTokens ||
         role == Role::kMaxOutputTokens;
}

constexpr bool is_whitespace(uint8_t c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

// The reason for a byte the grammar does not allow where it stands: one that can never start a
// UTF-8 character fails the UTF-8 layer first.
constexpr RequestReason unexpected(uint8_t c) {
  return (c >= 0x80 && c < 0xc2) || c >= 0xf5 ? RequestReason::json_invalid_utf8
                                              : RequestReason::json_invalid;
}

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

// Bytes a string can hold as they are: printable ASCII other than '"' and '\'.
constexpr std::array<bool, 256> kPlainBytes = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

// First byte in [p, end) that is not plain. SSE2: 16 bytes per step; one signed compare catches
// both the control characters and every byte >= 0x80.
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
  while (p < end && kPlainBytes[*p]) ++p;
  return p;
}

constexpr std::array<int8_t, 256> kHexDigits = [] {
  std::array<int8_t, 256> digits{};
  digits.fill(-1);
  for (int c = '0'; c <= '9'; ++c) digits[c] = static_cast<int8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) digits[c] = static_cast<int8_t>(c - 'a' + 10);
  for (int c = 'A'; c <= 'F'; ++c) digits[c] = static_cast<int8_t>(c - 'A' + 10);
  return digits;
}();

// The four hex digits at p as a UTF-16 code unit, or -1.
inline int hex4(const uint8_t* p) {
  const int a = kHexDigits[p[0]], b = kHexDigits[p[1]], c = kHexDigits[p[2]], d = kHexDigits[p[3]];
  return (a | b | c | d) < 0 ? -1 : (a << 12) | (b << 8) | (c << 4) | d;
}

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

constexpr bool is_high_surrogate(uint32_t unit) {
  return unit >= 0xd800 && unit <= 0xdbff;
}
constexpr bool is_low_surrogate(uint32_t unit) {
  return unit >= 0xdc00 && unit <= 0xdfff;
}
constexpr uint32_t combine_surrogates(uint32_t high, uint32_t low) {
  return 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
}

constexpr std::string_view kLiterals[] = {"true", "false", "null"};

// Coalesces the text of one field within one feed() call, so that escapes do not cut the text
// into a call per escape. Lives on feed()'s stack: nothing is buffered across calls.
class Emitter {
 public:
  explicit Emitter(PromptSink& sink) : sink_(sink) {}

  void append(PromptField field, const uint8_t* bytes, std::size_t size) {
    if (size <= kCapacity - size_) {
      std::memcpy(buffer_ + size_, bytes, size);
      size_ += size;
      return;
    }
    flush(field);
    if (size >= kCapacity) {
      sink_.on_text(field, {reinterpret_cast<const char*>(bytes), size});
      return;
    }
    std::memcpy(buffer_, bytes, size);
    size_ = size;
  }

  void flush(PromptField field) {
    if (size_ == 0) return;
    sink_.on_text(field, {buffer_, size_});
    size_ = 0;
  }

  void end_field(PromptField field) {
    flush(field);
    sink_.on_field_end(field);
  }

  // Between strings: nothing is buffered.
  void parts_begin() { sink_.on_parts_begin(); }
  void parts_end() { sink_.on_parts_end(); }

 private:
  static constexpr std::size_t kCapacity = 2048;
  PromptSink& sink_;
  std::size_t size_ = 0;
  char buffer_[kCapacity];
};

struct Level {
  Role role;
  PromptField field;
  uint16_t seen;  // bit i: keys_of(role)[i] was seen
};

}  // namespace

std::string_view field_name(PromptField field) {
  switch (field) {
    case PromptField::kMessageContent:
      return "messages[].content";
    case PromptField::kMessageName:
      return "messages[].name";
    case PromptField::kToolArguments:
      return "messages[].tool_calls[].function.arguments";
    case PromptField::kToolDescription:
      return "tools[].function.description";
    case PromptField::kPrompt:
      return "prompt";
    case PromptField::kInput:
      return "input";
    case PromptField::kInstructions:
      return "instructions";
    case PromptField::kSystem:
      return "system";
    case PromptField::kSuffix:
      return "suffix";
    case PromptField::kToolSchema:
      return "tools[].function.parameters";
    case PromptField::kOther:
      return "other";
  }
  return "unknown";
}

// Everything the parser carries between feed() calls. Trivially copyable; the constructor
// checks its size against kStateBytes.
struct PromptExtractor::State {
  struct Context {
    const JsonLimits& limits;
    RequestFields& fields;
    Emitter& out;
  };

  void run(const uint8_t* p, const uint8_t* end, Context& cx);
  RequestReason finish();

  const uint8_t* structure_bytes(const uint8_t* p, const uint8_t* end, Context& cx);
  const uint8_t* string_bytes(const uint8_t* p, const uint8_t* end, Context& cx);
  template <Dest kTo>
  const uint8_t* string_bytes(const uint8_t* p, const uint8_t* end, Context& cx);
  template <Dest kTo>
  const uint8_t* plain_bytes(const uint8_t* p, const uint8_t* end, Context& cx);
  const uint8_t* number_bytes(const uint8_t* p, const uint8_t* end, Context& cx);
  const uint8_t* literal_bytes(const uint8_t* p, const uint8_t* end, Context& cx);

  void start_value(uint8_t c, Context& cx);
  void open(bool object, Role role, PromptField slot_field, Context& cx);
  void close(bool object, Context& cx);
  void begin_string(Dest to, PromptField text_field, bool is_key);
  void end_key(Context& cx);
  bool is_known_key(Level& level);
  void end_enum(Context& cx);
  void end_number(Context& cx);
  template <Dest kTo>
  bool append(const uint8_t* bytes, std::size_t size, Context& cx);
  template <Dest kTo>
  bool append_code_point(uint32_t cp, Context& cx);

  bool is_object(uint32_t level) const {  // level: 1-based depth
    return (object_bits[(level - 1) / 64] >> ((level - 1) % 64)) & 1;
  }
  void reject(RequestReason why) { reason = why; }
  const uint8_t* fail(RequestReason why, const uint8_t* at) {
    reason = why;
    return at;
  }

  uint64_t object_bits[kMaxDepth / 64] = {};  // bit d: the container at depth d+1 is an object
  uint64_t number_value = 0;                  // the integer of a max_* value so far
  Level tracked[kMaxTracked] = {};            // roles of the outermost tracked_depth containers
  uint32_t number_bytes_seen = 0;
  uint16_t hex_unit = 0;        // \uXXXX digits so far
  uint16_t high_surrogate = 0;  // 0: none pending
  RequestReason reason = RequestReason::ok;
  Mode mode = Mode::kStart;
  StringStep string_step = StringStep::kPlain;
  Dest dest = Dest::kDiscard;
  PromptField field = PromptField::kMessageContent;  // of the string being emitted
  bool in_key = false;
  bool key_escaped = false;
  uint8_t depth = 0;          // open containers
  uint8_t tracked_depth = 0;  // how many of the outermost are tracked (always a prefix)
  // Below tracked_depth: whether the untracked subtree is free-form text (keys and strings) or
  // excluded, and the field of its text.
  bool untracked_text = false;
  PromptField untracked_field = PromptField::kOther;
  uint8_t max_depth = 0;
  uint8_t hex_digits = 0;
  uint8_t utf8_pending = 0;  // continuation bytes still due
  uint8_t utf8_low = 0;      // range of the next continuation byte
  uint8_t utf8_high = 0;
  uint8_t held_size = 0;
  uint8_t held[4] = {};          // a multi-byte character cut by a piece boundary
  Role next_role = Role::kText;  // of the value after the key just read
  PromptField next_field = PromptField::kMessageContent;
  Role scalar_role = Role::kText;  // of the number, literal or enum value being read
  NumberStep number_step = NumberStep::kInt;
  uint8_t literal = 0;  // index into kLiterals
  uint8_t literal_size = 0;
  uint8_t key_size = 0;       // kKeyTooLong: longer than any known key or standard value
  char key[kKeyBuffer] = {};  // a key, or an enum value; zero after key_size
  JsonStringUnescaper inner;  // Dest::kJson: the second unescape of the string being read
};

void PromptExtractor::State::run(const uint8_t* p, const uint8_t* end, Context& cx) {
  while (p < end && reason == RequestReason::ok) {
    switch (mode) {
      case Mode::kString:
        p = string_bytes(p, end, cx);
        break;
      case Mode::kNumber:
        p = number_bytes(p, end, cx);
        break;
      case Mode::kLiteral:
        p = literal_bytes(p, end, cx);
        break;
      default:
        p = structure_bytes(p, end, cx);
        break;
    }
  }
}

RequestReason PromptExtractor::State::finish() {
  if (reason != RequestReason::ok) return reason;
  if (mode == Mode::kDone) return reason;
  // A character cut by the end of the body is a truncated UTF-8 sequence before it is a
  // truncated document.
  const bool in_character = mode == Mode::kString && string_step == StringStep::kUtf8;
  reject(in_character ? RequestReason::json_invalid_utf8 : RequestReason::json_invalid);
  return reason;
}

const uint8_t* PromptExtractor::State::structure_bytes(const uint8_t* p, const uint8_t* end,
                                                       Context& cx) {
  for (; p < end; ++p) {
    const uint8_t c = *p;
    if (is_whitespace(c)) continue;
    switch (mode) {
      case Mode::kArrayFirst:
        if (c == ']') {
          close(false, cx);
          break;
        }
        [[fallthrough]];
      case Mode::kStart:
      case Mode::kValue:
        start_value(c, cx);
        if (mode == Mode::kString || mode == Mode::kNumber || mode == Mode::kLiteral) return p + 1;
        break;
      case Mode::kObjectFirst:
        if (c == '}') {
          close(true, cx);
          break;
        }
        [[fallthrough]];
      case Mode::kKey:
        if (c != '"') {
          reject(unexpected(c));
          return p;
        }
        // Keys of a tracked object are matched; those of a free-form value are text; those of
        // a tools object are both.
        if (depth == tracked_depth) {
          const Level& level = tracked[tracked_depth - 1];
          const bool tool = level.role == Role::kTool || level.role == Role::kToolFunction;
          begin_string(tool ? Dest::kKeyText : Dest::kKey, level.field, true);
        } else {
          begin_string(untracked_text ? Dest::kEmit : Dest::kDiscard, untracked_field, true);
        }
        return p + 1;
      case Mode::kColon:
        if (c != ':') {
          reject(unexpected(c));
          return p;
        }
        mode = Mode::kValue;
        break;
      case Mode::kAfterValue:
        if (c == ',') {
          mode = is_object(depth) ? Mode::kKey : Mode::kValue;
        } else if (c == '}' || c == ']') {
          close(c == '}', cx);
        } else {
          reject(unexpected(c));
        }
        break;
      case Mode::kDone:
        reject(unexpected(c));
        break;
      default:
        assert(false);
        break;
    }
    if (reason != RequestReason::ok) return p;
  }
  return p;
}

void PromptExtractor::State::start_value(uint8_t c, Context& cx) {
  Role role = Role::kText;
  PromptField slot_field = PromptField::kOther;
  if (depth == 0) {
    role = Role::kRoot;
  } else if (depth == tracked_depth) {
    if (is_object(depth)) {
      role = next_role;
      slot_field = next_field;
    } else {
      role = element_role(tracked[tracked_depth - 1].role);
      slot_field = tracked[tracked_depth - 1].field;
    }
  } else {
    role = untracked_text ? Role::kText : Role::kExcluded;
    slot_field = untracked_field;
  }
  if (role == Role::kRoot && c != '{') return reject(unexpected(c));
  const bool is_scalar_role = role == Role::kModel || role == Role::kStream || is_max_role(role);
  switch (c) {
    case '{':
    case '[':
      if (is_scalar_role) return reject(RequestReason::json_invalid);
      return open(c == '{', role, slot_field, cx);
    case '"':
      if (role == Role::kModel) return begin_string(Dest::kModel, slot_field, false);
      if (is_scalar_role) return reject(RequestReason::json_invalid);
      if (is_enum_role(role)) {
        scalar_role = role;  // which standard values apply (end_enum)
        return begin_string(Dest::kEnum, slot_field, false);
      }
      if (role == Role::kJsonText) {
        inner.reset();
        return begin_string(Dest::kJson, slot_field, false);
      }
      // Every string is text unless its path excludes it.
      return begin_string(role == Role::kExcluded ? Dest::kDiscard : Dest::kEmit, slot_field,
                          false);
    case 't':
    case 'f':
    case 'n':
      if ((role == Role::kModel || is_max_role(role)) && c != 'n') {
        return reject(RequestReason::json_invalid);
      }
      mode = Mode::kLiteral;
      literal = c == 't' ? 0 : c == 'f' ? 1 : 2;
      literal_size = 1;
      scalar_role = role;
      return;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
      if (role == Role::kModel || role == Role::kStream) return reject(RequestReason::json_invalid);
      if (is_max_role(role) && c == '-') return reject(RequestReason::json_invalid);
      if (role == Role::kTextListItem || role == Role::kTokenId) cx.fields.prompt_token_ids = true;
      mode = Mode::kNumber;
      number_step = c == '-' ? NumberStep::kMinus : c == '0' ? NumberStep::kZero : NumberStep::kInt;
      number_bytes_seen = 1;
      number_value = c == '-' ? 0 : static_cast<uint64_t>(c - '0');
      scalar_role = role;
      if (number_bytes_seen > cx.limits.max_scalar_bytes)
        reject(RequestReason::json_field_too_long);
      return;
    default:
      return reject(unexpected(c));
  }
}

void PromptExtractor::State::open(bool object, Role role, PromptField slot_field, Context& cx) {
  if (depth >= max_depth) return reject(RequestReason::json_too_deep);
  const uint64_t bit = uint64_t{1} << (depth % 64);
  if (object) {
    object_bits[depth / 64] |= bit;
  } else {
    object_bits[depth / 64] &= ~bit;
  }
  if (depth == tracked_depth) {
    const Role tracked_role = container_role(role, slot_field, object);
    if (is_tracked_role(tracked_role) && tracked_depth < kMaxTracked) {
      tracked[tracked_depth++] = {tracked_role, slot_field, 0};
      if (tracked_role == Role::kParts) cx.out.parts_begin();
    } else {
      // The first untracked level: the whole subtree is text, or excluded. Deeper than
      // kMaxTracked, a path that would be tracked is text.
      untracked_text = tracked_role != Role::kExcluded;
      untracked_field = slot_field;
    }
  }
  ++depth;
  mode = object ? Mode::kObjectFirst : Mode::kArrayFirst;
}

void PromptExtractor::State::close(bool object, Context& cx) {
  if (depth == 0 || is_object(depth) != object) return reject(RequestReason::json_invalid);
  if (depth == tracked_depth) {
    if (tracked[tracked_depth - 1].role == Role::kParts) cx.out.parts_end();
    --tracked_depth;
  }
  --depth;
  mode = depth == 0 ? Mode::kDone : Mode::kAfterValue;
}

void PromptExtractor::State::begin_string(Dest to, PromptField text_field, bool is_key) {
  mode = Mode::kString;
  string_step = StringStep::kPlain;
  dest = to;
  field = text_field;
  in_key = is_key;
  key_escaped = false;
  if (to == Dest::kKey || to == Dest::kKeyText || to == Dest::kEnum) {
    key_size = 0;
    std::memset(key, 0, sizeof key);
  }
}

// The end of a key of a tracked object. An unknown one (no table lists it for this object) is
// text, its name a field of its own: held in the key buffer until here, or, longer than the
// buffer, emitted as it came; a known one never reaches the sink.
void PromptExtractor::State::end_key(Context& cx) {
  mode = Mode::kColon;
  if (dest != Dest::kKey && dest != Dest::kKeyText) return;  // of a free-form or excluded value
  Level& level = tracked[tracked_depth - 1];
  next_role = Role::kText;  // unknown keys: text, in the object's field
  next_field = level.field;
  const bool known = is_known_key(level);
  // A chat template in the request: the host would run it, whatever its value (null too).
  if (known && next_role == Role::kRefused)
    return reject(RequestReason::json_request_chat_template);
  if (reason != RequestReason::ok || known || dest == Dest::kKeyText) return;  // tools: emitted
  if (key_size != kKeyTooLong && key_size > 0) {
    cx.out.append(field, reinterpret_cast<const uint8_t*>(key), key_size);
  }
  cx.out.end_field(field);
}

// Matches the key in the buffer against the tables of `level`'s object and sets the role and
// field of its value; false for an unknown key (or an escaped known one, rejected).
bool PromptExtractor::State::is_known_key(Level& level) {
  if (key_size == kKeyTooLong) return false;
  const std::span<const KnownKey> keys = keys_of(level.role);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].name.size() != key_size || std::memcmp(keys[i].padded, key, kKeyBuffer) != 0) {
      continue;
    }
    if (key_escaped) {
      reject(RequestReason::json_escaped_known_key);
      return false;
    }
    const auto bit = static_cast<uint16_t>(1u << i);
    if (level.seen & bit) {
      reject(RequestReason::json_duplicate_key);
      return false;
    }
    level.seen |= bit;
    next_role = keys[i].role;
    next_field = keys[i].inherit_field ? level.field : keys[i].field;
    // Data after a "base64" type is binary (see kSourceKeys).
    if (level.role == Role::kSource && next_role == Role::kText && keys[i].name == "data" &&
        (level.seen & kBase64Bit)) {
      next_role = Role::kExcluded;
    }
    return true;
  }
  if (level.role == Role::kTool || level.role == Role::kToolFunction) return false;  // free-form
  if (level.role == Role::kRoot) {
    for (const KnownKey& parameter : kRootParameterKeys) {
      if (parameter.name.size() == key_size &&
          std::memcmp(parameter.padded, key, kKeyBuffer) == 0) {
        if (key_escaped) {
          reject(RequestReason::json_escaped_known_key);
          return false;
        }
        next_role = parameter.role;  // kText, the root's field, or kRefused
        return true;
      }
    }
  }
  if (((kExcludedFilter >> key_filter_bit(key, key_size)) & 1) == 0) return false;
  for (const KnownKey& excluded : kExcludedKeys) {
    if (excluded.name.size() == key_size && std::memcmp(excluded.padded, key, kKeyBuffer) == 0) {
      if (key_escaped) {
        reject(RequestReason::json_escaped_known_key);
        return false;
      }
      next_role = excluded.role;
      return true;
    }
  }
  return false;
}

// The end of an enum value: standard, it is not text; any other value is, whole. One longer
// than the key buffer was emitted as it came.
void PromptExtractor::State::end_enum(Context& cx) {
  if (key_size != kKeyTooLong) {
    constexpr std::string_view kBase64 = "base64";
    if (scalar_role == Role::kSourceType && key_size == kBase64.size() &&
        std::memcmp(key, kBase64.data(), kBase64.size()) == 0) {
      tracked[tracked_depth - 1].seen |= kBase64Bit;
    }
    for (const EnumValue& standard : standard_values(scalar_role)) {
      if (standard.size == key_size && std::memcmp(standard.padded, key, kKeyBuffer) == 0) return;
    }
    if (key_size > 0) cx.out.append(field, reinterpret_cast<const uint8_t*>(key), key_size);
  }
  cx.out.end_field(field);
}

template <Dest kTo>
bool PromptExtractor::State::append(const uint8_t* bytes, std::size_t size, Context& cx) {
  if constexpr (kTo == Dest::kEmit) {
    cx.out.append(field, bytes, size);
  } else if constexpr (kTo == Dest::kJson) {
    inner.feed(bytes, size, [&](const uint8_t* text, std::size_t text_size) {
      cx.out.append(field, text, text_size);
    });
  } else if constexpr (kTo == Dest::kKey || kTo == Dest::kKeyText) {
    if constexpr (kTo == Dest::kKeyText) cx.out.append(field, bytes, size);
    if (key_size == kKeyTooLong) {
      // Longer than every known key: unknown, text as it comes.
      if constexpr (kTo == Dest::kKey) cx.out.append(field, bytes, size);
      return true;
    }
    if (size > kKeyBuffer - key_size) {
      // Text, what was held first.
      if constexpr (kTo == Dest::kKey) {
        if (key_size > 0) cx.out.append(field, reinterpret_cast<const uint8_t*>(key), key_size);
        cx.out.append(field, bytes, size);
      }
      key_size = kKeyTooLong;
      return true;
    }
    std::memcpy(key + key_size, bytes, size);
    key_size = static_cast<uint8_t>(key_size + size);
  } else if constexpr (kTo == Dest::kEnum) {
    // Whole characters only arrive here, so the buffer holds whole characters.
    if (key_size != kKeyTooLong) {
      if (size <= kKeyBuffer - key_size) {
        std::memcpy(key + key_size, bytes, size);
        key_size = static_cast<uint8_t>(key_size + size);
        return true;
      }
      // Longer than every standard value: text, what was held first.
      if (key_size > 0) cx.out.append(field, reinterpret_cast<const uint8_t*>(key), key_size);
      key_size = kKeyTooLong;
    }
    cx.out.append(field, bytes, size);
  } else if constexpr (kTo == Dest::kModel) {
    if (size > cx.limits.max_scalar_bytes - cx.fields.model.size()) {
      reject(RequestReason::json_field_too_long);
      return false;
    }
    // Within the capacity reserved by the constructor and reset(): never allocates.
    cx.fields.model.append(reinterpret_cast<const char*>(bytes), size);
  }
  return true;
}

template <Dest kTo>
bool PromptExtractor::State::append_code_point(uint32_t cp, Context& cx) {
  uint8_t bytes[4];
  return append<kTo>(bytes, encode_utf8(cp, bytes), cx);
}

const uint8_t* PromptExtractor::State::string_bytes(const uint8_t* p, const uint8_t* end,
                                                    Context& cx) {
  switch (dest) {
    case Dest::kDiscard:
      return string_bytes<Dest::kDiscard>(p, end, cx);
    case Dest::kEmit:
      return string_bytes<Dest::kEmit>(p, end, cx);
    case Dest::kKey:
      return string_bytes<Dest::kKey>(p, end, cx);
    case Dest::kKeyText:
      return string_bytes<Dest::kKeyText>(p, end, cx);
    case Dest::kEnum:
      return string_bytes<Dest::kEnum>(p, end, cx);
    case Dest::kModel:
      return string_bytes<Dest::kModel>(p, end, cx);
    case Dest::kJson:
      return string_bytes<Dest::kJson>(p, end, cx);
  }
  return p;
}

// The common case runs in plain_bytes: runs of plain ASCII found 16 bytes at a time, multi-byte
// characters validated in place, escapes decoded in place when the piece holds them whole. What
// a piece boundary cuts (a character, an escape) and every error go through the byte-at-a-time
// steps below, which alone decide the reason.
template <Dest kTo>
const uint8_t* PromptExtractor::State::string_bytes(const uint8_t* p, const uint8_t* end,
                                                    Context& cx) {
  while (p < end) {
    switch (string_step) {
      case StringStep::kPlain:
        p = plain_bytes<kTo>(p, end, cx);
        if (mode != Mode::kString) return p;
        break;
      case StringStep::kUtf8: {
        const uint8_t c = *p;
        if (c < utf8_low || c > utf8_high) return fail(RequestReason::json_invalid_utf8, p);
        held[held_size++] = c;
        ++p;
        utf8_low = 0x80;
        utf8_high = 0xbf;
        if (--utf8_pending == 0) {
          string_step = StringStep::kPlain;
          if (!append<kTo>(held, held_size, cx)) return p;
        }
        break;
      }
      case StringStep::kEscape: {
        const uint8_t c = *p++;
        if (c == 'u') {
          string_step = StringStep::kHex;
          hex_digits = 0;
          hex_unit = 0;
          break;
        }
        const uint8_t decoded = kShortEscapes[c];
        if (decoded == 0) return fail(unexpected(c), p - 1);
        string_step = StringStep::kPlain;
        if (!append<kTo>(&decoded, 1, cx)) return p;
        break;
      }
      case StringStep::kHex: {
        while (p < end && hex_digits < 4) {
          const int digit = kHexDigits[*p];
          if (digit < 0) return fail(unexpected(*p), p);
          hex_unit = static_cast<uint16_t>((hex_unit << 4) | digit);
          ++hex_digits;
          ++p;
        }
        if (hex_digits < 4) return p;
        const uint32_t unit = hex_unit;
        string_step = StringStep::kPlain;
        if (high_surrogate != 0) {
          if (!is_low_surrogate(unit)) return fail(RequestReason::json_lone_surrogate, p);
          const uint32_t cp = combine_surrogates(high_surrogate, unit);
          high_surrogate = 0;
          if (!append_code_point<kTo>(cp, cx)) return p;
        } else if (is_high_surrogate(unit)) {
          high_surrogate = static_cast<uint16_t>(unit);
          string_step = StringStep::kAfterHigh;
        } else if (is_low_surrogate(unit)) {
          return fail(RequestReason::json_lone_surrogate, p);
        } else if (!append_code_point<kTo>(unit, cx)) {
          return p;
        }
        break;
      }
      case StringStep::kAfterHigh:
      case StringStep::kAfterHighBackslash: {
        const uint8_t c = *p;
        const uint8_t due = string_step == StringStep::kAfterHigh ? '\\' : 'u';
        if (c != due) {
          const RequestReason why = unexpected(c);
          return fail(
              why == RequestReason::json_invalid_utf8 ? why : RequestReason::json_lone_surrogate,
              p);
        }
        ++p;
        if (string_step == StringStep::kAfterHigh) {
          string_step = StringStep::kAfterHighBackslash;
        } else {
          string_step = StringStep::kHex;
          hex_digits = 0;
          hex_unit = 0;
        }
        break;
      }
    }
    if (reason != RequestReason::ok) return p;
  }
  return p;
}

// From kPlain: returns at the end of the string (mode changed), at the end of the piece, when a
// step must carry over (string_step changed), or on an error.
template <Dest kTo>
const uint8_t* PromptExtractor::State::plain_bytes(const uint8_t* p, const uint8_t* end,
                                                   Context& cx) {
  const uint8_t* run = p;  // plain bytes not yet appended
  // The model's length limit must fail at the byte that crosses it, as it does when the piece
  // ends there: before reporting an error further on, the run before it is appended.
  auto fail_after_run = [&](RequestReason why, const uint8_t* at) {
    if constexpr (kTo == Dest::kModel) {
      if (!append<kTo>(run, static_cast<std::size_t>(at - run), cx)) return at;
    }
    return fail(why, at);
  };
  for (;;) {
    p = find_special(p, end);
    if (p == end) {
      append<kTo>(run, static_cast<std::size_t>(p - run), cx);
      return p;
    }
    uint8_t c = *p;
    if (c >= 0x80) {
      // Validate a run of multi-byte characters in place (CJK text is little else). Two- and
      // three-byte characters take a path whose step does not depend on a table lookup, so the
      // loads of successive characters overlap.
      for (;;) {
        if (end - p >= 3) {
          const uint8_t b1 = p[1];
          if ((c & 0xf0) == 0xe0) {
            const bool valid = ((b1 & 0xc0) == 0x80) & ((p[2] & 0xc0) == 0x80) &
                               (c != 0xe0 || b1 >= 0xa0) &  // overlong
                               (c != 0xed || b1 < 0xa0);    // UTF-16 surrogate
            if (valid) {
              p += 3;
              if (p == end || *p < 0x80) break;
              c = *p;
              continue;
            }
          } else if (c >= 0xc2 && c < 0xe0 && (b1 & 0xc0) == 0x80) {
            p += 2;
            if (p == end || *p < 0x80) break;
            c = *p;
            continue;
          }
        }
        const Utf8Lead lead = kUtf8Leads[c];
        const std::size_t continuations = lead.continuations;
        if (continuations == 0) return fail_after_run(RequestReason::json_invalid_utf8, p);
        if (static_cast<std::size_t>(end - p) <= continuations) {
          // Cut by the end of the piece: check what is there, hold it, finish it next piece.
          const auto present = static_cast<std::size_t>(end - p - 1);
          for (std::size_t i = 1; i <= present; ++i) {
            if (p[i] < (i == 1 ? lead.low : 0x80) || p[i] > (i == 1 ? lead.high : 0xbf)) {
              return fail_after_run(RequestReason::json_invalid_utf8, p);
            }
          }
          if (!append<kTo>(run, static_cast<std::size_t>(p - run), cx)) return p;
          held_size = static_cast<uint8_t>(1 + present);
          std::memcpy(held, p, held_size);
          utf8_pending = static_cast<uint8_t>(continuations - present);
          utf8_low = present == 0 ? lead.low : uint8_t{0x80};
          utf8_high = present == 0 ? lead.high : uint8_t{0xbf};
          string_step = StringStep::kUtf8;
          return end;
        }
        if (p[1] < lead.low || p[1] > lead.high || (continuations >= 2 && (p[2] & 0xc0) != 0x80) ||
            (continuations == 3 && (p[3] & 0xc0) != 0x80)) {
          return fail_after_run(RequestReason::json_invalid_utf8, p);
        }
        p += 1 + continuations;
        if (p == end || *p < 0x80) break;
        c = *p;
      }
      continue;
    }
    if (!append<kTo>(run, static_cast<std::size_t>(p - run), cx)) return p;
    if (c == '"') {
      if constexpr (kTo == Dest::kJson) {
        inner.finish([&](const uint8_t* text, std::size_t text_size) {
          cx.out.append(field, text, text_size);
        });
      }
      if constexpr (kTo == Dest::kEmit || kTo == Dest::kKeyText || kTo == Dest::kJson) {
        cx.out.end_field(field);
      }
      if (in_key) {
        end_key(cx);
        return p + 1;
      }
      if constexpr (kTo == Dest::kEnum) end_enum(cx);
      mode = Mode::kAfterValue;
      return p + 1;
    }
    if (c != '\\') return fail(RequestReason::json_invalid, p);  // RFC 8259 §7: escape controls
    key_escaped = true;
    // Escapes the piece holds whole; anything else (and every malformed escape) goes through
    // the steps.
    const auto left = static_cast<std::size_t>(end - p);
    if (left < 2) {
      string_step = StringStep::kEscape;
      return p + 1;
    }
    if (const uint8_t decoded = kShortEscapes[p[1]]; decoded != 0) {
      if (!append<kTo>(&decoded, 1, cx)) return p;
      p += 2;
      run = p;
      continue;
    }
    const int unit = p[1] == 'u' && left >= 6 ? hex4(p + 2) : -1;
    if (unit >= 0 && !is_high_surrogate(unit) && !is_low_surrogate(unit)) {
      if (!append_code_point<kTo>(static_cast<uint32_t>(unit), cx)) return p;
      p += 6;
      run = p;
      continue;
    }
    if (unit >= 0 && is_high_surrogate(unit) && left >= 12 && p[6] == '\\' && p[7] == 'u') {
      const int low = hex4(p + 8);
      if (low >= 0 && is_low_surrogate(low)) {
        if (!append_code_point<kTo>(combine_surrogates(unit, low), cx)) return p;
        p += 12;
        run = p;
        continue;
      }
    }
    string_step = StringStep::kEscape;
    return p + 1;
  }
}

const uint8_t* PromptExtractor::State::number_bytes(const uint8_t* p, const uint8_t* end,
                                                    Context& cx) {
  const bool is_max = is_max_role(scalar_role);
  for (; p < end; ++p) {
    const uint8_t c = *p;
    const bool digit = c >= '0' && c <= '9';
    bool ends = false;
    switch (number_step) {
      case NumberStep::kMinus:
        if (!digit) return fail(unexpected(c), p);
        number_step = c == '0' ? NumberStep::kZero : NumberStep::kInt;
        break;
      case NumberStep::kZero:
        if (digit) return fail(RequestReason::json_invalid, p);  // RFC 8259 §6: no leading 0
        [[fallthrough]];
      case NumberStep::kInt:
        if (digit) {
          if (is_max) {
            const auto value = static_cast<uint64_t>(c - '0');
            if (number_value > (UINT64_MAX - value) / 10) {
              return fail(RequestReason::json_invalid, p);
            }
            number_value = number_value * 10 + value;
          }
        } else if (c == '.') {
          number_step = NumberStep::kDot;
        } else if (c == 'e' || c == 'E') {
          number_step = NumberStep::kExp;
        } else {
          ends = true;
        }
        if (!ends && !digit && is_max) return fail(RequestReason::json_invalid, p);
        break;
      case NumberStep::kDot:
        if (!digit) return fail(unexpected(c), p);
        number_step = NumberStep::kFrac;
        break;
      case NumberStep::kFrac:
        if (c == 'e' || c == 'E') {
          number_step = NumberStep::kExp;
        } else if (!digit) {
          ends = true;
        }
        break;
      case NumberStep::kExp:
        if (c == '+' || c == '-') {
          number_step = NumberStep::kExpSign;
          break;
        }
        [[fallthrough]];
      case NumberStep::kExpSign:
        if (!digit) return fail(unexpected(c), p);
        number_step = NumberStep::kExpDigits;
        break;
      case NumberStep::kExpDigits:
        if (!digit) ends = true;
        break;
    }
    if (ends) {
      end_number(cx);
      return p;  // the delimiter is the next structural byte
    }
    if (++number_bytes_seen > cx.limits.max_scalar_bytes) {
      return fail(RequestReason::json_field_too_long, p);
    }
  }
  return p;
}

void PromptExtractor::State::end_number(Context& cx) {
  mode = Mode::kAfterValue;
  switch (scalar_role) {
    case Role::kMaxTokens:
      cx.fields.max_tokens = number_value;
      break;
    case Role::kMaxCompletionTokens:
      cx.fields.max_completion_tokens = number_value;
      break;
    case Role::kMaxOutputTokens:
      cx.fields.max_output_tokens = number_value;
      break;
    default:
      break;
  }
}

const uint8_t* PromptExtractor::State::literal_bytes(const uint8_t* p, const uint8_t* end,
                                                     Context& cx) {
  const std::string_view text = kLiterals[literal];
  for (; p < end && literal_size < text.size(); ++p, ++literal_size) {
    if (*p != static_cast<uint8_t>(text[literal_size])) return fail(unexpected(*p), p);
  }
  if (literal_size == text.size()) {
    mode = Mode::kAfterValue;
    if (scalar_role == Role::kStream && literal != 2) cx.fields.stream = literal == 0;
  }
  return p;
}

PromptExtractor::PromptExtractor(JsonLimits limits) : limits_(limits) {
  // State lives in state_, is reset by placement new and copied with the extractor.
  static_assert(std::is_trivially_copyable_v<State> && std::is_trivially_destructible_v<State>);
  static_assert(sizeof(State) <= kStateBytes && alignof(State) <= 8);
  reset();
}

void PromptExtractor::reset() {
  State& s = *new (state_) State();
  s.max_depth = static_cast<uint8_t>(std::min(limits_.max_depth, kMaxDepth));
  fields_.model.clear();
  // A no-op after the first call; restores the capacity a copied extractor did not inherit.
  fields_.model.reserve(limits_.max_scalar_bytes);
  fields_.stream.reset();
  fields_.max_tokens.reset();
  fields_.max_completion_tokens.reset();
  fields_.max_output_tokens.reset();
  fields_.prompt_token_ids = false;
}

PromptExtractor::State& PromptExtractor::state() {
  return *std::launder(reinterpret_cast<State*>(state_));
}

RequestReason PromptExtractor::feed(std::span<const uint8_t> bytes, PromptSink& sink) {
  State& s = state();
  if (s.reason != RequestReason::ok) return s.reason;
  Emitter out(sink);
  State::Context cx{limits_, fields_, out};
  s.run(bytes.data(), bytes.data() + bytes.size(), cx);
  // After a rejection the text still buffered is dropped: nothing is emitted past the point
  // where the document failed.
  if (s.reason == RequestReason::ok && s.mode == Mode::kString) out.flush(s.field);
  return s.reason;
}

RequestReason PromptExtractor::finish(PromptSink& /*sink*/) {
  return state().finish();
}

}  // namespace sluice
