// Differential test of the streaming prompt extractor against nlohmann::json: the extractor must
// emit every string of the document — and every key of a free-form value — minus the documented
// exclusions (docs/normalisation.md, "JSON request bodies"), in document order.
// Tool-call arguments (tool_calls[].function, the legacy function_call, Responses items) are
// expected unescaped once more, by unescape_again below, written apart from the extractor's
// streaming JsonStringUnescaper; a chat_template at the root is json_request_chat_template.
//
// Random request-shaped documents (seeded, reproducible) are serialised four ways: nlohmann's
// compact dump, its indented dump, its ASCII-only dump (every non-ASCII character as \u escapes,
// surrogate pairs included), and a serialiser of this file that escapes characters at random
// (short escapes, \u in either case, \/) and sprinkles whitespace. Each text is fed to the
// extractor cut at random points; the texts and scalars it reports must equal what an oracle
// computes by walking nlohmann's DOM of the same text along the same API paths.
//
// Mutants check the other direction: truncations, flipped bits, bytes overwritten with JSON
// punctuation or UTF-8 edge bytes, and re-serialisations that escape known key names and repeat
// object members. When nlohmann rejects a body, the extractor must reject it too; when nlohmann
// accepts it, the extractor must agree with the oracle except for these asymmetries, where the
// extractor is stricter than nlohmann (each one counted and reported):
//   - duplicate keys: nlohmann keeps the last value, the extractor rejects a duplicate known key
//     (json_duplicate_key) — accepted only when a SAX pass over the body finds a duplicate;
//   - escaped keys decoding to a known name (json_escaped_known_key);
// and rules that the oracle predicts itself: nesting deeper than 32 (json_too_deep), a model over
// 256 bytes (json_field_too_long), model/stream/max_* of the wrong type (json_invalid), a
// top-level value that is not an object (json_invalid). nlohmann would also skip a UTF-8 byte
// order mark, which the extractor rejects (no generated body or mutant starts with one), and it
// takes a raw NUL byte outside strings for the end of the input: a mutant holding a NUL must be
// rejected whatever nlohmann says. The one asymmetry the other way: nlohmann rejects a number
// whose value overflows a double (1e999); the extractor accepts the grammar (RFC 8259 §6 leaves
// the range to the implementation); such mutants are counted and not compared.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/prompt_extractor.hpp"

namespace sluice {
namespace {

using json = nlohmann::ordered_json;
using F = PromptField;
using R = RequestReason;
using Rng = std::mt19937_64;

constexpr uint32_t kMaxDepth = JsonLimits{}.max_depth;
constexpr std::size_t kMaxModelBytes = JsonLimits{}.max_scalar_bytes;

struct Text {
  PromptField field;
  std::string text;
  bool operator==(const Text&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Text& t) {
  return out << field_name(t.field) << "=" << json(t.text).dump(-1, ' ', true);
}

struct Outcome {
  RequestReason reason = R::ok;
  std::vector<Text> texts;
  RequestFields fields;
};

bool same_fields(const RequestFields& a, const RequestFields& b) {
  return a.model == b.model && a.stream == b.stream && a.max_tokens == b.max_tokens &&
         a.max_completion_tokens == b.max_completion_tokens &&
         a.max_output_tokens == b.max_output_tokens && a.prompt_token_ids == b.prompt_token_ids;
}

class Recorder : public PromptSink {
 public:
  void on_text(PromptField field, std::string_view utf8) override {
    if (!open_) texts.push_back({field, ""});
    open_ = true;
    texts.back().text.append(utf8);
  }
  void on_field_end(PromptField field) override {
    if (!open_) texts.push_back({field, ""});
    open_ = false;
  }
  std::vector<Text> texts;

