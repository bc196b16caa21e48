#include "sluice/completion_extractor.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

// Counts allocations while an extractor is fed, to hold feed() to "no allocation".
namespace {
bool counting_allocations = false;
std::size_t allocations = 0;
}  // namespace

void* operator new(std::size_t size) {
  if (counting_allocations) ++allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// GCC sees free() of memory from operator new once these are inlined; here that is the pairing.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace sluice {
namespace {

// What a body gave: the text of each field, in order, and whether it was malformed.
struct Extracted {
  std::vector<std::string> fields;
  bool malformed = false;
  bool operator==(const Extracted&) const = default;
};

void PrintTo(const Extracted& extracted, std::ostream* os) {
  *os << "{malformed " << extracted.malformed << ", fields [";
  for (const std::string& field : extracted.fields) *os << testing::PrintToString(field) << " ";
  *os << "]}";
}

// RFC 3629, strictly: what every piece handed to the sink must be on its own.
bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<uint8_t>(text[i]);
    int continuations = 0;
    uint8_t low = 0x80, high = 0xbf;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) {
      continuations = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      continuations = 2;
      if (c == 0xe0) low = 0xa0;
      if (c == 0xed) high = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      continuations = 3;
      if (c == 0xf0) low = 0x90;
      if (c == 0xf4) high = 0x8f;
    } else {
      return false;
    }
    if (i + continuations >= text.size()) return false;
    for (int k = 1; k <= continuations; ++k) {
      const auto b = static_cast<uint8_t>(text[i + k]);
      if (b < (k == 1 ? low : 0x80) || b > (k == 1 ? high : 0xbf)) return false;
    }
    i += 1 + continuations;
  }
  return true;
}

// A sink that checks the contract on every call: pieces are non-empty valid UTF-8 (so none
// splits a character), and each field's text is closed by one field end.
class Recorder : public CompletionSink {
 public:
  void on_completion_text(std::string_view utf8) override {
    EXPECT_FALSE(utf8.empty()) << "an empty piece";
    EXPECT_TRUE(valid_utf8(utf8)) << "a piece that is not valid UTF-8 on its own: "
                                  << testing::PrintToString(std::string(utf8));
    current_ += utf8;
    open_ = true;
    ++pieces_;
  }
  void on_completion_field_end() override {
    fields_.push_back(std::move(current_));
    current_.clear();
    open_ = false;
  }
  std::vector<std::string> take_fields() {
    EXPECT_FALSE(open_) << "text after the last field end: " << current_;
    return std::move(fields_);
  }
  std::size_t pieces() const { return pieces_; }

 private:
  std::vector<std::string> fields_;
  std::string current_;
  bool open_ = false;
  std::size_t pieces_ = 0;
};

std::span<const uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

Extracted extract(bool event_stream, const std::vector<std::string_view>& pieces) {
  CompletionExtractor extractor;
  Recorder sink;
  extractor.begin(event_stream);
  for (std::string_view piece : pieces) extractor.feed(bytes_of(piece), sink);
  extractor.finish(sink);
  return {sink.take_fields(), extractor.malformed()};
}

// Whole, split at every byte boundary, and byte by byte: all must agree.
Extracted extract_every_way(bool event_stream, std::string_view input) {
  const Extracted whole = extract(event_stream, {input});
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    EXPECT_EQ(extract(event_stream, {input.substr(0, cut), input.substr(cut)}), whole)
        << "cut " << cut;
  }
  std::vector<std::string_view> single;
  for (std::size_t i = 0; i < input.size(); ++i) single.push_back(input.substr(i, 1));
  EXPECT_EQ(extract(event_stream, single), whole) << "byte by byte";
  return whole;
}

struct ExtractionCase {
  const char* name;
  std::string body;
  std::vector<std::string> fields;
  bool malformed = false;
};

std::string case_name(const testing::TestParamInfo<ExtractionCase>& param_info) {
  return param_info.param.name;
}

constexpr bool kMalformed = true;
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// ---- Plain JSON bodies --------------------------------------------------------------------

class PlainBody : public testing::TestWithParam<ExtractionCase> {};

TEST_P(PlainBody, HandsOutTheDecodedTextOfEachField) {
  const ExtractionCase& c = GetParam();
  EXPECT_EQ(extract_every_way(false, c.body), (Extracted{c.fields, c.malformed}));
}

