// Streaming extraction of the text-bearing fields of an OpenAI-compatible or Anthropic-style
// JSON request body, fed in arbitrary pieces (down to one byte), with bounded state.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "sluice/request_reason.hpp"

namespace sluice {

// Which field a piece of prompt text belongs to.
enum class PromptField : uint8_t {
  kMessageContent,   // messages[].content (string, or parts[].text, or a part's content: the
                     // Anthropic tool_result, string or parts[].text)
  kMessageName,      // messages[].name
  kToolArguments,    // messages[].tool_calls[].function.arguments; input[].arguments (Responses
                     // function_call)
  kToolDescription,  // tools[].function.description; tools[].description (Anthropic)
  kPrompt,           // prompt (string or array of strings)
  kInput,            // input (string, array of strings, or items' content / output: a string
                     // or parts[].text)
  kInstructions,     // instructions
  kSystem,           // system (string or blocks[].text)
  kSuffix,           // suffix
};

std::string_view field_name(PromptField field);

// Receives the unescaped, UTF-8-validated text of each extracted string, in document order.
// One string may arrive in several pieces; on_field_end closes it.
class PromptSink {
 public:
  virtual ~PromptSink() = default;
  virtual void on_text(PromptField field, std::string_view utf8) = 0;
  virtual void on_field_end(PromptField field) = 0;
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
  // of the at most 7 tracked containers, a 24-byte key buffer (the longest known key is 21), a
  // held partial UTF-8 character and escape; 112 bytes used. sizeof(PromptExtractor) = 216
  // bytes on x86-64 (state_, fields_, limits_), plus the model string's heap buffer of
  // max_scalar_bytes + 1, reserved once by the constructor: feed() and finish() never allocate.
  static constexpr std::size_t kStateBytes = 112;

 private:
  // Implementation state: see src/core/prompt_extractor.cpp.
  struct State;
  JsonLimits limits_;
  RequestFields fields_;
  alignas(8) unsigned char state_[kStateBytes];
  State& state();
};

}  // namespace sluice