 private:
  bool open_ = false;
};

Outcome extract(std::string_view body, std::vector<std::size_t> cuts) {
  PromptExtractor extractor;
  Recorder recorder;
  cuts.push_back(body.size());
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    extractor.feed({reinterpret_cast<const uint8_t*>(body.data()) + from, cut - from}, recorder);
    from = cut;
  }
  const RequestReason reason = extractor.finish(recorder);
  return {reason, recorder.texts, extractor.fields()};
}

// ---- the oracle: every string in nlohmann's DOM, minus the documented exclusions -----------
//
// Written from the specification (docs/normalisation.md, "JSON request bodies"), not from the
// extractor's tables: every string value is text, and every key of a free-form value; nothing
// under an excluded key is; an enum key's string (role, type, status, tool_choice) is text unless
// it is one of that key's standard values; the structural keys of the known shapes are not,
// except in `tools`, whose every key is text; any other key of a known shape is text, its name a
// text of its own. The field of a text is that of the nearest known
// path.

constexpr uint32_t kMaxTracked = 8;  // the extractor's bound on known paths, as documented

enum class Shape {
  kText,      // free-form: every key and string is text
  kJsonText,  // tool-call arguments: a string is text unescaped once more; anything else kText
  kExcluded,  // nothing is text
  kRoot,
  kMessages,
  kMessage,
  kContent,
  kPart,
  kSource,
  kTextOrList,
  kTextListItem,
  kTokenIds,
  kInputItem,
  kToolCalls,
  kToolCall,
  kToolCallFunction,
  kTools,
  kTool,
  kToolFunction,
  kModel,
  kStream,
  kMax,
};

struct Member {
  Shape shape;
  std::optional<PromptField> field;  // unset: the enclosing object's
};

const std::set<std::string> kExcluded = {"file_id",           "cache_control", "signature",
                                         "encrypted_content", "image_url",     "input_audio",
                                         "file_data",         "video_url",     "audio_url"};

// The standard values of the enum keys, as documented.
const std::set<std::string> kStandardRoles = {"system", "developer", "user",  "assistant",
                                              "tool",   "function",  "model", "ipython"};
const std::set<std::string> kStandardTypes = {"text",
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
                                              "content"};
const std::set<std::string> kStandardStatuses = {"in_progress", "completed", "incomplete"};
const std::set<std::string> kStandardToolChoices = {"none", "auto", "required"};

// Every key each known shape names (its own members, and the enum and data keys handled by name
// below): any other key of a known shape is unknown, and its name is text.
bool is_structural_key(Shape object, const std::string& key) {
  static const std::map<Shape, std::set<std::string>> kStructural = {
      {Shape::kRoot,
       {"messages",
        "tools",
        "prompt",
        "input",
        "instructions",
        "system",
        "suffix",
        "model",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "user",
        "service_tier",
        "tool_choice",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "n",
        "seed",
        "stop",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "stream_options",
        "parallel_tool_calls",
        "response_format",
        "metadata",
        "store",
        "reasoning_effort",
        "chat_template"}},
      {Shape::kMessage, {"role", "content", "name", "tool_calls", "tool_call_id", "function_call"}},
      {Shape::kPart,
       {"type", "text", "content", "source", "file", "filename", "id", "name", "input",
        "tool_use_id", "thinking", "refusal", "title", "context"}},
      {Shape::kSource, {"type", "media_type", "data", "url", "content"}},
      {Shape::kInputItem,
       {"type", "role", "content", "output", "arguments", "name", "summary", "id", "call_id"}},
      {Shape::kToolCall, {"id", "type", "function"}},
      {Shape::kToolCallFunction, {"name", "arguments"}}};
  auto it = kStructural.find(object);
  return it != kStructural.end() && it->second.count(key) != 0;
}

// The standard values of an enum key of a known shape other than the tools; null if none.
const std::set<std::string>* standard_values(const std::string& key) {
  if (key == "role") return &kStandardRoles;
  if (key == "type") return &kStandardTypes;
  if (key == "status") return &kStandardStatuses;
  return nullptr;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// The \uXXXX unit at s[i] (a backslash, 'u', four hex digits), or -1.
long unit_at(const std::string& s, std::size_t i) {
  if (i + 6 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return -1;
  long unit = 0;
  for (std::size_t k = i + 2; k < i + 6; ++k) {
    const char c = s[k];
    const int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
    if (d < 0) return -1;
    unit = unit * 16 + d;
  }
  return unit;
}

// The documented second unescape of tool-call arguments (docs/normalisation.md), written apart
// from the extractor's streaming one: the whole text at once, every JSON escape decoded where it
// stands (a surrogate pair combined, a lone surrogate U+FFFD), any other backslash kept.
std::string unescape_again(const std::string& s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i++];
      continue;
    }
    const char c = s[i + 1];
    const std::string_view shorts = "\"\\/bfnrt";
    const std::string_view decoded = "\"\\/\b\f\n\r\t";
    if (const std::size_t k = shorts.find(c); k != std::string_view::npos) {
      out += decoded[k];
      i += 2;
      continue;
    }
    const long unit = unit_at(s, i);
    if (unit < 0) {
      out += s[i++];
      continue;
    }
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const long low = unit_at(s, i + 6);
      if (low >= 0xdc00 && low <= 0xdfff) {
        append_utf8(out, 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00));
        i += 12;
        continue;
      }
    }
    append_utf8(out, unit >= 0xd800 && unit <= 0xdfff ? 0xfffd : static_cast<uint32_t>(unit));
    i += 6;
  }
  return out;
}

class Oracle {
 public:
  Outcome walk(const json& root) {
    if (!root.is_object()) {
      fail(R::json_invalid);
    } else {
      value(root, Shape::kRoot, F::kOther, 1);
    }
    return outcome_;
  }

 private:
  bool failed() const { return outcome_.reason != R::ok; }
  void fail(RequestReason reason) {
    if (!failed()) outcome_.reason = reason;
  }
  bool enter(uint32_t depth) {
    if (depth > kMaxDepth) fail(R::json_too_deep);
    return !failed();
  }
  void emit(PromptField field, const std::string& s) { outcome_.texts.push_back({field, s}); }

  // A free-form (text) or excluded value at `depth` (its own, if it is a container).
  void untracked(const json& v, bool text, PromptField field, uint32_t depth) {
    if (v.is_string()) {
      if (text) emit(field, v.get<std::string>());
      return;
    }
    if (!v.is_structured() || !enter(depth)) return;
    if (v.is_object()) {
      for (const auto& [key, child] : v.items()) {
        if (text) emit(field, key);
        untracked(child, text, field, depth + 1);
        if (failed()) return;
      }
    } else {
      for (const auto& child : v) {
        untracked(child, text, field, depth + 1);
        if (failed()) return;
      }
    }
  }