const ExtractionCase kPlainCases[] = {
    {"OpenAiChatCompletion",
     R"({"id":"chatcmpl-9x","object":"chat.completion","created":1718000000,"model":"gpt-4o-mini",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?",)"
     R"("refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":)"
     R"({"prompt_tokens":9,"completion_tokens":12,"total_tokens":21},"system_fingerprint":"fp"})",
     {"Hello! How can I help?"}},
    {"ContentAsAnArrayOfParts",
     R"({"choices":[{"message":{"content":[{"type":"text","text":"one "},{"type":"image_url",)"
     R"("image_url":{"url":"data:x","text":"no"}},{"text":"two","type":"text"},"stray",)"
     R"({"type":"text","text":null},[{"text":"no"}]]}}]})",
     {"one ", "data:x", "no", "two", "stray", "no"}},
    {"Refusal",
     R"({"choices":[{"message":{"role":"assistant","content":null,)"
     R"("refusal":"I can't help with that."}}]})",
     {"I can't help with that."}},
    {"ToolCallArguments",
     R"({"choices":[{"message":{"content":null,"tool_calls":[{"id":"call_1","type":"function",)"
     R"("function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_2",)"
     R"("type":"function","function":{"arguments":"{}","name":"now"}}]},"finish_reason":)"
     R"("tool_calls"}]})",
     {"get_weather", R"({"city":"Paris"})", "{}", "now"}},
    {"SeveralChoicesInOrder",
     R"({"choices":[{"index":0,"message":{"content":"first"}},{"index":1,"message":)"
     R"({"content":"second","refusal":"third"}},{"index":2,"message":{"content":"fourth"}}]})",
     {"first", "second", "third", "fourth"}},
    {"CompletionsText",
     R"({"id":"cmpl-1","object":"text_completion","choices":[{"text":"\n\nThis is a test.",)"
     R"("index":0,"logprobs":{"text_offset":[0],"tokens":["\n"],"text":"no"},)"
     R"("finish_reason":"length"},{"text":"again","index":1}]})",
     {"\n\nThis is a test.", "again"}},
    {"ResponsesApiBody",
     R"({"id":"resp_1","object":"response","status":"completed","output":[{"type":"reasoning",)"
     R"("summary":[{"type":"summary_text","text":"no"}]},{"type":"message","role":"assistant",)"
     R"("content":[{"type":"output_text","text":"Hi there","annotations":[{"text":"no"}]},)"
     R"({"type":"refusal","refusal":"no"}]},{"type":"function_call","name":"f",)"
     R"("arguments":"{\"x\":1}"}],"text":{"format":{"type":"text"}},"instructions":"no"})",
     {"no", "Hi there", "no", "no", "f", R"({"x":1})", "no"}},
    {"AnthropicMessage",
     R"({"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4",)"
     R"("content":[{"type":"text","text":"Hi!"},{"type":"tool_use","id":"t","name":"n",)"
     R"("input":{"text":"no","content":"no"}},{"type":"text","text":"Bye."}],)"
     R"("stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}})",
     {"Hi!", "n", "no", "no", "Bye."}},
    {"EveryShortEscape",
     R"({"choices":[{"text":"q\" b\\ s\/ \b\f\n\r\t end"}]})",
     {"q\" b\\ s/ \b\f\n\r\t end"}},
    {"UnicodeEscapes",
     R"({"choices":[{"text":"\u0041\u00e9\u00E9\u20ac\u2028\u0000|\ud83d\ude00\uD83D\uDE00"}]})",
     {std::string("A\xC3\xA9\xC3\xA9\xE2\x82\xAC\xE2\x80\xA8\0|", 13) +
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80"}},
    {"LoneSurrogatesBecomeReplacementCharacters",
     R"({"choices":[{"text":"a\ud800b"},{"text":"\udc00"},{"text":"\ud800\ud800\udc00"},)"
     R"({"text":"\ud83d\u0041"},{"text":"\ud800\n"},{"text":"\ud800"},{"text":"\udc00\ud800"}]})",
     {"a" + kReplacement + "b", kReplacement, kReplacement + "\xF0\x90\x80\x80", kReplacement + "A",
      kReplacement + "\n", kReplacement, kReplacement + kReplacement}},
    {"RawUtf8PassesThrough",
     "{\"choices\":[{\"text\":\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF "
     "\x7F\"}]}",
     {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF \x7F"}},
    {"IllFormedUtf8BecomesReplacementCharacters",
     "{\"choices\":[{\"text\":\"a\xFF"
     "b\"},{\"text\":\"\xC3(\"},{\"text\":\"\xC0\xAF\"},{\"text\":\"\xE0\x80\x80\"},"
     "{\"text\":\"\xED\xA0\x80\"},{\"text\":\"\xF4\x90\x80\x80\"},{\"text\":\"\xE2\x82\"},"
     "{\"text\":\"\xF0\x9F\x98\\n\"},{\"text\":\"\x80\xBF\"}]}",
     {"a" + kReplacement + "b", kReplacement + "(", kReplacement + kReplacement,
      kReplacement + kReplacement + kReplacement, kReplacement + kReplacement + kReplacement,
      kReplacement + kReplacement + kReplacement + kReplacement, kReplacement, kReplacement + "\n",
      kReplacement + kReplacement}},
    {"EmptyStringsAreFieldsToo",
     R"({"choices":[{"message":{"content":"","refusal":""}}]})",
     {"", ""}},
    // Every string is text, wherever it is, but under usage and logprobs.
    {"StringsAtAnyDepthAreText",
     R"({"content_filter":"no","message":{"content":"no"},"text":"no","data":{"choices":)"
     R"([{"text":"no"}]},"choices":[{"content":"no","message":{"role":"assistant","content":)"
     R"("yes","x":{"content":"no"},"message":{"content":"no"},"function":{"arguments":"no"}},)"
     R"("delta":{"content":"yes too"},"logprobs":{"content":[{"token":"no","text":"no"}]},)"
     R"("tool_calls":[{"function":{"arguments":"no"}}]}],"output":{"content":[{"text":"no"}]},)"
     R"("result":{"output":[{"content":[{"text":"no"}]}]}})",
     {"no", "no", "no", "no", "no", "yes", "no", "no", "no", "yes too", "no", "no", "no"}},
    {"StringsHoldingBracesAndQuotesAreJustStrings",
     R"({"id":"\"}]},\"choices\":[{\"text\":\"no","choices":[{"text":"}]\"{[\\",)"
     R"("x":"\\\"text\":\"no"},{"text":"{\"choices\":[{\"text\":\"x\"}]}"}]})",
     {"}]\"{[\\", "\\\"text\":\"no", R"({"choices":[{"text":"x"}]})"}},
    {"EscapedKeysAreNeverExcluded",
     R"({"choic\u0065s":[{"text":"no"}],"choices":[{"t\u0065xt":"no","text":"yes"}],)"
     R"("\u0069d":"escaped id","i\u0064":"too"})",
     {"no", "no", "yes", "escaped id", "too"}},
    {"KeysThatOnlyStartLikeExcludedOnesAreText",
     R"({"choices_":[{"text":"no"}],"choices":[{"texts":"no","tex":"no","text_":"no",)"
     R"("message":{"content_parts":"no","contents":"no","tool_calls_and_more":[]}}],)"
     R"("ids":"a","model_":"b","types":"c"})",
     {"no", "no", "no", "no", "no", "no", "a", "b", "c"}},
    {"StringsInsideAnyContainerAreText",
     R"({"choices":[{"text":["no"],"message":{"content":{"text":"no"},"refusal":["no"],)"
     R"("tool_calls":{"function":{"arguments":"no"}}}},{"text":1,"message":{"content":null,)"
     R"("tool_calls":[{"function":{"arguments":{"a":"no"}}},{"function":"no"}]}},"no",)"
     R"(["no"],{"text":true}],"output":[{"content":"no","arguments":["no"]}],"content":"no",)"
     R"("delta":["no"]})",
     {"no", "no", "no", "no", "no", "no", "no", "no", "no", "no", "no", "no"}},
    {"StringsInContainersOfAnyShapeAreText",
     R"({"choices":{"0":{"text":"no"}},"output":{"content":[{"text":"no"}]},)"
     R"("content":{"text":"no"}})",
     {"no", "no", "no"}},
    {"ExcludedKeysAndTreesAreNotText",
     R"({"id":"x","object":"x","model":"x","type":"x","role":"x","finish_reason":"x",)"
     R"("obfuscation":"x","choices":[{"index":0,"delta":{"content":"yes","role":"x"},)"
     R"("logprobs":{"content":[{"token":"x","top_logprobs":[{"token":"x"}]}]}}],)"
     R"("usage":{"note":"x","details":["x"]},"data":"x","data":["list item"]})",
     {"yes", "list item"}},
    {"ResponsesTextDeltaEvent",
     R"({"type":"response.output_text.delta","item_id":"msg_1","delta":"Hi"})",
     {"Hi"}},
    {"ResponsesDeltaBeforeItsTypeIsEmitted",
     R"({"delta":"maybe","type":"response.audio.delta","sequence_number":3})",
     {"maybe"}},
    {"ResponsesDeltaWithoutTypeIsEmitted", R"({"delta":"untyped"})", {"untyped"}},
    {"ResponsesDeltaOfAnyTypeIsText",
     R"({"type":"response.audio.delta","delta":"UklGRg=="})",
     {"UklGRg=="}},
    {"ResponsesRefusalAndArgumentDeltasAreText",
     R"({"type":"response.refusal.delta","delta":"r","x":{"type":"y"},"delta":"s"})",
     {"r", "s"}},
    {"ResponsesArgumentDelta",
     R"({"type":"response.function_call_arguments.delta","delta":"{\"a\""})",
     {"{\"a\""}},
    {"ResponsesDeltaOfAnUnknownTypeIsText",
     R"({"type":"response.reasoning_summary_text.delta","delta":"think"})",
     {"think"}},
    {"ResponsesEscapedTypeIsUnknown",
     R"({"type":"response.audio\u002edelta","delta":"scanned"})",
     {"scanned"}},
    {"ResponsesTypeThatIsNotAStringIsUnknown", R"({"type":null,"delta":"scanned"})", {"scanned"}},
    {"ResponsesTypeNeverHidesADelta",
     R"({"type":"response.audio.delta","type":"response.output_text.delta","delta":"a",)"
     R"("type":"response.audio.delta","delta":"no","type":[],"delta":"b"})",
     {"a", "no", "b"}},
    {"AnthropicTextDelta",
     R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}})",
     {"Hello"}},
    {"AnthropicJsonDeltaIsText",
     R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",)"
     R"("partial_json":"{\"text\":"}})",
     {"{\"text\":"}},
    {"PrettyPrintedWithCrLfAndTabs",
     "{\r\n\t\"choices\" : [ {\n  \"text\" :\t\"a\" ,\n \"message\" : { \"content\" : \"b\" }\n "
     "} ]\n}\n\r\n",
     {"a", "b"}},
    {"NestingUpToTheBound",
     "{\"x\":" + std::string(63, '[') + std::string(63, ']') + ",\"choices\":[{\"text\":\"a\"}]}",
     {"a"}},
    {"LongTextAcrossManyPieces",
     "{\"choices\":[{\"text\":\"" + std::string(300, 'x') + "\\n" + std::string(100, 'y') + "\"}]}",
     {std::string(300, 'x') + "\n" + std::string(100, 'y')}},
    // Malformed bodies: what came before the failure stays handed out, nothing after it does.
    {"NestingBeyondTheBound",
     "{\"choices\":[{\"text\":\"a\"}],\"x\":" + std::string(64, '[') + std::string(64, ']') +
         ",\"choices\":[{\"text\":\"b\"}]}",
     {"a"},
     kMalformed},
    {"TruncatedInAField",
     R"({"choices":[{"text":"a"},{"message":{"content":"hel)",
     {"a", "hel"},
     kMalformed},
    {"TruncatedAfterTheFields", R"({"choices":[{"text":"a"}])", {"a"}, kMalformed},
    {"TruncatedInsideACharacter", "{\"choices\":[{\"text\":\"a\xF0\x9F\x98", {"a"}, kMalformed},
    {"TruncatedAfterAHighSurrogate", R"({"choices":[{"text":"a\ud83d)", {"a"}, kMalformed},
    {"TruncatedInAnEscape", R"({"choices":[{"text":"a\u00)", {"a"}, kMalformed},
    {"ControlCharacterInAField",
     "{\"choices\":[{\"text\":\"ab\tc\"},{\"text\":\"no\"}]}",
     {"ab"},
     kMalformed},
    {"ControlCharacterInAnotherString",
     "{\"choices\":[{\"text\":\"a\"}],\"id\":\"\n\",\"output\":[{\"arguments\":\"no\"}]}",
     {"a"},
     kMalformed},
    {"BadEscapeInAField", R"({"choices":[{"text":"ab\qc"},{"text":"no"}]})", {"ab"}, kMalformed},
    {"BadHexInAField", R"({"choices":[{"text":"ab\u12g4"}]})", {"ab"}, kMalformed},
    {"BadEscapeAfterAHighSurrogate",
     R"({"choices":[{"text":"ab\ud800\q"}]})",
     {"ab" + kReplacement},
     kMalformed},
    {"BadHexAfterAHighSurrogate", R"({"choices":[{"text":"ab\ud800\udcxx"}]})", {"ab"}, kMalformed},
    {"TrailingGarbage", R"({"choices":[{"text":"a"}]} x)", {"a"}, kMalformed},
    {"TwoTopLevelValues",
     R"({"choices":[{"text":"a"}]}{"choices":[{"text":"b"}]})",
     {"a"},
     kMalformed},
    {"BadLiteralStopsExtraction", R"({"x":tru,"choices":[{"text":"no"}]})", {}, kMalformed},
    {"LeadingZero", R"({"x":01,"choices":[{"text":"no"}]})", {}, kMalformed},
    {"DotWithoutDigits", R"({"x":1.,"choices":[{"text":"no"}]})", {}, kMalformed},
    {"ExponentWithoutDigits", R"({"x":1e+,"choices":[{"text":"no"}]})", {}, kMalformed},
    {"MinusAlone", R"({"x":-,"choices":[{"text":"no"}]})", {}, kMalformed},
    {"MismatchedBrackets", R"({"choices":[{"text":"a"}}],"output":[]})", {"a"}, kMalformed},
    {"TrailingComma", R"({"choices":[{"text":"a"},],"content":[]})", {"a"}, kMalformed},
    {"MissingColon", R"({"choices" [{"text":"no"}]})", {}, kMalformed},
    {"UnquotedKey", R"({choices:[{"text":"no"}]})", {}, kMalformed},
    {"NonAsciiOutsideStrings", "{\"choices\":[{\"text\":\"a\"}]\xC2\xA0}", {"a"}, kMalformed},
    {"TopLevelArray", R"([{"choices":[{"text":"no"}]}])", {}, kMalformed},
    {"TopLevelString", R"("choices")", {}, kMalformed},
    {"DoneIsNotAPlainBody", "[DONE]", {}, kMalformed},
    {"ByteOrderMark", "\xEF\xBB\xBF{\"choices\":[{\"text\":\"no\"}]}", {}, kMalformed},
    // Read as a client that asked for a stream reads it: by its first byte, not its type.
    {"EventStreamSentAsJsonIsReadAsAStream", "data: {\"choices\":[{\"text\":\"no\"}]}\n\n", {"no"}},
    {"PlainTextIsMalformed", "Internal Server Error", {}, kMalformed},
    {"Empty", "", {}, kMalformed},
    {"WhitespaceOnly", " \r\n\t", {}, kMalformed},
};

