// Streaming extraction of the prompt text of an OpenAI-compatible, Anthropic-style or
// Responses-API JSON request body, fed in arbitrary pieces (down to one byte), with bounded state.
//
// What a host's chat template renders, the model reads; templates render far more than the
// fields a client library names. So every string value of the body is prompt text — and every
// key inside a free-form value (the whole of `tools`, tool_use input, chat_template_kwargs, any
// object under a key the extractor does not know), and the name of every key a known shape does
// not know (`message | tojson` renders it) — except a short list of exclusions that no template
// renders: the known keys of the known shapes (messages, role, content, temperature, ...), the
// scalars admission reads (model), the standard values of enum keys (role "user", type "text",
// status, tool_choice "auto", ...: any other value is text) and binary payloads (image and audio
// data, file data, base64 sources). Ids are text (templates print call ids).
// docs/normalisation.md, "JSON request bodies", lists them; src/core/prompt_extractor.cpp holds
// the tables.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "sluice/request_reason.hpp"

namespace sluice {

// Which field a piece of prompt text belongs to: the nearest known path above the string. A
// string under a key the path does not know has the field of the object holding it.
enum class PromptField : uint8_t {
  kMessageContent,   // messages[]: content in every form (parts of any type, nested tool_result
                     // content, tool_use input, documents) and a message's other keys
  kMessageName,      // messages[].name
  kToolArguments,    // messages[].tool_calls[] and the legacy messages[].function_call: function
                     // name and arguments; input[] items' name and arguments (Responses
                     // function_call). Arguments are unescaped twice (JsonStringUnescaper).
  kToolDescription,  // tools[]: name, description (OpenAI function and Anthropic tool)
  kPrompt,           // prompt (string or array of strings)
  kInput,            // input (string, array of strings, or items' content, output, summary)
  kInstructions,     // instructions
  kSystem,           // system (string, blocks or one block)
  kSuffix,           // suffix
  kToolSchema,       // tools[].function.parameters, tools[].input_schema: keys and strings
  kOther,            // any other string: the root's unknown keys (chat_template_kwargs,
                     // documents, ...) and its parameters' values (response_format, ...), keys
                     // and strings alike
};

std::string_view field_name(PromptField field);

// Receives the unescaped, UTF-8-validated text of each extracted string, in document order.
// One string may arrive in several pieces; on_field_end closes it.
class PromptSink {
 public:
  virtual ~PromptSink() = default;
  virtual void on_text(PromptField field, std::string_view utf8) = 0;
  virtual void on_field_end(PromptField field) = 0;
  // A content's parts (an array under content, system, output, summary, ... — nested ones too,
  // each with its own pair) begin and end: the strings between them are what a template may
  // join with nothing, so that a word split across two parts is one word to the model.
  virtual void on_parts_begin() {}
  virtual void on_parts_end() {}
};

// The scalar fields admission needs.
struct RequestFields {
  std::string model;  // at most JsonLimits::max_scalar_bytes
  std::optional<bool> stream;
  std::optional<uint64_t> max_tokens;             // max_tokens
  std::optional<uint64_t> max_completion_tokens;  // max_completion_tokens
  std::optional<uint64_t> max_output_tokens;      // max_output_tokens
  bool prompt_token_ids = false;  // `prompt` or `input` held a number (token ids), not only text
};

struct JsonLimits {
  uint32_t max_depth = 32;          // open objects and arrays (the top-level object is 1); <= 128
  uint32_t max_scalar_bytes = 256;  // model (decoded bytes) and every number literal
};

class PromptExtractor {
 public:
  explicit PromptExtractor(JsonLimits limits = {});

  // Back to the state before a body (keeps no allocation beyond the bounded buffers).
  void reset();

  // Feeds the next bytes of the body. Returns RequestReason::ok while the document is valid so
  // far; after a rejection every later call returns the same reason.
  RequestReason feed(std::span<const uint8_t> bytes, PromptSink& sink);

  // The body has ended: ok only if exactly one complete JSON value (an object) was read.
  RequestReason finish(PromptSink& sink);

  const RequestFields& fields() const { return fields_; }

  // Parser state per flow: the object/array bit stack (128 levels), the roles and seen-key sets
  // of the at most 8 tracked containers, a 24-byte key buffer (the longest known key is 21; it
  // also holds an enum value being read, whose longest standard value is 20: a longer value is
  // not standard), a held partial UTF-8 character and escape, the untracked subtree's kind, the
  // second unescape of a tool call's arguments (JsonStringUnescaper, 10 bytes); 126 bytes used,
  // 128 with padding.
  // sizeof(PromptExtractor) = 232 bytes on x86-64 (state_, fields_, limits_), plus the model
  // string's heap buffer of max_scalar_bytes + 1, reserved once by the constructor: feed() and
  // finish() never allocate.
  static constexpr std::size_t kStateBytes = 128;

 private:
  // Implementation state: see src/core/prompt_extractor.cpp.
  struct State;
  JsonLimits limits_;
  RequestFields fields_;
  alignas(8) unsigned char state_[kStateBytes];
  State& state();
};

}  // namespace sluice