  // A value on a known path, of `shape`, at `depth`.
  void value(const json& v, Shape shape, PromptField field, uint32_t depth) {
    if (shape == Shape::kModel) return model(v);
    if (shape == Shape::kStream) {
      if (v.is_boolean()) {
        outcome_.fields.stream = v.get<bool>();
      } else if (!v.is_null()) {
        fail(R::json_invalid);
      }
      return;
    }
    if (shape == Shape::kJsonText && v.is_string()) {
      return emit(field, unescape_again(v.get<std::string>()));
    }
    if (shape == Shape::kExcluded || shape == Shape::kText || shape == Shape::kJsonText) {
      return untracked(v, shape != Shape::kExcluded, field, depth);
    }
    if (v.is_number() && (shape == Shape::kTextListItem || shape == Shape::kTokenIds)) {
      outcome_.fields.prompt_token_ids = true;
      return;
    }
    if (!v.is_structured()) return untracked(v, true, field, depth);
    // What a container of this shape is; deeper than the known paths, free-form text.
    Shape container = Shape::kText;
    const bool object = v.is_object();
    switch (shape) {
      case Shape::kRoot:
      case Shape::kMessage:
      case Shape::kPart:
      case Shape::kSource:
      case Shape::kInputItem:
      case Shape::kToolCall:
      case Shape::kToolCallFunction:
      case Shape::kTool:
      case Shape::kToolFunction:
        container = object ? shape : Shape::kText;
        break;
      case Shape::kMessages:
      case Shape::kToolCalls:
      case Shape::kTools:
      case Shape::kTokenIds:
        container = object ? Shape::kText : shape;
        break;
      case Shape::kContent:
        container = object ? Shape::kPart : Shape::kContent;
        break;
      case Shape::kTextOrList:
        container = object ? Shape::kText : Shape::kTextOrList;
        break;
      case Shape::kTextListItem:
        container =
            object ? (field == F::kInput ? Shape::kInputItem : Shape::kText) : Shape::kTokenIds;
        break;
      default:
        break;
    }
    if (container == Shape::kText || depth > kMaxTracked) {
      return untracked(v, true, field, depth);
    }
    if (!enter(depth)) return;
    if (!object) {
      const Shape element = container == Shape::kMessages     ? Shape::kMessage
                            : container == Shape::kToolCalls  ? Shape::kToolCall
                            : container == Shape::kTools      ? Shape::kTool
                            : container == Shape::kContent    ? Shape::kContent
                            : container == Shape::kTextOrList ? Shape::kTextListItem
                            : container == Shape::kTokenIds   ? Shape::kTokenIds
                                                              : Shape::kText;
      for (const auto& child : v) {
        // Inside an array of token ids, numbers are token ids and anything else is text.
        if (container == Shape::kTokenIds && !child.is_number()) {
          untracked(child, true, field, depth + 1);
        } else {
          value(child, element, field, depth + 1);
        }
        if (failed()) return;
      }
      return;
    }
    const std::map<std::string, Member>& known = members_of(container);
    // Tools are free-form: every key is text, nothing is excluded (only the shapes remain).
    const bool tool = container == Shape::kTool || container == Shape::kToolFunction;
    bool base64 = false;
    for (const auto& [key, child] : v.items()) {
      // A chat template the host would run: refused at its name.
      if (container == Shape::kRoot && key == "chat_template") {
        return fail(R::json_request_chat_template);
      }
      // Tools: every key is text; elsewhere, a key the shape does not name, nor an excluded one.
      if (tool || (!is_structural_key(container, key) && kExcluded.count(key) == 0 &&
                   standard_values(key) == nullptr)) {
        emit(field, key);
      }
      Member m{Shape::kText, std::nullopt};
      const std::set<std::string>* standard = tool ? nullptr : standard_values(key);
      if (auto it = known.find(key); it != known.end()) {
        m = it->second;
      } else if (!tool && kExcluded.count(key) != 0) {
        m = {Shape::kExcluded, std::nullopt};
      }
      if (container == Shape::kRoot && key == "tool_choice") {
        // A standard string is not text, nor is the object form (it names a tool).
        standard = &kStandardToolChoices;
        if (child.is_structured()) m = {Shape::kExcluded, std::nullopt};
      }
      if (container == Shape::kSource && key == "type") base64 = child == json("base64");
      if (container == Shape::kSource && key == "data" && base64) m = {Shape::kExcluded, {}};
      if (standard != nullptr && m.shape == Shape::kText) {
        // An enum value: text unless standard; a container under it is free-form.
        if (!child.is_string() || standard->count(child.get<std::string>()) == 0) {
          value(child, Shape::kText, field, depth + 1);
        }
      } else if (m.shape == Shape::kMax) {
        max(key, child);
      } else {
        value(child, m.shape, m.field.value_or(field), depth + 1);
      }
      if (failed()) return;
    }
  }

  void max(const std::string& key, const json& v) {
    std::optional<uint64_t>& target = key == "max_tokens" ? outcome_.fields.max_tokens
                                      : key == "max_completion_tokens"
                                          ? outcome_.fields.max_completion_tokens
                                          : outcome_.fields.max_output_tokens;
    if (v.is_number_unsigned()) {
      target = v.get<uint64_t>();
    } else if (!v.is_null()) {
      fail(R::json_invalid);
    }
  }

  void model(const json& v) {
    if (v.is_string() && v.get_ref<const std::string&>().size() > kMaxModelBytes) {
      fail(R::json_field_too_long);
    } else if (v.is_string()) {
      outcome_.fields.model = v.get<std::string>();
    } else if (!v.is_null()) {
      fail(R::json_invalid);
    }
  }