INSTANTIATE_TEST_SUITE_P(CompletionExtractor, PlainBody, testing::ValuesIn(kPlainCases), case_name);

// ---- Server-sent events -------------------------------------------------------------------

class EventStream : public testing::TestWithParam<ExtractionCase> {};

TEST_P(EventStream, HandsOutTheFieldsOfEachEventInOrder) {
  const ExtractionCase& c = GetParam();
  EXPECT_EQ(extract_every_way(true, c.body), (Extracted{c.fields, c.malformed}));
}

const ExtractionCase kEventStreamCases[] = {
    {"OpenAiChatStream",
     "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
     "\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
     "\"finish_reason\":null}],\"usage\":null}\n\n"
     "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
     "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"}}]}\n\n"
     "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
     "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"total_tokens\":2}}\n\n"
     "data: [DONE]\n\n",
     {"", "Hel", "lo \xC3\xA9"}},
    {"OpenAiToolCallStream",
     "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":"
     "\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]}}]}\n\n"
     "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
     "{\"arguments\":\"{\\\"ci\"}}]}}]}\n\n"
     "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
     "{\"arguments\":\"ty\\\":1}\"}}]}}]}\n\n"
     "data: {\"choices\":[{\"delta\":{\"refusal\":\"no way\"}}]}\n\n"
     "data: [DONE]\n\n",
     {"get", "", "{\"ci", "ty\":1}", "no way"}},
    {"AnthropicStream",
     "event: message_start\n"
     "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
     "\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"usage\":{\"input_tokens\":25,"
     "\"output_tokens\":1}}}\n\n"
     "event: content_block_start\n"
     "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
     "\"text\":\"\"}}\n\n"
     "event: ping\n"
     "data: {\"type\": \"ping\"}\n\n"
     "event: content_block_delta\n"
     "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
     "\"text\":\"Hello\"}}\n\n"
     "event: content_block_delta\n"
     "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
     "\"text\":\" world\"}}\n\n"
     "event: content_block_delta\n"
     "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
     "\"input_json_delta\",\"partial_json\":\"{\\\"text\\\"\"}}\n\n"
     "event: message_delta\n"
     "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
     "\"usage\":{\"output_tokens\":15}}\n\n"
     "event: message_stop\n"
     "data: {\"type\":\"message_stop\"}\n\n",
     {"", "Hello", " world", "{\"text\""}},
    {"ResponsesApiStream",
     "event: response.created\n"
     "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"output\":[]}}\n\n"
     "event: response.output_text.delta\n"
     "data: {\"type\":\"response.output_text.delta\",\"item_id\":\"m\",\"output_index\":0,"
     "\"content_index\":0,\"delta\":\"Hi\"}\n\n"
     "event: response.audio.delta\n"
     "data: {\"type\":\"response.audio.delta\",\"delta\":\"UklGRg==\"}\n\n"
     "event: response.function_call_arguments.delta\n"
     "data: {\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{}\"}\n\n"
     "event: response.output_text.done\n"
     "data: {\"type\":\"response.output_text.done\",\"text\":\"Hi\"}\n\n"
     "event: response.completed\n"
     "data: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"type\":\"message\","
     "\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}]}}\n\n",
     {"Hi", "UklGRg==", "{}", "Hi", "Hi"}},
    {"CrLfLineEndings",
     "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"
     "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\r\n\r\n"
     "data: [DONE]\r\n\r\n",
     {"a", "b"}},
    {"CrLineEndings",
     "event: x\rdata: {\"choices\":\rdata: [{\"text\":\"a\"}]}\r\rdata: [DONE]\r\r",
     {"a"}},
    {"MixedLineEndings",
     "data: {\"choices\":\r\ndata: [{\"text\":\"a\"},\n"
     "data: {\"text\":\"b\"}]}\r\r\n"
     "data: {\"delta\":\"c\"}\n\r",
     {"a", "b", "c"}},
    {"MultiLineDataIsOneJsonText",
     "data: {\"choices\":\ndata: [{\"message\":\ndata:{\"content\":\"x\"}}]}\n\n",
     {"x"}},
    {"CommentsBetweenDataLinesKeepTheEventWhole",
     "data: {\"choices\":\n: keep-alive\nid: 7\ndata: [{\"text\":\"a\"}]}\n\n",
     {"a"}},
    {"CommentsAndOtherFieldsIgnored",
     ": {\"choices\":[{\"text\":\"no\"}]}\nretry: 1000\nid: 1\nevent: x\n"
     "foo: {\"delta\":\"no\"}\ndata:{\"delta\":\"yes\"}\n\n",
     {"yes"}},
    {"FieldNamesThatAreNotDataIgnored",
     "dat: {\"delta\":\"no\"}\n\ndatas: {\"delta\":\"no\"}\n\nData: {\"delta\":\"no\"}\n\n"
     " data: {\"delta\":\"no\"}\n\ndata : {\"delta\":\"no\"}\n\n",
     {}},
    {"DoneIsIgnored", "data: [DONE]\n\ndata:[DONE]  \n\n", {}},
    {"EventsAfterDoneAreStillRead", "data: [DONE]\n\ndata: {\"delta\":\"late\"}\n\n", {"late"}},
    {"DoneInTheSameEventAsJsonIsMalformed",
     "data: {\"delta\":\"a\"}\ndata: [DONE]\n\ndata: {\"delta\":\"b\"}\n\n",
     {"a", "b"},
     kMalformed},
    {"DoneSpelledOtherwiseIsMalformed", "data: [done]\n\ndata: [DONE\n\n", {}, kMalformed},
    {"MalformedEventThenGoodEvent",
     "data: {\"choices\":[{\"delta\":{\"content\":\"bad\\q\"}}]}\n\n"
     "data: {\"choices\":[{\"delta\":{\"content\":\"good\"}}]}\n\n",
     {"bad", "good"},
     kMalformed},
    {"TruncatedEventThenGoodEvent",
     "data: {\"choices\":[{\"delta\":{\"content\":\"cut\n\n"
     "data: {\"choices\":[{\"delta\":{\"content\":\"good\"}}]}\n\n",
     {"cut", "good"},
     kMalformed},
    {"LineBreakInsideAStringIsMalformed",
     "data: {\"delta\":\"ab\ndata: cd\"}\n\ndata: {\"delta\":\"ef\"}\n\n",
     {"ab", "ef"},
     kMalformed},
    {"GoodEventThenMalformedEvent",
     "data: {\"delta\":\"a\"}\n\ndata: {\"delta\":\"b\"} x\n\ndata: {\"x\":1,}\n\n",
     {"a", "b"},
     kMalformed},
    {"EventThatIsNotAnObjectIsMalformed",
     "data: \"text\"\n\ndata: {\"delta\":\"a\"}\n\n",
     {"a"},
     kMalformed},
    {"BlankDataIsNotMalformed", "data\n\ndata:\n\ndata:   \ndata:\t\n\n", {}},
    {"DataWithoutColonAddsAnEmptyLine", "data\ndata: {\"delta\":\"a\"}\ndata\n\n", {"a"}},
    {"OnlyOneSpaceIsDroppedTheRestIsWhitespace", "data:   {\"delta\":\"a\"}  \n\n", {"a"}},
    {"EventWithoutFinalBlankLine", "data: {\"delta\":\"a\"}\n", {"a"}},
    {"EventWithoutFinalLineEnd", "data: {\"delta\":\"a\"}\n\ndata: {\"delta\":\"b\"}", {"a", "b"}},
    {"UnfinishedEventAtTheEndIsMalformed",
     "data: {\"delta\":\"a\"}\n\ndata: {\"delta\":\"b",
     {"a", "b"},
     kMalformed},
    {"ByteOrderMarkDropped",
     "\xEF\xBB\xBF"
     "data: {\"delta\":\"a\"}\n\n",
     {"a"}},
    {"PartialByteOrderMarkSpoilsOnlyItsLine",
     "\xEF\xBB"
     "data: {\"delta\":\"no\"}\n\ndata: {\"delta\":\"a\"}\n\n",
     {"a"}},
    {"BlankLinesEverywhere", "\n\r\n\r\ndata: {\"delta\":\"a\"}\n\n\n\n\r\r", {"a"}},
    {"PlainJsonBodyLabelledAsEventStreamIsReadAsJson", "{\"choices\":[{\"text\":\"no\"}]}", {"no"}},
    {"DeepNestingInOneEventDoesNotSpoilTheNext",
     "data: {\"x\":" + std::string(70, '[') + "\n\ndata: {\"delta\":\"a\"}\n\n",
     {"a"},
     kMalformed},
    {"EveryEventsDeltaIsText",
     "data: {\"type\":\"response.audio.delta\",\"delta\":\"no\"}\n\ndata: {\"delta\":\"a\"}\n\n",
     {"no", "a"}},
    {"CharacterCutByALineEnd",
     "data: {\"delta\":\"a\xC3\ndata: \xA9\"}\n\n",
     {"a" + kReplacement},
     kMalformed},
    {"Empty", "", {}},
};

INSTANTIATE_TEST_SUITE_P(CompletionExtractor, EventStream, testing::ValuesIn(kEventStreamCases),
                         case_name);

// ---- The extractor's contract -------------------------------------------------------------

TEST(CompletionExtractor, BeginForgetsThePreviousBody) {
  CompletionExtractor extractor;
  Recorder sink;
  extractor.begin(true);
  extractor.feed(bytes_of("data: {\"delta\":\"a\"}\n\ndata: {\"delta\":\"b"), sink);
  extractor.finish(sink);
  EXPECT_TRUE(extractor.malformed());
  extractor.begin(false);
  EXPECT_FALSE(extractor.malformed());
  extractor.feed(bytes_of("{\"choices\":[{\"text\":\"c\"}]}"), sink);
  extractor.finish(sink);
  EXPECT_FALSE(extractor.malformed());
  // Abandoned mid-field (no finish): begin still starts clean.
  extractor.begin(false);
  extractor.feed(bytes_of("{\"type\":\"x\",\"choices\":[{\"text\":\"d\xF0\x9F"), sink);
  sink.on_completion_field_end();  // "d" was handed out; the body was abandoned in its field
  extractor.begin(true);
  extractor.feed(bytes_of("\xEF\xBB\xBF"
                          "data: {\"delta\":\"e\"}"),
                 sink);
  extractor.finish(sink);
  EXPECT_FALSE(extractor.malformed());
  EXPECT_EQ(sink.take_fields(), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
}

TEST(CompletionExtractor, DefaultConstructedReadsAPlainBody) {
  CompletionExtractor extractor;
  Recorder sink;
  extractor.feed(bytes_of("{\"content\":[{\"text\":\"a\"}]}"), sink);
  extractor.finish(sink);
  EXPECT_FALSE(extractor.malformed());
  EXPECT_EQ(sink.take_fields(), std::vector<std::string>{"a"});
}

TEST(CompletionExtractor, FinishIsIdempotentAndFeedAfterItIsIgnored) {
  CompletionExtractor extractor;
  Recorder sink;
  extractor.begin(false);
  extractor.feed(bytes_of("{\"choices\":[{\"text\":\"a\"}]}"), sink);
  extractor.finish(sink);
  extractor.finish(sink);
  extractor.feed(bytes_of("garbage \"text\":\"b\""), sink);
  extractor.finish(sink);
  EXPECT_FALSE(extractor.malformed());
  EXPECT_EQ(sink.take_fields(), std::vector<std::string>{"a"});
}

TEST(CompletionExtractor, MalformedIsKnownAsSoonAsTheBadByteIsFed) {
  CompletionExtractor extractor;
  Recorder sink;
  extractor.begin(false);
  extractor.feed(bytes_of("{\"choices\":[{\"text\":\"a\"}"), sink);
  EXPECT_FALSE(extractor.malformed());
  extractor.feed(bytes_of("}"), sink);
  EXPECT_TRUE(extractor.malformed());
}

TEST(CompletionExtractor, EmptyPiecesChangeNothing) {
  CompletionExtractor extractor;
  Recorder sink;
  extractor.begin(true);
  extractor.feed({}, sink);
  extractor.feed(bytes_of("data: {\"delta\":\"a\xE2\x82"), sink);
  extractor.feed({}, sink);
  extractor.feed(bytes_of("\xAC\"}\r"), sink);
  extractor.feed({}, sink);
  extractor.feed(bytes_of("\n\n"), sink);
  extractor.finish(sink);
  EXPECT_FALSE(extractor.malformed());
  EXPECT_EQ(sink.take_fields(), std::vector<std::string>{"a\xE2\x82\xAC"});
}

TEST(CompletionExtractor, CharactersAreNeverSplitAcrossPieces) {
  // Every character 4 bytes long, fed byte by byte: the Recorder checks each piece is whole.
  std::string text;
  for (int i = 0; i < 50; ++i) text += "\xF0\x9F\x98\x80\xE2\x82\xAC";
  const std::string body = "{\"choices\":[{\"text\":\"" + text + "\"}]}";
  std::vector<std::string_view> single;
  for (std::size_t i = 0; i < body.size(); ++i)
    single.push_back(std::string_view(body).substr(i, 1));
  EXPECT_EQ(extract(false, single), (Extracted{{text}, false}));
}

TEST(CompletionExtractor, LongTextIsHandedOverInFewPiecesWithoutCopies) {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "lorem {\\\"text\\\"} \\u00e9 ipsum dolor sit amet ";
  const std::string body = "{\"choices\":[{\"message\":{\"content\":\"" + text + "\"}}]}";
  CompletionExtractor extractor;
  Recorder sink;
  extractor.begin(false);
  std::size_t pieces = 0;
  for (std::size_t at = 0; at < body.size(); at += 1460, ++pieces) {
    extractor.feed(bytes_of(std::string_view(body).substr(at, 1460)), sink);
  }
  extractor.finish(sink);
  EXPECT_FALSE(extractor.malformed());
  const std::vector<std::string> fields = sink.take_fields();
  ASSERT_EQ(fields.size(), 1u);
  EXPECT_EQ(fields[0].size(),
            20000u * std::string_view("lorem {\"text\"} é ipsum dolor sit amet ").size());
  // Escapes batch with the short runs around them: a few hand-overs per fed piece, not one per
  // escape.
  EXPECT_LE(sink.pieces(), 8 * pieces);
}

TEST(CompletionExtractor, FeedNeverAllocates) {
  std::string stream;
  for (int i = 0; i < 200; ++i) {
    stream += ": ping\r\nevent: delta\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"tok\\n";
    stream += "\\ud83d\\ude00 \xC3\xA9\xFF\"}}],\"usage\":null}\r\n\r\n";
  }
  const std::string body =
      "{\"choices\":[{\"message\":{\"content\":\"x\",\"tool_calls\":[{"
      "\"function\":{\"arguments\":\"{}\"}}]}}],\"x\":[[{\"y\":null}]]}";
  // A sink that does not allocate either (the Recorder's strings would).
  class CountingSink : public CompletionSink {
   public:
    void on_completion_text(std::string_view utf8) override { bytes += utf8.size(); }
    void on_completion_field_end() override { ++fields; }
    std::size_t bytes = 0;
    std::size_t fields = 0;
  } sink;
  CompletionExtractor extractor;
  allocations = 0;
  counting_allocations = true;
  extractor.begin(true);
  for (std::size_t at = 0; at < stream.size(); at += 7) {
    extractor.feed(bytes_of(std::string_view(stream).substr(at, 7)), sink);
  }
  extractor.finish(sink);
  const bool stream_malformed = extractor.malformed();
  extractor.begin(false);
  extractor.feed(bytes_of(body), sink);
  extractor.finish(sink);
  counting_allocations = false;
  EXPECT_EQ(allocations, 0u);
  EXPECT_FALSE(stream_malformed);
  EXPECT_FALSE(extractor.malformed());
  EXPECT_EQ(sink.fields, 202u);
  // "tok\n" 😀 é U+FFFD per event, then "x" and "{}".
  EXPECT_EQ(sink.bytes, 200u * (4 + 4 + 1 + 2 + 3) + 1 + 2);
}

// ---- Texts of a stream: each choice, block and item is its own ------------------------------

// Records each field with the text it was selected into ("1:abc"), and every selection.
class TextRecorder : public Recorder {
 public:
  void on_completion_select(uint8_t text, bool fresh) override {
    EXPECT_LT(text, CompletionExtractor::kMaxTexts);
    text_ = text;
    selections.push_back(std::to_string(text) + (fresh ? "!" : ""));
  }
  void on_completion_field_end() override {
    Recorder::on_completion_field_end();
    tagged.push_back(std::to_string(text_));
  }
  std::vector<std::string> selections, tagged;

 private:
  uint8_t text_ = 0;
};

struct Texts {
  std::vector<std::string> fields;  // "text:field"
  std::vector<std::string> selections;
  bool malformed = false;
  bool operator==(const Texts&) const = default;
};

Texts texts_of(const std::vector<std::string_view>& pieces, bool event_stream = true,
               bool ndjson = false) {
  CompletionExtractor extractor;
  TextRecorder sink;
  extractor.begin(event_stream, ndjson);
  for (std::string_view piece : pieces) extractor.feed(bytes_of(piece), sink);
  extractor.finish(sink);
  Texts texts{{}, sink.selections, extractor.malformed()};
  const std::vector<std::string> fields = sink.take_fields();
  for (std::size_t i = 0; i < fields.size(); ++i)
    texts.fields.push_back(sink.tagged[i] + ":" + fields[i]);
  return texts;
}

Texts texts_every_way(std::string_view input, bool event_stream = true, bool ndjson = false) {
  const Texts whole = texts_of({input}, event_stream, ndjson);
  for (std::size_t cut = 1; cut < input.size(); ++cut)
    EXPECT_EQ(texts_of({input.substr(0, cut), input.substr(cut)}, event_stream, ndjson), whole)
        << "cut " << cut;
  return whole;
}

std::string choice_event(std::string_view choices) {
  return "data: {\"choices\":[" + std::string(choices) + "]}\n\n";
}

TEST(CompletionExtractorTexts, InterleavedChoicesAreTextsOfTheirOwn) {
  const Texts texts = texts_every_way(
      choice_event(R"({"index":0,"delta":{"content":"a"}})") +
      choice_event(R"({"index":1,"delta":{"content":"b"}})") +
      choice_event(R"({"index":1,"delta":{"content":"c"}},{"index":0,"delta":{"content":"d"}})"));
  EXPECT_EQ(texts, (Texts{{"0:a", "1:b", "1:c", "0:d"}, {"1", "0"}, false}));
}

// What a client accumulates on its own (the openai SDK: per choice, per delta field, per
// tool_calls[].index): each is a text of its own, however the deltas interleave.
TEST(CompletionExtractorTexts, InterleavedFieldsOfOneChoiceAreTextsOfTheirOwn) {
  const Texts texts = texts_every_way(
      choice_event(R"({"index":0,"delta":{"content":"a"}})") +
      choice_event(R"({"index":0,"delta":{"reasoning_content":"b"}})") +
      choice_event(R"({"index":0,"delta":{"content":"c","reasoning":"d"}})") +
      choice_event(R"({"index":0,"delta":{"refusal":"e","audio":{"transcript":"f"}}})") +
      choice_event(R"({"index":0,"message":{"content":"g"}})"));
  EXPECT_EQ(texts, (Texts{{"0:a", "1:b", "0:c", "2:d", "3:e", "4:f", "0:g"},
                          {"1", "0", "2", "3", "4", "0"},
                          false}));
}

// The anthropic SDK adds a text_delta to the block's text and a thinking_delta to its thinking:
// apart, however they interleave; content_block.text and delta.text are one text.
TEST(CompletionExtractorTexts, TheFieldsOfAnAnthropicBlockAreTextsOfTheirOwn) {
  const Texts texts = texts_every_way(
      "data: {\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"a\"}}\n\n"
      "data: {\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"b\"}}\n\n"
      "data: {\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"c\"}}\n\n"
      "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"d\"}\n\n");
  EXPECT_EQ(texts, (Texts{{"0:a", "1:b", "0:c", "2:d"}, {"1", "0", "2"}, false}));
  EXPECT_TRUE(
      texts_every_way("data: {\"index\":0,\"delta\":{\"t\\u0065xt\":\"x\"}}\n\n").malformed);
}

TEST(CompletionExtractorTexts, ToolCallsAreTextsByTheirIndex) {
  const auto call = [](int index, std::string_view function) {
    return choice_event(R"({"index":0,"delta":{"tool_calls":[{"index":)" + std::to_string(index) +
                        R"(,"function":)" + std::string(function) + "}]}}");
  };
  const Texts texts = texts_every_way(
      call(0, R"({"name":"f","arguments":""})") + call(1, R"({"name":"g","arguments":"a"})") +
      call(0, R"({"arguments":"b"})") + call(1, R"({"arguments":"c"})") +
      // Without an index: the element's position (0).
      choice_event(R"({"delta":{"tool_calls":[{"function":)"
                   R"({"arguments":"d"}}]}})"));
  EXPECT_EQ(texts, (Texts{{"0:f", "1:", "2:g", "3:a", "1:b", "3:c", "1:d"},
                          {"1", "2", "3", "1", "3", "1"},
                          false}));
}

TEST(CompletionExtractorTexts,
     SequentialToolCallsBeyondTheSlotsAreReadButAFieldGivenUpAndBackIsNot) {
  // Tool calls one after another, more than the slots: each given up when done, none back.
  std::string stream = choice_event(R"({"delta":{"content":"a"}})");
  for (int i = 0; i < 12; ++i)
    stream += choice_event(R"({"delta":{"tool_calls":[{"index":)" + std::to_string(i) +
                           R"(,"function":{"arguments":"x"}}]}})");
  stream += choice_event(R"({"delta":{"content":"b"}})");
  const Texts texts = texts_every_way(stream);
  EXPECT_TRUE(texts.malformed);  // content was the least recently fed: given up, then back
  std::string kept = choice_event(R"({"delta":{"content":"a"}})");
  for (int i = 0; i < 12; ++i)
    kept += choice_event(R"({"delta":{"content":"a","tool_calls":[{"index":)" + std::to_string(i) +
                         R"(,"function":{"arguments":"x"}}]}})");
  EXPECT_FALSE(texts_every_way(kept).malformed);  // content fed all along keeps its slot
}

TEST(CompletionExtractorTexts, AChoiceWithoutIndexIsItsPosition) {
  EXPECT_EQ(texts_every_way(choice_event(R"({"delta":{"content":"a"}},{"delta":{"content":"b"}})")),
            (Texts{{"0:a", "1:b"}, {"1"}, false}));
}

TEST(CompletionExtractorTexts, BlocksAndItemsAreNamedByTheirRootIndex) {
  const Texts texts = texts_every_way(
      "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"text\":\"a\"}}\n\n"
      "data: {\"type\":\"response.output_text.delta\",\"output_index\":1,\"delta\":\"b\"}\n\n"
      "data: {\"type\":\"error\",\"error\":{\"message\":\"c\"}}\n\n");
  EXPECT_EQ(texts, (Texts{{"0:a", "1:b", "2:c"}, {"1", "2"}, false}));
}

TEST(CompletionExtractorTexts, SequentialBlocksBeyondTheSlotsTakeTheOldestSlot) {
  std::string stream;
  for (int i = 0; i < 10; ++i)
    stream += "data: {\"index\":" + std::to_string(i) + ",\"delta\":{\"text\":\"t\"}}\n\n";
  const Texts texts = texts_every_way(stream);
  EXPECT_EQ(texts.fields, (std::vector<std::string>{"0:t", "1:t", "2:t", "3:t", "4:t", "5:t", "6:t",
                                                    "7:t", "0:t", "1:t"}));
  EXPECT_EQ(texts.selections,
            (std::vector<std::string>{"1", "2", "3", "4", "5", "6", "7", "0!", "1!"}));
  EXPECT_FALSE(texts.malformed);
}

TEST(CompletionExtractorTexts, WhatCannotBeToldApartIsMalformed) {
  std::string nine;  // a text whose slot was given up comes back
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 9; ++i)
      nine += choice_event("{\"index\":" + std::to_string(i) + ",\"delta\":{\"content\":\"w\"}}");
  std::string nine_fields;  // the same with nine fields of one choice
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 9; ++i)
      nine_fields += choice_event("{\"delta\":{\"f" + std::to_string(i) + "\":\"w\"}}");
  for (const std::string& stream :
       {nine, nine_fields,
        // A tool call's index after text that went to its position, and differing.
        choice_event(R"({"delta":{"tool_calls":[{"function":{"arguments":"x"},"index":1}]}})"),
        // An escaped key names the field (a client decodes it: "content").
        choice_event(R"({"delta":{"con\u0074ent":"x"}})"),
        choice_event(R"({"delta":{"content":"x"}},{"delta":{"content":"y"},"index":0})"),
        choice_event(R"({"index":64,"delta":{"content":"x"}})"),
        choice_event(R"({"index":-1,"delta":{"content":"x"}})"),
        choice_event(R"({"index":1.5,"delta":{"content":"x"}})"),
        std::string("data: {\"delta\":\"x\",\"index\":3}\n\n")}) {
    EXPECT_TRUE(texts_every_way(stream).malformed) << stream;
  }
  // An index that agrees with the position the text went to, or one before any text, is fine.
  EXPECT_FALSE(texts_every_way(choice_event(R"({"delta":{"content":"x"},"index":0})")).malformed);
}