  static const std::map<std::string, Member>& members_of(Shape object) {
    static const std::map<std::string, Member> kNone;
    static const std::map<std::string, Member> kRoot = {
        {"messages", {Shape::kMessages, F::kMessageContent}},
        {"tools", {Shape::kTools, F::kToolDescription}},
        {"prompt", {Shape::kTextOrList, F::kPrompt}},
        {"input", {Shape::kTextOrList, F::kInput}},
        {"instructions", {Shape::kText, F::kInstructions}},
        {"system", {Shape::kContent, F::kSystem}},
        {"suffix", {Shape::kText, F::kSuffix}},
        {"model", {Shape::kModel, {}}},
        {"stream", {Shape::kStream, {}}},
        {"max_tokens", {Shape::kMax, {}}},
        {"max_completion_tokens", {Shape::kMax, {}}},
        {"max_output_tokens", {Shape::kMax, {}}},
        {"user", {Shape::kExcluded, {}}},
        {"service_tier", {Shape::kExcluded, {}}}};
    static const std::map<std::string, Member> kMessage = {
        {"content", {Shape::kContent, F::kMessageContent}},
        {"name", {Shape::kText, F::kMessageName}},
        {"tool_calls", {Shape::kToolCalls, F::kToolArguments}},
        {"function_call", {Shape::kToolCallFunction, F::kToolArguments}}};
    static const std::map<std::string, Member> kPart = {{"text", {Shape::kText, {}}},
                                                        {"content", {Shape::kContent, {}}},
                                                        {"source", {Shape::kSource, {}}},
                                                        {"file", {Shape::kPart, {}}}};
    static const std::map<std::string, Member> kSource = {{"media_type", {Shape::kExcluded, {}}},
                                                          {"url", {Shape::kExcluded, {}}},
                                                          {"content", {Shape::kContent, {}}}};
    static const std::map<std::string, Member> kInputItem = {
        {"content", {Shape::kContent, F::kInput}},
        {"output", {Shape::kContent, F::kInput}},
        {"summary", {Shape::kContent, F::kInput}},
        {"arguments", {Shape::kJsonText, F::kToolArguments}},
        {"name", {Shape::kText, F::kToolArguments}}};
    static const std::map<std::string, Member> kToolCall = {
        {"function", {Shape::kToolCallFunction, F::kToolArguments}}};
    static const std::map<std::string, Member> kToolCallFunction = {
        {"arguments", {Shape::kJsonText, F::kToolArguments}}};
    static const std::map<std::string, Member> kTool = {
        {"function", {Shape::kToolFunction, F::kToolDescription}},
        {"input_schema", {Shape::kText, F::kToolSchema}}};
    static const std::map<std::string, Member> kToolFunction = {
        {"parameters", {Shape::kText, F::kToolSchema}}};
    switch (object) {
      case Shape::kRoot:
        return kRoot;
      case Shape::kMessage:
        return kMessage;
      case Shape::kPart:
        return kPart;
      case Shape::kSource:
        return kSource;
      case Shape::kInputItem:
        return kInputItem;
      case Shape::kToolCall:
        return kToolCall;
      case Shape::kToolCallFunction:
        return kToolCallFunction;
      case Shape::kTool:
        return kTool;
      case Shape::kToolFunction:
        return kToolFunction;
      default:
        return kNone;
    }
  }

  Outcome outcome_;
};

// Whether any object anywhere in the body repeats a key (nlohmann's DOM keeps only the last).
class DuplicateFinder : public nlohmann::json_sax<json> {
 public:
  bool found = false;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back(std::set<std::string>{});
    return true;
  }
  bool key(string_t& k) override {
    if (!keys_.back()->insert(k).second) found = true;
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    keys_.emplace_back(std::nullopt);
    return true;
  }
  bool end_array() override {
    keys_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  std::vector<std::optional<std::set<std::string>>> keys_;
};

bool has_duplicate_keys(std::string_view body) {
  DuplicateFinder finder;
  json::sax_parse(body, &finder);
  return finder.found;
}

// ---- generation ------------------------------------------------------------------------------

constexpr std::string_view kKnownNames[] = {"messages",
                                            "tools",
                                            "prompt",
                                            "input",
                                            "instructions",
                                            "system",
                                            "suffix",
                                            "model",
                                            "stream",
                                            "max_tokens",
                                            "max_completion_tokens",
                                            "max_output_tokens",
                                            "role",
                                            "content",
                                            "name",
                                            "tool_calls",
                                            "function_call",
                                            "chat_template",
                                            "type",
                                            "text",
                                            "id",
                                            "function",
                                            "arguments",
                                            "description",
                                            "parameters",
                                            "output",
                                            "user",
                                            "service_tier",
                                            "tool_choice",
                                            "source",
                                            "file",
                                            "media_type",
                                            "data",
                                            "url",
                                            "summary",
                                            "input_schema",
                                            "call_id",
                                            "tool_call_id",
                                            "tool_use_id",
                                            "file_id",
                                            "status",
                                            "cache_control",
                                            "signature",
                                            "encrypted_content",
                                            "image_url",
                                            "input_audio",
                                            "file_data",
                                            "video_url",
                                            "audio_url",
                                            "filename",
                                            "thinking",
                                            "refusal",
                                            "title",
                                            "context",
                                            "temperature",
                                            "top_p",
                                            "top_k",
                                            "min_p",
                                            "n",
                                            "seed",
                                            "stop",
                                            "frequency_penalty",
                                            "presence_penalty",
                                            "repetition_penalty",
                                            "logprobs",
                                            "top_logprobs",
                                            "logit_bias",
                                            "stream_options",
                                            "parallel_tool_calls",
                                            "response_format",
                                            "metadata",
                                            "store",
                                            "reasoning_effort"};