TEST(CompletionExtractorTexts, APlainBodyIsOneTextAndItsIndexesAreNotRead) {
  const Texts texts = texts_every_way(
      R"({"choices":[{"index":1.5,"message":{"content":"a"}},{"index":99,"text":"b"}]})", false);
  EXPECT_EQ(texts, (Texts{{"0:a", "0:b"}, {}, false}));
}

TEST(CompletionExtractorTexts, OllamaNdjsonLinesAreDeltasOfOneText) {
  CompletionExtractor extractor;
  extractor.begin(false, true);
  EXPECT_TRUE(extractor.streamed());
  const Texts texts = texts_every_way(
      "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"He\"},\"done\":false}\n"
      "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"llo\"},\"done\":true,"
      "\"done_reason\":\"stop\",\"total_duration\":5}\n",
      false, true);
  EXPECT_EQ(texts, (Texts{{"0:He", "0:llo"}, {}, false}));
  EXPECT_TRUE(texts_every_way("{\"a\":\"x\"}\nnot json\n", false, true).malformed);
}

// A Responses item is one text (a client takes a part's text from its deltas and
// content_part.added alike): a part that comes back after a later one of the item began would
// join what the client keeps apart.
TEST(CompletionExtractorTexts, AResponsesContentPartComingBackIsMalformed) {
  const auto delta = [](int item, int part, std::string_view text) {
    return "data: {\"type\":\"response.output_text.delta\",\"output_index\":" +
           std::to_string(item) + ",\"content_index\":" + std::to_string(part) + ",\"delta\":\"" +
           std::string(text) + "\"}\n\n";
  };
  EXPECT_FALSE(
      texts_every_way(delta(0, 0, "a") + delta(0, 0, "b") + delta(0, 1, "c") + delta(1, 0, "d"))
          .malformed)
      << "parts in order, a new item from its part 0";
  const Texts back = texts_every_way(delta(0, 0, "a") + delta(0, 1, "b") + delta(0, 0, "c"));
  EXPECT_TRUE(back.malformed);
  EXPECT_EQ(back.fields, (std::vector<std::string>{"0:a", "0:b"})) << "cut before the text";
}

// Ollama's clients accumulate message.content and message.thinking apart (and /api/generate's
// response and thinking): a thinking piece between two content pieces cannot split them.
TEST(CompletionExtractorTexts, OllamaMessageFieldsAreTextsOfTheirOwn) {
  const Texts texts = texts_every_way(
      "{\"message\":{\"role\":\"assistant\",\"content\":\"a\"}}\n"
      "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"b\"}}\n"
      "{\"message\":{\"role\":\"assistant\",\"content\":\"c\"}}\n"
      "{\"response\":\"d\",\"thinking\":\"e\"}\n{\"response\":\"f\"}\n",
      false, true);
  EXPECT_EQ(
      texts,
      (Texts{{"0:a", "0:", "1:b", "0:c", "2:d", "3:e", "2:f"}, {"1", "0", "2", "3", "2"}, false}));
}

// ---- Differential test against nlohmann::json ---------------------------------------------

using Json = nlohmann::ordered_json;  // members keep the order they are written in

// Random response documents: the fields' paths, built the way hosts build them, with values of
// the wrong type, distractor members named like fields at other depths, and members in random
// order.
class RandomDocuments {
 public:
  explicit RandomDocuments(uint32_t seed) : rng_(seed) {}

  Json document() {
    switch (pick(6)) {
      case 0:
        return chat(pick(2) == 0);
      case 1:
        return completions();
      case 2:
        return responses_body();
      case 3:
        return responses_event();
      case 4:
        return anthropic(pick(2) == 0);
      default:
        return object_of({{"choices", maybe(array_of([&] { return choice(pick(2) == 0); }))},
                          {"output", maybe(array_of([&] { return output_item(); }))},
                          {"content", maybe(array_of([&] { return part(); }))},
                          {"type", type_value()},
                          {"delta", pick(2) == 0 ? Json(text()) : anthropic_delta()}});
    }
  }

  // Serialised the way hosts do (compact) or as people do (indented), ASCII-only or not.
  std::string serialise(const Json& document) {
    const bool ascii = pick(2) == 0;
    switch (pick(3)) {
      case 0:
        return document.dump(-1, ' ', ascii);
      case 1:
        return document.dump(2, ' ', ascii);
      default:
        return document.dump(1, '\t', ascii);
    }
  }

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  std::mt19937& rng() { return rng_; }

 private:
  // Not "type": a top-level type written with an escape reads differently (see the header),
  // and the parsed document cannot tell; type_value() writes types plainly.
  static constexpr const char* kKeys[] = {
      "choices",  "message",   "delta",    "content", "text",  "refusal", "tool_calls",
      "function", "arguments", "output",   "types",   "id",    "index",   "role",
      "data",     "Content",   "contents", "text_",   "usage", "name",    "logprobs"};
  static constexpr const char* kTextPieces[] = {"Hello",
                                                " ",
                                                "\"",
                                                "\\",
                                                "{",
                                                "}",
                                                "[",
                                                "]",
                                                ":",
                                                ",",
                                                "content",
                                                "\"text\":",
                                                "\xC3\xA9",
                                                "\xE2\x82\xAC",
                                                "\xE2\x80\xA8",
                                                "\xF0\x9F\x98\x80",
                                                "\n",
                                                "\t",
                                                "\x01",
                                                "\x1f",
                                                "\x7f",
                                                "/",
                                                "data: ",
                                                "[DONE]",
                                                "\r\n",
                                                "\xEF\xBF\xBD"};
  static constexpr const char* kTypes[] = {"response.output_text.delta",
                                           "response.refusal.delta",
                                           "response.function_call_arguments.delta",
                                           "response.audio.delta",
                                           "response.output_text.done",
                                           "response.function_call_arguments.delta.x",
                                           "content_block_delta",
                                           "message_start",
                                           "text_delta",
                                           ""};

  template <std::size_t N>
  const char* pick_of(const char* const (&options)[N]) {
    return options[pick(N)];
  }

  std::string text() {
    std::string s;
    const int pieces = pick(6);
    for (int i = 0; i < pieces; ++i) s += pick_of(kTextPieces);
    return s;
  }

  Json scalar() {
    switch (pick(5)) {
      case 0:
        return nullptr;
      case 1:
        return pick(2) == 0;
      case 2:
        return pick(1000) - 500;
      case 3:
        return pick(1000) + 0.25;
      default:
        return text();
    }
  }

  // Anything, with keys that name fields: where the path is wrong they must not count.
  Json value(int depth) {
    if (depth >= 5 || pick(3) == 0) return scalar();
    Json container = pick(2) == 0 ? Json::array() : Json::object();
    const int n = pick(4);
    for (int i = 0; i < n; ++i) {
      if (container.is_array()) {
        container.push_back(value(depth + 1));
      } else {
        container[pick_of(kKeys)] = value(depth + 1);
      }
    }
    return container;
  }

  // `value` most of the time, else something of another type.
  Json maybe(Json wanted) { return pick(8) == 0 ? value(3) : wanted; }

  // A type written plainly, or a value that is not a string.
  Json type_value() {
    switch (pick(10)) {
      case 0:
        return nullptr;
      case 1:
        return Json::array({"response.output_text.delta"});
      case 2:
        return 7;
      default:
        return pick_of(kTypes);
    }
  }

  // An object of the members given (absent ones left out at random) plus distractors, in random
  // order.
  Json object_of(std::vector<std::pair<std::string, Json>> members) {
    const int distractors = pick(3);
    for (int i = 0; i < distractors; ++i) members.emplace_back(pick_of(kKeys), value(2));
    std::shuffle(members.begin(), members.end(), rng_);
    Json object = Json::object();
    for (auto& [key, member] : members) {
      if (pick(4) == 0 || object.contains(key)) continue;
      object[key] = std::move(member);
    }
    return object;
  }

  template <typename Make>
  Json array_of(Make make) {
    Json array = Json::array();
    const int n = pick(4);
    for (int i = 0; i < n; ++i) array.push_back(pick(8) == 0 ? value(3) : make());
    return array;
  }

  Json part() {
    return object_of({{"type", pick(2) == 0 ? "text" : "output_text"}, {"text", maybe(text())}});
  }

  Json tool_call() {
    return object_of(
        {{"id", "call_1"},
         {"type", "function"},
         {"function", maybe(object_of({{"name", "f"}, {"arguments", maybe(text())}}))}});
  }

  Json message() {
    Json content = pick(3) == 0 ? array_of([&] { return part(); }) : Json(text());
    return object_of({{"role", "assistant"},
                      {"content", maybe(content)},
                      {"refusal", maybe(text())},
                      {"tool_calls", maybe(array_of([&] { return tool_call(); }))}});
  }