bool is_known_name(std::string_view key) {
  for (std::string_view name : kKnownNames) {
    if (name == key) return true;
  }
  return false;
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  json document() {
    json root = json::object();
    const bool deep = chance(0.06);
    for (std::size_t n = below(8) + 1; n > 0; --n) {
      switch (below(16)) {
        case 0:
        case 1:
        case 2:
          root["messages"] = messages();
          break;
        case 3:
          root["tools"] = tools();
          break;
        case 4:
          root["prompt"] = text_or_list(false);
          break;
        case 5:
          root["input"] = text_or_list(true);
          break;
        case 6:
          root["instructions"] = maybe_wrong(string());
          break;
        case 7:
          root["system"] = content();
          break;
        case 8:
          root["suffix"] = maybe_wrong(string());
          break;
        case 9:
          root["model"] = model();
          break;
        case 10:
          root["stream"] = chance(0.9) ? json(chance(0.5)) : scalar();
          break;
        case 11:
          root[pick({"max_tokens", "max_completion_tokens", "max_output_tokens"})] = limit();
          break;
        case 12:
          root[pick({"user", "service_tier", "tool_choice", "chat_template_kwargs",
                     "response_format"})] = chance(0.5)   ? json(string())
                                            : chance(0.3) ? json(pick({"auto", "none", "required"}))
                                                          : value(3);
          break;
        default:
          root[key()] = value(3);
          break;
      }
    }
    if (deep) root[key()] = chain(28 + below(10));
    return root;
  }

  // Serialises with random escapes and whitespace. Keys with a known name stay unescaped unless
  // `strict_breaking` is set; then known names may be escaped too and some objects repeat a
  // member, which nlohmann accepts and the extractor may reject.
  std::string write(const json& v, bool strict_breaking = false) {
    strict_breaking_ = strict_breaking;
    std::string out;
    space(out);
    write_value(v, out);
    space(out);
    return out;
  }

  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  std::size_t below(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  Rng& rng() { return rng_; }

 private:
  std::string pick(std::initializer_list<const char*> names) {
    return *(names.begin() + below(names.size()));
  }

  uint32_t code_point() {
    switch (below(12)) {
      case 0:
        return static_cast<uint32_t>(below(0x20));  // control characters
      case 1:
        return pick({"\"", "\\", "/"})[0];
      case 2:
        return static_cast<uint32_t>(0x80 + below(0x800 - 0x80));
      case 3: {
        uint32_t cp;
        do cp = static_cast<uint32_t>(0x800 + below(0x10000 - 0x800));
        while (cp >= 0xd800 && cp <= 0xdfff);
        return cp;
      }
      case 4:
        return static_cast<uint32_t>(0x10000 + below(0x110000 - 0x10000));
      case 5: {
        constexpr uint32_t kEdges[] = {0x7f,   0x80,   0x7ff,   0x800,    0xd7ff, 0xe000, 0xfeff,
                                       0xfffd, 0xffff, 0x10000, 0x10ffff, 0x2028, 0x1f600};
        return kEdges[below(std::size(kEdges))];
      }
      default:
        return static_cast<uint32_t>(0x20 + below(0x5f));  // printable ASCII
    }
  }

  static void append_utf8(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xc0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xe0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      s += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      s += static_cast<char>(0xf0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      s += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  std::string string() {
    const std::size_t length = chance(0.03) ? 1000 + below(4000) : below(24);
    const bool ascii_run = chance(0.5);
    std::string s;
    for (std::size_t i = 0; i < length; ++i) {
      append_utf8(s,
                  ascii_run && chance(0.9) ? static_cast<uint32_t>('a' + below(26)) : code_point());
    }
    return s;
  }

  // Tool-call arguments: half the time a JSON document as the host reads it, its strings written
  // with escapes (\u, surrogate pairs) that the second unescape decodes.
  json arguments() {
    if (chance(0.5)) return maybe_wrong(string());
    return json(json{{string(), string()}, {"n", below(10)}}.dump(-1, ' ', chance(0.5)));
  }

  std::string key() {
    if (chance(0.4)) return std::string(kKnownNames[below(std::size(kKnownNames))]);
    if (chance(0.2)) return string();
    return pick(
        {"metadata", "temperature", "user", "extra", "x", "tool_choice", "seed", "logprobs"});
  }

  json number() {
    switch (below(6)) {
      case 0:
        return json(static_cast<uint64_t>(rng_()));
      case 1:
        return json(-static_cast<int64_t>(below(1000000)));
      case 2:
        return json(static_cast<double>(static_cast<int64_t>(rng_() % 2000001) - 1000000) / 1000.0);
      case 3:
        return json(std::ldexp(1.0, static_cast<int>(below(400)) - 200));
      default:
        return json(below(100000));
    }
  }

  json scalar() {
    switch (below(5)) {
      case 0:
        return json(string());
      case 1:
        return number();
      case 2:
        return json(chance(0.5));
      case 3:
        return json(nullptr);
      default:
        return json(below(50000));
    }
  }

  json value(int budget) {
    if (budget <= 0 || chance(0.5)) return scalar();
    if (chance(0.5)) {
      json a = json::array();
      for (std::size_t n = below(5); n > 0; --n) a.push_back(value(budget - 1));
      return a;
    }
    json o = json::object();
    for (std::size_t n = below(5); n > 0; --n) o[key()] = value(budget - 1);
    return o;
  }

  json chain(std::size_t levels) {
    json v = string();
    for (std::size_t i = 0; i < levels; ++i) {
      if (chance(0.5)) {
        v = json::array({v});
      } else {
        json o = json::object();
        o[key()] = std::move(v);
        v = std::move(o);
      }
    }
    return v;
  }

  json maybe_wrong(json right) { return chance(0.9) ? right : value(2); }

  // A role, type or status that is mostly not standard: near misses, empty, as long as the value
  // buffer and longer, random text, a container.
  json enum_value() {
    switch (below(8)) {
      case 0:
        return json(pick({"User", "user ", "use", "", "narrator", "x_note", "done", "text\n"}));
      case 1:
        return json(pick({"function_call_output", "redacted_thinking", "ipython", "model"}));
      case 2:
        return json(std::string(23 + below(3), 'r'));
      case 3:
        return value(2);
      default:
        return json(string());
    }
  }

  json model() {
    if (chance(0.05)) return json(std::string(kMaxModelBytes - 2 + below(5), 'm'));
    if (chance(0.05)) return value(1);
    return json(chance(0.5) ? pick({"gpt-4o", "claude-3-5-sonnet", "llama-3.1-70b"}) : string());
  }

  json limit() {
    if (chance(0.8)) return json(chance(0.5) ? below(100000) : static_cast<uint64_t>(rng_()));
    return chance(0.3) ? json(nullptr) : scalar();
  }

  json parts(bool nested) {
    json a = json::array();
    for (std::size_t n = below(4); n > 0; --n) {
      json part = json::object();
      const std::size_t kind = below(9);
      if (kind == 5) {
        a.push_back(string());  // a bare string part
        continue;
      }
      if (kind == 6) {
        part["type"] = pick({"thinking", "refusal", "input_text", "made_up"});
        part[pick({"thinking", "refusal", "text", "body"})] = maybe_wrong(string());
        if (chance(0.3)) part["signature"] = string();
      } else if (kind == 7) {
        json source = json::object();
        const bool type_first = chance(0.5);
        if (type_first) source["type"] = pick({"base64", "text", "content"});
        source["media_type"] = "text/plain";
        source["data"] = string();
        if (!type_first) source["type"] = pick({"base64", "text"});
        part["type"] = pick({"document", "image"});
        part["source"] = std::move(source);
        if (chance(0.3)) part["title"] = string();
      } else if (kind == 8) {
        part["type"] = "file";
        part["file"] = json{{"file_data", string()}, {"filename", string()}, {"file_id", "f"}};
      } else if (kind <= 1) {
        part["type"] = "text";
        part["text"] = maybe_wrong(string());
      } else if (kind == 2) {
        part["type"] = "image_url";
        part["image_url"] = json{{"url", "https://example.com/a.png"}, {"text", string()}};
      } else if (kind == 3 && !nested) {
        part["type"] = "tool_result";
        part["tool_use_id"] = "t1";
        part["content"] = chance(0.5) ? json(string()) : parts(true);
      } else {
        part = value(2);
      }
      if (part.is_object() && chance(0.2)) part[key()] = value(2);
      a.push_back(std::move(part));
    }
    return a;
  }

  json content() {
    switch (below(6)) {
      case 0:
      case 1:
      case 2:
        return json(string());
      case 3:
      case 4:
        return parts(false);
      default:
        return value(2);
    }
  }

  json messages() {
    if (chance(0.05)) return value(2);
    json a = json::array();
    for (std::size_t n = below(5); n > 0; --n) {
      if (chance(0.05)) {
        a.push_back(value(2));
        continue;
      }
      json m = json::object();
      m["role"] = chance(0.8) ? json(pick({"system", "user", "assistant", "tool", "developer"}))
                              : enum_value();
      if (chance(0.9)) m["content"] = content();
      if (chance(0.2)) m["name"] = maybe_wrong(string());
      if (chance(0.2)) {
        json calls = json::array();
        for (std::size_t k = below(3); k > 0; --k) {
          json call = {{"id", chance(0.8) ? json("call_1") : json(string())},
                       {"type", chance(0.8) ? json("function") : enum_value()}};
          call["function"] = json{{"name", "f"}, {"arguments", arguments()}};
          if (chance(0.2)) call[key()] = value(2);
          calls.push_back(std::move(call));
        }
        m["tool_calls"] = std::move(calls);
      }
      if (chance(0.05)) m["function_call"] = json{{"name", "f"}, {"arguments", arguments()}};
      if (chance(0.3)) m[key()] = value(3);
      a.push_back(std::move(m));
    }
    return a;
  }

  json tools() {
    json a = json::array();
    for (std::size_t n = below(4); n > 0; --n) {
      json t = json::object();
      if (chance(0.5)) {
        t["type"] = "function";
        t["function"] =
            json{{"name", "f"}, {"description", maybe_wrong(string())}, {"parameters", value(3)}};
      } else {
        t["name"] = "g";
        t["description"] = maybe_wrong(string());
        t["input_schema"] = value(3);
      }
      if (chance(0.2)) t[key()] = value(2);
      a.push_back(std::move(t));
    }
    return a;
  }

  json text_or_list(bool input) {
    switch (below(input ? 6 : 5)) {
      case 0:
        return json(string());
      case 1: {
        json a = json::array();
        for (std::size_t n = below(4); n > 0; --n) a.push_back(string());
        return a;
      }
      case 2: {
        json a = json::array();
        for (std::size_t n = below(6); n > 0; --n) a.push_back(below(100000));
        return a;
      }
      case 3: {
        json a = json::array();
        for (std::size_t n = below(3); n > 0; --n) {
          json ids = json::array();
          for (std::size_t k = below(4); k > 0; --k) ids.push_back(below(100000));
          a.push_back(std::move(ids));
        }
        return a;
      }
      case 4:
        return value(3);
      default: {
        json a = json::array();
        for (std::size_t n = below(4); n > 0; --n) {
          json item = json::object();
          if (chance(0.1)) {
            item["type"] = "reasoning";
            item["id"] = "rs_1";
            item["summary"] = parts(false);
            if (chance(0.5)) item["encrypted_content"] = string();
          } else if (chance(0.2)) {
            item["type"] = "function_call";
            item["name"] = "f";
            item["arguments"] = maybe_wrong(string());
          } else if (chance(0.2)) {
            item["type"] = "function_call_output";
            item["output"] = content();
          } else {
            if (chance(0.7)) item["role"] = chance(0.8) ? json("user") : enum_value();
            if (chance(0.5)) item["type"] = chance(0.8) ? json("message") : enum_value();
            if (chance(0.3)) item["status"] = chance(0.5) ? json("completed") : enum_value();
            item["content"] = content();
          }
          a.push_back(chance(0.85) ? std::move(item) : value(2));
        }
        return a;
      }
    }
  }

  void space(std::string& out) {
    if (!chance(0.15)) return;
    constexpr std::string_view kSpaces[] = {" ", "\n", "\t", "\r\n  ", "  "};
    out += kSpaces[below(std::size(kSpaces))];
  }

  void write_string(const std::string& s, std::string& out, bool may_escape) {
    static constexpr char kHex[] = "0123456789abcdef0123456789ABCDEF";
    out += '"';
    const bool upper = chance(0.5);
    auto unit = [&](uint32_t u) {
      out += "\\u";
      for (int shift = 12; shift >= 0; shift -= 4)
        out += kHex[((u >> shift) & 0xf) + (upper ? 16 : 0)];
    };
    const double rate = may_escape ? (chance(0.5) ? 0.0 : chance(0.5) ? 0.2 : 1.0) : 0.0;
    for (std::size_t i = 0; i < s.size();) {
      const auto lead = static_cast<uint8_t>(s[i]);
      const std::size_t n = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
      uint32_t cp = n == 1 ? lead : n == 2 ? lead & 0x1f : n == 3 ? lead & 0x0f : lead & 0x07;
      for (std::size_t k = 1; k < n; ++k) cp = cp << 6 | (static_cast<uint8_t>(s[i + k]) & 0x3f);
      const bool must = cp < 0x20 || cp == '"' || cp == '\\';
      if (must || chance(rate)) {
        const char* short_form = cp == '"'    ? "\\\""
                                 : cp == '\\' ? "\\\\"
                                 : cp == '/'  ? "\\/"
                                 : cp == '\b' ? "\\b"
                                 : cp == '\f' ? "\\f"
                                 : cp == '\n' ? "\\n"
                                 : cp == '\r' ? "\\r"
                                 : cp == '\t' ? "\\t"
                                              : nullptr;
        if (short_form != nullptr && chance(0.5)) {
          out += short_form;
        } else if (cp >= 0x10000) {
          unit(0xd800 + ((cp - 0x10000) >> 10));
          unit(0xdc00 + ((cp - 0x10000) & 0x3ff));
        } else {
          unit(cp);
        }
      } else {
        out.append(s, i, n);
      }
      i += n;
    }
    out += '"';
  }

  void write_value(const json& v, std::string& out) {
    if (v.is_object()) {
      out += '{';
      bool first = true;
      auto member = [&](const std::string& k, const json& child) {
        if (!first) out += ',';
        first = false;
        space(out);
        write_string(k, out, strict_breaking_ || !is_known_name(k));
        space(out);
        out += ':';
        space(out);
        write_value(child, out);
        space(out);
      };
      for (const auto& [k, child] : v.items()) member(k, child);
      if (strict_breaking_ && !v.empty() && chance(0.2)) {
        const auto repeated = std::next(v.begin(), static_cast<std::ptrdiff_t>(below(v.size())));
        member(repeated.key(), repeated.value());
      }
      out += '}';
    } else if (v.is_array()) {
      out += '[';
      bool first = true;
      for (const auto& child : v) {
        if (!first) out += ',';
        first = false;
        space(out);
        write_value(child, out);
        space(out);
      }
      out += ']';
    } else if (v.is_string()) {
      write_string(v.get_ref<const std::string&>(), out, true);
    } else {
      out += v.dump();
    }
  }

  Rng rng_;
  bool strict_breaking_ = false;
};

std::vector<std::size_t> random_cuts(Generator& gen, std::size_t size) {
  std::vector<std::size_t> cuts;
  if (size > 0 && size < 400 && gen.chance(0.1)) {
    for (std::size_t i = 1; i < size; ++i) cuts.push_back(i);  // byte by byte
    return cuts;
  }
  for (std::size_t n = gen.below(8); n > 0; --n) cuts.push_back(gen.below(size + 1));
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

std::string describe(const Outcome& o) {
  std::string s = std::string(info_of(o.reason).name) + " model=" + o.fields.model;
  for (const Text& t : o.texts) {
    s += "\n  " + std::string(field_name(t.field)) + "=" + json(t.text).dump(-1, ' ', true);
  }
  return s;
}

constexpr int kDocuments = 2000;

TEST(PromptExtractorDifferential, AgreesWithNlohmannOnRandomRequests) {
  std::size_t accepted = 0;
  std::size_t texts = 0;
  std::size_t bodies = 0;
  std::array<std::size_t, kRequestReasons.size()> reasons{};
  for (int i = 0; i < kDocuments; ++i) {
    Generator gen(static_cast<uint64_t>(i));
    const json doc = gen.document();
    std::string serialisations[] = {doc.dump(), doc.dump(static_cast<int>(gen.below(4))),
                                    doc.dump(-1, ' ', true), gen.write(doc)};
    for (const std::string& body : serialisations) {
      SCOPED_TRACE("document " + std::to_string(i) + ": " + body.substr(0, 2000));
      const json parsed = json::parse(body);  // throws (fails the test) if the serialiser is wrong
      ASSERT_EQ(parsed, doc) << "the serialiser changed the document";
      const Outcome expected = Oracle().walk(parsed);
      const Outcome got = extract(body, random_cuts(gen, body.size()));
      ++bodies;
      ++reasons[static_cast<std::size_t>(got.reason)];
      ASSERT_EQ(info_of(got.reason).name, info_of(expected.reason).name)
          << "expected " << describe(expected) << "\ngot " << describe(got);
      if (expected.reason != R::ok) continue;
      ASSERT_EQ(got.texts, expected.texts);
      ASSERT_TRUE(same_fields(got.fields, expected.fields))
          << "expected " << describe(expected) << "\ngot " << describe(got);
      ++accepted;
      texts += got.texts.size();
    }
  }
  std::printf("differential: %zu bodies, %zu accepted, %zu texts compared; reasons:", bodies,
              accepted, texts);
  for (std::size_t r = 0; r < reasons.size(); ++r) {
    if (reasons[r] != 0)
      std::printf(" %s=%zu", std::string(kRequestReasons[r].name).c_str(), reasons[r]);
  }
  std::printf("\n");
  EXPECT_GT(accepted, bodies / 2) << "the generator should mostly make valid requests";
}

TEST(PromptExtractorDifferential, RejectsWhatNlohmannRejectsInMutants) {
  std::size_t mutants = 0;
  std::size_t both_reject = 0;
  std::size_t both_accept = 0;
  std::size_t stricter_duplicate = 0;
  std::size_t stricter_escaped_key = 0;
  std::size_t unchecked_duplicates = 0;
  std::size_t number_overflow = 0;
  for (int i = 0; i < kDocuments; ++i) {
    Generator gen(static_cast<uint64_t>(i) + 1'000'000);
    const json doc = gen.document();
    const std::string body = gen.chance(0.5) ? gen.write(doc) : doc.dump(-1, ' ', gen.chance(0.5));
    for (int m = 0; m < 7; ++m) {
      std::string mutant = body;
      if (m == 6) {
        mutant = gen.write(doc, true);
      } else if (m < 2) {
        mutant.resize(gen.below(body.size()));
      } else if (m < 4) {
        mutant[gen.below(body.size())] ^= static_cast<char>(1 << gen.below(8));
      } else {
        constexpr std::string_view kBytes =
            "{}[]\":,\\u0123456789eE.-+ tfnrl\x80\xbf\xc3\xed\xf4\xff";
        mutant[gen.below(body.size())] = kBytes[gen.below(kBytes.size())];
      }
      SCOPED_TRACE(
          "mutant of document " + std::to_string(i) + ": " +
          json(mutant).dump(-1, ' ', true, json::error_handler_t::replace).substr(0, 2000));
      ++mutants;
      const Outcome got = extract(mutant, random_cuts(gen, mutant.size()));
      json parsed;
      bool nlohmann_rejects = false;
      try {
        parsed = json::parse(mutant);
      } catch (const json::out_of_range& e) {
        // nlohmann refuses numbers that overflow a double (error 406); RFC 8259 §6 leaves the
        // range to the implementation and the extractor accepts the grammar.
        ASSERT_EQ(e.id, 406) << e.what();
        ++number_overflow;
        continue;
      } catch (const json::parse_error&) {
        nlohmann_rejects = true;
      }
      if (mutant.find('\0') != std::string::npos) {
        // A raw NUL is invalid anywhere in JSON; nlohmann's lexer takes one outside a string
        // for the end of the input and accepts what came before.
        ASSERT_NE(got.reason, R::ok);
        ++both_reject;
        continue;
      }
      if (nlohmann_rejects) {
        ASSERT_NE(got.reason, R::ok) << "nlohmann rejects this body; so must the extractor";
        ++both_reject;
        continue;
      }
      const bool duplicates = has_duplicate_keys(mutant);
      if (got.reason == R::json_duplicate_key) {
        ASSERT_TRUE(duplicates) << "json_duplicate_key without a duplicate key";
        ++stricter_duplicate;
        continue;
      }
      if (got.reason == R::json_escaped_known_key) {
        ++stricter_escaped_key;
        continue;
      }
      if (duplicates) {
        ++unchecked_duplicates;  // nlohmann's DOM lost a value: nothing to compare against
        continue;
      }
      const Outcome expected = Oracle().walk(parsed);
      ASSERT_EQ(info_of(got.reason).name, info_of(expected.reason).name)
          << "expected " << describe(expected) << "\ngot " << describe(got);
      if (expected.reason == R::ok) {
        ASSERT_EQ(got.texts, expected.texts);
        ASSERT_TRUE(same_fields(got.fields, expected.fields));
      }
      ++both_accept;
    }
  }
  std::printf(
      "mutants: %zu, both reject %zu, compared with the oracle %zu, extractor stricter: "
      "duplicate key %zu, escaped known key %zu; duplicates nlohmann merged %zu; numbers "
      "overflowing a double (nlohmann stricter) %zu\n",
      mutants, both_reject, both_accept, stricter_duplicate, stricter_escaped_key,
      unchecked_duplicates, number_overflow);
  EXPECT_GT(both_reject, mutants / 4);
}

}  // namespace
}  // namespace sluice