  Json choice(bool streamed) {
    return object_of({{"index", 0},
                      {streamed ? "delta" : "message", maybe(message())},
                      {"text", maybe(text())},
                      {"finish_reason", nullptr},
                      {"logprobs", value(2)}});
  }

  Json chat(bool streamed) {
    return object_of({{"id", "chatcmpl-1"},
                      {"object", streamed ? "chat.completion.chunk" : "chat.completion"},
                      {"choices", maybe(array_of([&] { return choice(streamed); }))},
                      {"usage", value(2)}});
  }

  Json completions() {
    return object_of({{"object", "text_completion"},
                      {"choices", maybe(array_of([&] {
                         return object_of({{"text", maybe(text())}, {"index", 0}});
                       }))}});
  }

  Json output_item() {
    return object_of({{"type", pick(2) == 0 ? "message" : "function_call"},
                      {"content", maybe(array_of([&] { return part(); }))},
                      {"arguments", maybe(text())}});
  }

  Json responses_body() {
    return object_of({{"object", "response"},
                      {"output", maybe(array_of([&] { return output_item(); }))},
                      {"text", value(2)}});
  }

  Json responses_event() {
    return object_of(
        {{"type", type_value()},
         {"delta", maybe(text())},
         {"sequence_number", 1},
         {"response", object_of({{"output", array_of([&] { return output_item(); })}})}});
  }

  Json anthropic_delta() {
    return object_of({{"type", pick(2) == 0 ? "text_delta" : "input_json_delta"},
                      {"text", maybe(text())},
                      {"partial_json", text()}});
  }

  Json anthropic(bool streamed) {
    if (streamed) {
      return object_of(
          {{"type", "content_block_delta"}, {"index", 0}, {"delta", maybe(anthropic_delta())}});
    }
    return object_of({{"type", "message"},
                      {"role", "assistant"},
                      {"content", maybe(array_of([&] { return part(); }))}});
  }

  std::mt19937 rng_;
};

// The rules, read off the parsed document, members in the order they were written: every
// string is text but the values of the excluded keys and everything under the excluded trees.
class ExpectedFields {
 public:
  friend void add_texts(const Json& document, std::set<std::string>& texts);
  static std::vector<std::string> of(const Json& document) {
    ExpectedFields expected;
    expected.walk(document, "", false);
    return std::move(expected.fields_);
  }

 private:
  static bool one_of(std::string_view key, std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), key) != names.end();
  }
  static bool excluded(std::string_view key) {  // (public: add_texts)
    return one_of(key, {"id",
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
                        "sequence_number"});
  }
  void walk(const Json& value, const std::string& key, bool element) {
    if (value.is_string()) {
      if (element || !excluded(key)) fields_.push_back(value.get<std::string>());
    } else if (value.is_object()) {
      for (const auto& [name, member] : value.items()) {
        if (!one_of(name, {"usage", "logprobs", "top_logprobs"})) walk(member, name, false);
      }
    } else if (value.is_array()) {
      for (const Json& member : value) walk(member, key, true);
    }
  }

  std::vector<std::string> fields_;
};

// A stream's documents without the indexes that say which text a choice is (the test keeps to
// one text per position; RuleScopes and the table cases test the indexes).
void drop_indexes(Json& value) {
  if (value.is_object()) {
    value.erase("index");
    value.erase("output_index");
  }
  if (value.is_object() || value.is_array()) {
    for (Json& member : value) drop_indexes(member);
  }
}

// The texts of a stream's document, as a client accumulates them (the header): "root" for the
// strings outside choices, else the choice's position and the field path below it — the first
// object key under the choice dropped, array elements by position (indexes are dropped).
void add_texts(const Json& document, std::set<std::string>& texts) {
  std::function<void(const Json&, const std::string&, const std::string&, bool, int)> walk =
      [&](const Json& value, const std::string& path, const std::string& key, bool element,
          int level) {
        if (value.is_string()) {
          if (element || !ExpectedFields::excluded(key)) texts.insert(path);
        } else if (value.is_object()) {
          for (const auto& [name, member] : value.items()) {
            if (name == "usage" || name == "logprobs" || name == "top_logprobs") continue;
            const bool wrapper = level == 0 && member.is_object();  // delta, message
            walk(member, wrapper ? path : path + "." + name, name, false, level + 1);
          }
        } else if (value.is_array()) {
          int position = 0;
          for (const Json& member : value)
            walk(member, path + "[" + std::to_string(position++) + "]", key, true, level + 1);
        }
      };
  if (!document.is_object()) return;
  for (const auto& [name, member] : document.items()) {
    if (name == "choices" && member.is_array()) {
      int position = 0;
      for (const Json& choice : member) {
        const std::string base = "choice" + std::to_string(position++);
        if (choice.is_object()) {
          walk(choice, base, "", false, 0);
        } else {
          texts.insert("root");  // not a choice: the root's text
        }
      }
    } else if (name != "usage" && name != "logprobs" && name != "top_logprobs") {
      std::function<bool(const Json&, const std::string&, bool)> has_text =
          [&](const Json& value, const std::string& key, bool element) -> bool {
        if (value.is_string()) return element || !ExpectedFields::excluded(key);
        if (value.is_object()) {
          for (const auto& [n, m] : value.items())
            if (n != "usage" && n != "logprobs" && n != "top_logprobs" && has_text(m, n, false))
              return true;
        } else if (value.is_array()) {
          for (const Json& m : value)
            if (has_text(m, key, true)) return true;
        }
        return false;
      };
      if ((name == "delta" || name == "content_block") && member.is_object()) {
        for (const auto& [field, value] : member.items())  // a block's fields apart
          if (field != "usage" && field != "logprobs" && field != "top_logprobs" &&
              has_text(value, field, false))
            texts.insert("root|" + field);
      } else if (has_text(member, name, false)) {
        texts.insert("root");
      }
    }
  }
}

// Feeds `text` in pieces cut at random points.
Extracted extract_in_random_pieces(bool event_stream, std::string_view text, std::mt19937& rng) {
  std::vector<std::size_t> cuts;
  const int cut_count = std::uniform_int_distribution<int>(0, 8)(rng);
  for (int i = 0; i < cut_count; ++i) {
    cuts.push_back(std::uniform_int_distribution<std::size_t>(0, text.size())(rng));
  }
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::string_view> pieces;
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    pieces.push_back(text.substr(from, cut - from));
    from = cut;
  }
  pieces.push_back(text.substr(from));
  return extract(event_stream, pieces);
}

TEST(CompletionExtractorDifferential, AgreesWithNlohmannOnRandomBodies) {
  RandomDocuments random(20240611);
  std::size_t fields = 0;
  int with_fields = 0;
  for (int i = 0; i < 600; ++i) {
    const Json document = random.document();
    const std::string text = random.serialise(document);
    ASSERT_EQ(Json::parse(text), document);
    const std::vector<std::string> expected = ExpectedFields::of(document);
    fields += expected.size();
    with_fields += !expected.empty();
    EXPECT_EQ(extract_in_random_pieces(false, text, random.rng()), (Extracted{expected, false}))
        << text;
    if (i % 25 == 0) {
      EXPECT_EQ(extract_every_way(false, text), (Extracted{expected, false})) << text;
    }
  }
  // The generator does reach the fields, and often enough leaves them out.
  EXPECT_GT(fields, 700u);
  EXPECT_GT(with_fields, 250);
  EXPECT_LT(with_fields, 550);
}

TEST(CompletionExtractorDifferential, AgreesWithNlohmannOnRandomEventStreams) {
  RandomDocuments random(77);
  constexpr const char* kLineEnds[] = {"\n", "\r\n", "\r"};
  int compared = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string line_end = kLineEnds[random.pick(3)];
    std::string stream;
    Extracted expected;
    std::set<std::string> texts;  // more than the slots could come back: not compared
    const int events = 1 + random.pick(6);
    for (int e = 0; e < events; ++e) {
      if (random.pick(3) == 0) stream += ": keep-alive" + line_end;
      if (random.pick(2) == 0) stream += "event: chunk" + line_end;
      std::string data;
      Json document = random.document();
      drop_indexes(document);
      add_texts(document, texts);
      const std::vector<std::string> fields = ExpectedFields::of(document);
      switch (random.pick(8)) {
        case 0:
          data = "[DONE]";
          break;
        case 1:  // something after a whole document: its fields, then malformed
          data = random.serialise(document) + (random.pick(2) == 0 ? "}" : " x");
          expected.fields.insert(expected.fields.end(), fields.begin(), fields.end());
          expected.malformed = true;
          break;
        case 2:  // malformed before any field
          data = random.pick(2) == 0 ? "{\"choices\":tru}" : "{\"delta\":\"a\",}";
          if (data[2] == 'd') expected.fields.push_back("a");
          expected.malformed = true;
          break;
        default:
          data = random.serialise(document);
          expected.fields.insert(expected.fields.end(), fields.begin(), fields.end());
      }
      // One data line per line of the text (indented dumps span several).
      std::size_t from = 0;
      while (true) {
        const std::size_t newline = data.find('\n', from);
        stream += (random.pick(2) == 0 ? "data: " : "data:") + data.substr(from, newline - from);
        stream += line_end;
        if (newline == std::string::npos) break;
        from = newline + 1;
      }
      const bool last = e + 1 == events;
      if (!last || random.pick(2) == 0) stream += line_end;  // the last may stay open
    }
    // Streams with more texts than the slots may give one up and see it again (malformed, as
    // CompletionExtractorTexts shows); the rest must read exactly as the reference does.
    if (texts.size() > CompletionExtractor::kMaxTexts) continue;
    ++compared;
    EXPECT_EQ(extract_in_random_pieces(true, stream, random.rng()), expected) << stream;
    if (i % 30 == 0) {
      EXPECT_EQ(extract_every_way(true, stream), expected) << stream;
    }
  }
  std::printf("event streams compared: %d of 300\n", compared);
  EXPECT_GE(compared, 150);
}

}  // namespace
}  // namespace sluice

// ---- write_event_end: ending a stream cut anywhere so that the client's last event parses ----

namespace sluice {
namespace {

// The events a WHATWG event-stream parser dispatches from `text` (data joined by "\n"), and
// whether data was left pending (an event never dispatched) or a line left unterminated.
struct ParsedStream {
  std::vector<std::string> events;
  bool pending = false;
};

ParsedStream parse_event_stream(std::string_view text) {
  ParsedStream parsed;
  std::string data, line;
  bool has_data = false;
  const auto end_line = [&] {
    if (line.empty()) {
      if (has_data) parsed.events.push_back(data);
      data.clear();
      has_data = false;
      return;
    }
    const std::size_t colon = line.find(':');
    const std::string name = line.substr(0, colon);
    std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    if (name == "data") {
      if (has_data) data += '\n';
      data += value;
      has_data = true;
    }
    line.clear();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r' || c == '\n') {
      end_line();
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      line += c;
    }
  }
  parsed.pending = has_data || !line.empty();
  return parsed;
}

// What a client's UTF-8 decoder (TextDecoder, errors="replace") makes of `bytes`: each byte
// that does not start a complete, well-formed sequence becomes U+FFFD (coarser than WHATWG's
// maximal subparts, which does not matter for whether the JSON parses).
std::string decoded_as_a_client_would(std::string_view bytes) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size();) {
    const auto lead = static_cast<unsigned char>(bytes[i]);
    const std::size_t length = lead < 0x80                   ? 1
                               : lead >= 0xC2 && lead < 0xE0 ? 2
                               : lead >= 0xE0 && lead < 0xF0 ? 3
                               : lead >= 0xF0 && lead < 0xF5 ? 4
                                                             : 0;
    bool whole = length > 0 && i + length <= bytes.size();
    for (std::size_t k = 1; whole && k < length; ++k)
      whole = (static_cast<unsigned char>(bytes[i + k]) & 0xC0) == 0x80;
    if (whole) {
      out.append(bytes.substr(i, length));
      i += length;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string chat_event(std::mt19937& rng) {
  static const char* const kContents[] = {"Hello",
                                          "a \\\"quoted\\\" word",
                                          "back\\\\slash",
                                          "line\\nbreak",
                                          "caf\\u00e9 \\u4e2d",
                                          "raw caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80",
                                          "",
                                          "tab\\there",
                                          "1234"};
  std::uniform_int_distribution<int> pick(0, 8);
  std::string event = R"({"id":"c-1","object":"chat.completion.chunk","created":1795909195,)"
                      R"("model":"m","system_fingerprint":null,"choices":[{"index":0,)"
                      R"("delta":{"content":")" +
                      std::string(kContents[pick(rng)]) +
                      R"("},"logprobs":null,"finish_reason":null}],"usage":)";
  event += pick(rng) % 2 == 0 ? "null}"
                              : R"({"prompt_tokens":12,"completion_tokens":-3.5e+2,"ok":true}})";
  return event;
}

TEST(CompletionExtractorEventEnd, EndsAStreamCutAtEveryByteWithEventsThatParse) {
  std::mt19937 rng(2026);
  constexpr const char* kLineEnds[] = {"\n", "\r\n", "\r"};
  for (int round = 0; round < 24; ++round) {
    const std::string line_end = kLineEnds[round % 3];
    std::string stream;
    for (int e = 0; e < 3; ++e) {
      if (e == 1) stream += ": keep-alive" + line_end + "event: chunk" + line_end;
      std::string data = chat_event(rng);
      if (round % 4 == 3) {  // the document over two data lines (a break between tokens)
        const std::size_t comma = data.find(',');
        stream += "data: " + data.substr(0, comma + 1) + line_end;
        data = data.substr(comma + 1);
      }
      stream += (e % 2 == 0 ? "data: " : "data:") + data + line_end + line_end;
    }
    stream += "data: [DONE]" + line_end + line_end;
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
      const std::string_view prefix = std::string_view(stream).substr(0, cut);
      CompletionExtractor extractor;
      extractor.begin(true);
      Recorder sink;
      extractor.feed({reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size()}, sink);
      char out[256];
      const long length = extractor.write_event_end(out);
      ASSERT_GE(length, 0) << "cut at " << cut << ": "
                           << testing::PrintToString(std::string(prefix));
      const std::string text =
          std::string(prefix) + std::string(out, static_cast<std::size_t>(length));
      const ParsedStream parsed = parse_event_stream(text);
      EXPECT_FALSE(parsed.pending) << "cut at " << cut << ": " << testing::PrintToString(text);
      for (const std::string& data : parsed.events) {
        EXPECT_TRUE(data == "[DONE]" || nlohmann::json::accept(decoded_as_a_client_would(data)))
            << "cut at " << cut << ": data " << testing::PrintToString(data);
      }
    }
  }
}

TEST(CompletionExtractorEventEnd, CompletesEscapesLiteralsAndMissingValues) {
  const auto end_of = [](std::string_view prefix) {
    CompletionExtractor extractor;
    extractor.begin(true);
    Recorder sink;
    extractor.feed({reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size()}, sink);
    char out[128];
    const long length = extractor.write_event_end(out);
    return length < 0 ? std::string("<none>") : std::string(out, static_cast<std::size_t>(length));
  };
  EXPECT_EQ(end_of(""), "");
  EXPECT_EQ(end_of("data: {}\n\n"), "");
  EXPECT_EQ(end_of(": comment"), "\n");
  EXPECT_EQ(end_of("data: "), "{}\n\n");
  EXPECT_EQ(end_of(R"(data: {"a":[tr)"), "ue]}\n\n");
  EXPECT_EQ(end_of(R"(data: {"a":"x\)"), "n\"}\n\n");
  EXPECT_EQ(end_of(R"(data: {"a":"\u4e)"), "00\"}\n\n");
  EXPECT_EQ(end_of(R"(data: {"a":"\ud83d)"), "\"}\n\n")
      << "a lone high surrogate: JSON.parse takes it";
  EXPECT_EQ(end_of(R"(data: {"ke)"), "\":null}\n\n");
  EXPECT_EQ(end_of(R"(data: {"a":1,)"), "\"\":null}\n\n");
  EXPECT_EQ(end_of(R"(data: {"a":-)"), "0}\n\n");
  EXPECT_EQ(end_of(R"(data: {"a":)"), "null}\n\n");
  EXPECT_EQ(end_of("data: [DO"), "NE]\n\n");
  EXPECT_EQ(end_of("data: {\"a\":\ndata: [1,\nev"), "\ndata: null]}\n\n");
  EXPECT_EQ(end_of("data: {\"a\":1}}\n"), "<none>") << "already malformed";
  CompletionExtractor plain;
  char out[16];
  EXPECT_EQ(plain.write_event_end(out), -1) << "not an event stream";
}

TEST(CompletionExtractorEventEnd, RefusesAnEndWhoseCompletedIndexContradictsTheText) {
  const auto end_of = [](std::string_view prefix) {
    CompletionExtractor extractor;
    extractor.begin(true);
    Recorder sink;
    extractor.feed({reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size()}, sink);
    EXPECT_FALSE(extractor.malformed()) << "the index is not read until a byte ends it";
    char out[64];
    const long length = extractor.write_event_end(out);
    return length < 0 ? std::string("<none>") : std::string(out, static_cast<std::size_t>(length));
  };
  // The text went to block 0 (its position); ending the number would make it index 5.
  EXPECT_EQ(end_of(R"(data: {"x":"hi","index":5)"), "<none>");
  // (the fuzzer's input: a garbage event name, an invalid UTF-8 text, index 5)
  EXPECT_EQ(end_of("event: c\x02\ndata: {\"typ~\":\"a\x9e\x95"
                   "b\", \"index\":5"),
            "<none>");
  // An index that agrees with the text, or comes before any text, ends as usual.
  EXPECT_EQ(end_of(R"(data: {"x":"hi","index":0)"), "}\n\n");
  EXPECT_EQ(end_of(R"(data: {"index":5)"), "}\n\n");
}

}  // namespace
}  // namespace sluice
