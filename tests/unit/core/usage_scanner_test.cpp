#include "sluice/usage_scanner.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <new>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

// Counts allocations while a scanner is fed, to hold feed() to "no allocation".
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

void PrintTo(const TokenUsage& usage, std::ostream* os) {
  *os << "{prompt " << usage.prompt_tokens << ", completion " << usage.completion_tokens
      << ", total " << usage.total_tokens << "}";
}

namespace {

constexpr int64_t kNo = TokenUsage::kAbsent;
constexpr int64_t kTwoTo53 = int64_t{1} << 53;

TokenUsage usage(int64_t prompt, int64_t completion, int64_t total) {
  return {prompt, completion, total};
}

std::span<const uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

TokenUsage scan(bool event_stream, const std::vector<std::string_view>& pieces) {
  UsageScanner scanner;
  scanner.begin(event_stream);
  for (std::string_view piece : pieces) scanner.feed(bytes_of(piece));
  return scanner.finish();
}

// Whole, split at every byte boundary, and byte by byte: all must agree.
TokenUsage scan_every_way(bool event_stream, std::string_view input) {
  const TokenUsage whole = scan(event_stream, {input});
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    EXPECT_EQ(scan(event_stream, {input.substr(0, cut), input.substr(cut)}), whole)
        << "cut " << cut;
  }
  std::vector<std::string_view> single;
  for (std::size_t i = 0; i < input.size(); ++i) single.push_back(input.substr(i, 1));
  EXPECT_EQ(scan(event_stream, single), whole) << "byte by byte";
  return whole;
}

struct UsageCase {
  const char* name;
  std::string body;
  TokenUsage expected;
};

std::string case_name(const testing::TestParamInfo<UsageCase>& param_info) {
  return param_info.param.name;
}

// ---- Plain JSON bodies --------------------------------------------------------------------

class PlainBody : public testing::TestWithParam<UsageCase> {};

TEST_P(PlainBody, ReportsTheUsageMembersOfAValidBody) {
  EXPECT_EQ(scan_every_way(false, GetParam().body), GetParam().expected);
}

const TokenUsage kNothing{};

const UsageCase kPlainCases[] = {
    {"OpenAiChatCompletion",
     R"({"id":"chatcmpl-9x","object":"chat.completion","created":1718000000,"model":"gpt-4o-mini",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?",)"
     R"("refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,)"
     R"("completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,)"
     R"("audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,)"
     R"("accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},)"
     R"("system_fingerprint":"fp_x"})",
     usage(9, 12, 21)},
    {"UsageFirst",
     R"({"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3},"id":"x","choices":[]})",
     usage(1, 2, 3)},
    {"UsageMiddle",
     R"({"id":"x","usage":{"prompt_tokens":1,"completion_tokens":2},"choices":[{"text":"}"}]})",
     usage(1, 2, kNo)},
    {"UsageLast", R"({"id":"x","choices":[{"index":0}],"usage":{"total_tokens":3}})",
     usage(kNo, kNo, 3)},
    {"NestedDetailsAreSkippedWhateverTheyHold",
     R"({"usage":{"prompt_tokens_details":{"prompt_tokens":999,"cached_tokens":[1,{"total_tokens":)"
     R"(5}],"s":"}"},"prompt_tokens":10,"completion_tokens_details":{"reasoning_tokens":4,"x":)"
     R"({"usage":{"total_tokens":1}},"y":[[[]],{}]},"completion_tokens":20}})",
     usage(10, 20, kNo)},
    {"StringsThatLookLikeJsonAreJustStrings",
     R"({"content":"\"usage\":{\"prompt_tokens\":99}} {[ \\\"","usage":{"prompt_tokens":5,)"
     R"("note":"}]\"{","total_tokens":6},"tail":"\\"})",
     usage(5, kNo, 6)},
    {"UsageUnderChoicesDoesNotCount", R"({"choices":[{"usage":{"prompt_tokens":5}}]})", kNothing},
    {"UsageUnderAChoiceMessageDoesNotCount",
     R"({"choices":[{"message":{"usage":{"prompt_tokens":5}}}]})", kNothing},
    {"UsageUnderAnotherKeyDoesNotCount", R"({"meta":{"usage":{"prompt_tokens":5}}})", kNothing},
    {"UsageInAWrapperArrayDoesNotCount", R"({"message":[{"usage":{"prompt_tokens":5}}]})",
     kNothing},
    {"UsageTwoWrappersDownDoesNotCount",
     R"({"response":{"message":{"usage":{"prompt_tokens":5}}}})", kNothing},
    {"UsageInsideUsageDoesNotCount", R"({"usage":{"usage":{"prompt_tokens":5}}})", kNothing},
    {"AnthropicMessage",
     R"({"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-sonnet",)"
     R"("content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,)"
     R"("usage":{"input_tokens":25,"cache_creation_input_tokens":3,"cache_read_input_tokens":4,)"
     R"("output_tokens":11}})",
     usage(25, 11, kNo)},
    {"AnthropicMessageStartUnderMessage",
     R"({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant",)"
     R"("content":[],"model":"claude","stop_reason":null,"stop_sequence":null,)"
     R"("usage":{"input_tokens":25,"output_tokens":1}}})",
     usage(25, 1, kNo)},
    {"ResponsesCompletedUnderResponse",
     R"({"type":"response.completed","sequence_number":9,"response":{"id":"resp_1",)"
     R"("object":"response","status":"completed","output":[{"type":"message","content":[{"type":)"
     R"("output_text","text":"usage"}]}],"usage":{"input_tokens":36,"input_tokens_details":)"
     R"({"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},)"
     R"("total_tokens":123}}})",
     usage(36, 87, 123)},
    {"UsageNull", R"({"id":"x","usage":null})", kNothing},
    {"UsageNotAnObject", R"({"usage":[{"prompt_tokens":1}],"x":"usage"})", kNothing},
    {"UsageAString", R"({"usage":"prompt_tokens","prompt_tokens":4})", kNothing},
    {"EmptyUsage", R"({"usage":{}})", kNothing},
    {"MembersThatAreNotNumbers",
     R"({"usage":{"prompt_tokens":null,"completion_tokens":"12","total_tokens":true}})", kNothing},
    {"NegativeFractionAndExponentIgnored",
     R"({"usage":{"prompt_tokens":-1,"completion_tokens":1.0,"total_tokens":1e3}})", kNothing},
    {"MoreSignsAndExponentsIgnored",
     R"({"usage":{"prompt_tokens":-0,"completion_tokens":5E0,"total_tokens":7e-0}})", kNothing},
    {"ZeroAndTwoTo53Count",
     R"({"usage":{"prompt_tokens":0,"completion_tokens":9007199254740992,"total_tokens":1}})",
     usage(0, kTwoTo53, 1)},
    {"AboveTwoTo53Ignored",
     R"({"usage":{"prompt_tokens":9007199254740993,"completion_tokens":18446744073709551616,)"
     R"("total_tokens":123456789012345678901234567890}})",
     kNothing},
    {"EscapedKeysDoNotMatch",
     R"({"us\u0061ge":{"prompt_tokens":1},"usage":{"prompt\u005ftokens":2,"total_tokens":3}})",
     usage(kNo, kNo, 3)},
    {"LongerKeysDoNotMatch",
     R"({"usage":{"completion_tokens_x":4,"prompt_tokens_total":5,"xtotal_tokens":7,)"
     R"("total_tokens":6},"usages":{"total_tokens":8}})",
     usage(kNo, kNo, 6)},
    {"LastCountingMemberWinsPerField",
     R"({"usage":{"prompt_tokens":1,"input_tokens":2,"total_tokens":3},)"
     R"("message":{"usage":{"total_tokens":4}},"usage":{"prompt_tokens":5,"total_tokens":null}})",
     usage(5, kNo, 4)},
    {"PrettyPrintedWithCrLfAndTabs",
     "{\r\n\t\"usage\" : {\n  \"prompt_tokens\" :\t3 ,\n \"total_tokens\":4\n }\n}\n\r\n",
     usage(3, kNo, 4)},
    {"NestingUpToTheBound",
     "{\"x\":" + std::string(63, '[') + std::string(63, ']') + ",\"usage\":{\"total_tokens\":1}}",
     usage(kNo, kNo, 1)},
    // Malformed bodies never report numbers.
    {"NestingBeyondTheBound",
     "{\"usage\":{\"total_tokens\":1},\"x\":" + std::string(64, '[') + std::string(64, ']') + "}",
     kNothing},
    {"Truncated", R"({"usage":{"prompt_tokens":3,"total_tokens":4})", kNothing},
    {"TruncatedInANumber", R"({"usage":{"total_tokens":4)", kNothing},
    {"MismatchedBrackets", R"({"usage":{"total_tokens":4]})", kNothing},
    {"ExtraCloser", R"({"usage":{"total_tokens":4}}})", kNothing},
    {"BadEscape", R"({"usage":{"total_tokens":4},"x":"\q"})", kNothing},
    {"ShortUnicodeEscape", R"({"usage":{"total_tokens":4},"x":"\u12g4"})", kNothing},
    {"TrailingGarbage", R"({"usage":{"total_tokens":4}} x)", kNothing},
    {"TwoTopLevelValues", R"({"usage":{"total_tokens":4}}{})", kNothing},
    {"TopLevelArray", R"([{"usage":{"total_tokens":4}}])", kNothing},
    {"LeadingZero", R"({"usage":{"total_tokens":04}})", kNothing},
    {"TrailingComma", R"({"usage":{"total_tokens":4,}})", kNothing},
    {"UnquotedKey", R"({usage:{"total_tokens":4}})", kNothing},
    {"SingleQuotes", R"({'usage':{"total_tokens":4}})", kNothing},
    {"RawControlCharacterInString", "{\"usage\":{\"total_tokens\":4},\"x\":\"a\tb\"}", kNothing},
    {"BadLiteral", R"({"usage":{"total_tokens":4},"x":nul})", kNothing},
    {"CapitalisedLiteral", R"({"usage":{"total_tokens":4},"x":True})", kNothing},
    {"MissingColon", R"({"usage" {"total_tokens":4}})", kNothing},
    {"MissingComma", R"({"usage":{"prompt_tokens":1 "total_tokens":4}})", kNothing},
    {"DotWithoutDigits", R"({"usage":{"total_tokens":4},"x":1.})", kNothing},
    {"ExponentWithoutDigits", R"({"usage":{"total_tokens":4},"x":1e+})", kNothing},
    {"MinusAlone", R"({"usage":{"total_tokens":4},"x":-})", kNothing},
    {"ByteOrderMark", "\xEF\xBB\xBF{\"usage\":{\"total_tokens\":4}}", kNothing},
    {"EventStreamSentAsJson", "data: {\"usage\":{\"total_tokens\":4}}\n\n", kNothing},
    {"Empty", "", kNothing},
    {"WhitespaceOnly", " \r\n\t", kNothing},
};

INSTANTIATE_TEST_SUITE_P(UsageScanner, PlainBody, testing::ValuesIn(kPlainCases), case_name);

// ---- Server-sent events -------------------------------------------------------------------

class EventStream : public testing::TestWithParam<UsageCase> {};

TEST_P(EventStream, ReportsTheLatestValueOfEachFieldAcrossEvents) {
  EXPECT_EQ(scan_every_way(true, GetParam().body), GetParam().expected);
}

const UsageCase kEventStreamCases[] = {
    {"OpenAiChatStreamWithDone",
     "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
     "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n"
     "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
     "\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n"
     "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
     "\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
     "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
     "{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,"
     "\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n"
     "data: [DONE]\n\n",
     usage(19, 10, 29)},
    {"AnthropicMessageStartAndMessageDelta",
     "event: message_start\n"
     "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
     "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4\",\"stop_reason\":null,"
     "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
     "event: content_block_start\n"
     "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
     "\"text\":\"\"}}\n\n"
     "event: ping\n"
     "data: {\"type\": \"ping\"}\n\n"
     "event: content_block_delta\n"
     "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
     "\"text\":\"Hello\"}}\n\n"
     "event: content_block_stop\n"
     "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
     "event: message_delta\n"
     "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
     "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n"
     "event: message_stop\n"
     "data: {\"type\":\"message_stop\"}\n\n",
     usage(25, 15, kNo)},
    {"ResponsesApiStream",
     "event: response.created\n"
     "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\","
     "\"status\":\"in_progress\",\"usage\":null}}\n\n"
     "event: response.output_text.delta\n"
     "data: {\"type\":\"response.output_text.delta\",\"delta\":\"usage\"}\n\n"
     "event: response.completed\n"
     "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\","
     "\"status\":\"completed\",\"usage\":{\"input_tokens\":36,\"output_tokens\":87,"
     "\"total_tokens\":123}}}\n\n",
     usage(36, 87, 123)},
    {"CrLfLineEndings",
     "data: {\"choices\":[]}\r\n\r\n"
     "data: {\"usage\":{\"prompt_tokens\":2,\"total_tokens\":5}}\r\n\r\n"
     "data: [DONE]\r\n\r\n",
     usage(2, kNo, 5)},
    {"CrLineEndings",
     "event: x\rdata: {\"usage\":\rdata: {\"prompt_tokens\":2}}\r\rdata: [DONE]\r\r",
     usage(2, kNo, kNo)},
    {"MixedLineEndings",
     "data: {\"usage\":\r\ndata: {\"prompt_tokens\":2,\n"
     "data: \"total_tokens\":3}}\r\r\n"
     "data: {\"usage\":{\"completion_tokens\":4}}\n\r",
     usage(2, 4, 3)},
    {"CrLfIsOneLineEndNotTwo", "data: {\"usage\":\r\ndata: {\"total_tokens\":4}}\r\n\r\n",
     usage(kNo, kNo, 4)},
    {"MultiLineDataIsOneJsonText",
     "data: {\"usage\":\ndata: {\"prompt_tokens\":3,\ndata:\"total_tokens\":4}}\n\n",
     usage(3, kNo, 4)},
    {"CommentsBetweenDataLinesKeepTheEventWhole",
     "data: {\"usage\":\n: keep-alive\nid: 7\ndata: {\"total_tokens\":4}}\n\n", usage(kNo, kNo, 4)},
    {"CommentsAndOtherFieldsIgnored",
     ": hello {\"usage\":{\"total_tokens\":1}}\nretry: 1000\nid: 1\nevent: usage\n"
     "foo: {\"usage\":{\"total_tokens\":2}}\ndata:{\"usage\":{\"total_tokens\":8}}\n\n",
     usage(kNo, kNo, 8)},
    {"FieldNamesThatAreNotDataIgnored",
     "dat: {\"usage\":{\"total_tokens\":1}}\n\n"
     "datas: {\"usage\":{\"total_tokens\":2}}\n\n"
     "Data: {\"usage\":{\"total_tokens\":3}}\n\n"
     " data: {\"usage\":{\"total_tokens\":4}}\n\n"
     "data : {\"usage\":{\"total_tokens\":5}}\n\n",
     kNothing},
    {"DataWithoutColonAddsAnEmptyLine", "data\ndata: {\"usage\":{\"total_tokens\":2}}\ndata\n\n",
     usage(kNo, kNo, 2)},
    {"OnlyOneSpaceIsDroppedTheRestIsWhitespace", "data:   {\"usage\":{\"total_tokens\":2}}  \n\n",
     usage(kNo, kNo, 2)},
    {"EventWithoutFinalBlankLine", "data: {\"usage\":{\"total_tokens\":2}}\n", usage(kNo, kNo, 2)},
    {"EventWithoutFinalLineEnd",
     "data: {\"usage\":{\"total_tokens\":2}}\n\ndata: {\"usage\":{\"prompt_tokens\":3}}",
     usage(3, kNo, 2)},
    {"UnfinishedJsonAtTheEndCountsNothing",
     "data: {\"usage\":{\"total_tokens\":2}}\n\ndata: {\"usage\":{\"total_tokens\":3}",
     usage(kNo, kNo, 2)},
    {"MalformedEventThenGoodEvent",
     "data: {\"usage\":{\"total_tokens\":2}\n\n"
     "data: {\"usage\":{\"prompt_tokens\":3}}\n\n",
     usage(3, kNo, kNo)},
    {"GoodEventThenMalformedEventKeepsTheGood",
     "data: {\"usage\":{\"total_tokens\":2}}\n\n"
     "data: {\"usage\":{\"total_tokens\":9}} x\n\n"
     "data: {\"usage\":{\"total_tokens\":8,}}\n\n",
     usage(kNo, kNo, 2)},
    {"LatestEventWinsPerField",
     "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n"
     "data: {\"usage\":{\"completion_tokens\":5,\"total_tokens\":null}}\n\n"
     "data: {\"usage\":{\"total_tokens\":9}}\n\n",
     usage(1, 5, 9)},
    {"DoneOnly", "data: [DONE]\n\n", kNothing},
    {"DoneInTheSameEventSpoilsIt", "data: {\"usage\":{\"total_tokens\":2}}\ndata: [DONE]\n\n",
     kNothing},
    {"ByteOrderMarkDropped",
     "\xEF\xBB\xBF"
     "data: {\"usage\":{\"total_tokens\":2}}\n\n",
     usage(kNo, kNo, 2)},
    {"PartialByteOrderMarkSpoilsOnlyItsLine",
     "\xEF\xBB"
     "data: {\"usage\":{\"total_tokens\":2}}\n\n"
     "data: {\"usage\":{\"total_tokens\":3}}\n\n",
     usage(kNo, kNo, 3)},
    {"ByteOrderMarkLaterIsPartOfTheLine",
     "\n\xEF\xBB\xBF"
     "data: {\"usage\":{\"total_tokens\":2}}\n\n",
     kNothing},
    {"BlankLinesEverywhere", "\n\r\n\r\ndata: {\"usage\":{\"total_tokens\":2}}\n\n\n\n\r\r",
     usage(kNo, kNo, 2)},
    {"PlainJsonBodyLabelledAsEventStream", "{\"usage\":{\"total_tokens\":4}}", kNothing},
    {"DeepNestingInOneEventDoesNotSpoilTheNext",
     "data: {\"x\":" + std::string(70, '[') + "\n\n" + "data: {\"usage\":{\"total_tokens\":3}}\n\n",
     usage(kNo, kNo, 3)},
    {"Empty", "", kNothing},
};

INSTANTIATE_TEST_SUITE_P(UsageScanner, EventStream, testing::ValuesIn(kEventStreamCases),
                         case_name);

// ---- The scanner's contract ---------------------------------------------------------------

TEST(TokenUsage, UsedPrefersTotalElseSumsThePartsPresent) {
  EXPECT_EQ(usage(kNo, kNo, kNo).used(), 0u);
  EXPECT_FALSE(usage(kNo, kNo, kNo).reported());
  EXPECT_EQ(usage(10, 20, 25).used(), 25u);
  EXPECT_EQ(usage(10, 20, kNo).used(), 30u);
  EXPECT_EQ(usage(10, kNo, kNo).used(), 10u);
  EXPECT_EQ(usage(kNo, 7, kNo).used(), 7u);
  EXPECT_EQ(usage(kNo, kNo, 0).used(), 0u);
  EXPECT_TRUE(usage(kNo, kNo, 0).reported());
  EXPECT_TRUE(usage(kNo, 3, kNo).reported());
  EXPECT_EQ(usage(kTwoTo53, kTwoTo53, kNo).used(), uint64_t{1} << 54);
}

TEST(UsageScanner, BeginForgetsThePreviousBody) {
  UsageScanner scanner;
  scanner.begin(true);
  scanner.feed(bytes_of("data: {\"usage\":{\"total_tokens\":2}}\n\ndata: {\"usage\":"));
  EXPECT_EQ(scanner.finish(), usage(kNo, kNo, 2));
  scanner.begin(false);
  scanner.feed(bytes_of("{\"usage\":{\"prompt_tokens\":5}}"));
  EXPECT_EQ(scanner.finish(), usage(5, kNo, kNo));
  // Abandoned mid-body (no finish): begin still starts clean.
  scanner.begin(false);
  scanner.feed(bytes_of("{\"usage\":{\"prompt_tokens\":5,"));
  scanner.begin(true);
  scanner.feed(
      bytes_of("\xEF\xBB\xBF"
               "data: {\"usage\":{\"completion_tokens\":1}}"));
  EXPECT_EQ(scanner.finish(), usage(kNo, 1, kNo));
}

TEST(UsageScanner, DefaultConstructedReadsAPlainBody) {
  UsageScanner scanner;
  scanner.feed(bytes_of("{\"usage\":{\"input_tokens\":5}}"));
  EXPECT_EQ(scanner.finish(), usage(5, kNo, kNo));
}

TEST(UsageScanner, FinishWithoutBodyReportsNothingAndFinishIsIdempotent) {
  UsageScanner scanner;
  scanner.begin(true);
  EXPECT_EQ(scanner.finish(), kNothing);
  scanner.begin(false);
  scanner.feed(bytes_of("{\"usage\":{\"total_tokens\":3}}"));
  EXPECT_EQ(scanner.finish(), usage(kNo, kNo, 3));
  EXPECT_EQ(scanner.finish(), usage(kNo, kNo, 3));
  scanner.feed(bytes_of("garbage"));  // after finish: ignored until begin
  EXPECT_EQ(scanner.finish(), usage(kNo, kNo, 3));
}

TEST(UsageScanner, EmptyPiecesChangeNothing) {
  UsageScanner scanner;
  scanner.begin(true);
  scanner.feed({});
  scanner.feed(bytes_of("data: {\"usage\":{\"total_tokens\":3}}\r"));
  scanner.feed({});
  scanner.feed(bytes_of("\n\n"));
  EXPECT_EQ(scanner.finish(), usage(kNo, kNo, 3));
}

TEST(UsageScanner, LongBodiesAreStreamedNotBuffered) {
  std::string body = "{\"choices\":[{\"message\":{\"content\":\"";
  for (int i = 0; i < 20000; ++i) body += "lorem {usage} \\\"ipsum\\\" \\u00e9 ";
  body += "\"}}],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":20000}}";
  UsageScanner scanner;
  scanner.begin(false);
  for (std::size_t at = 0; at < body.size(); at += 1460) {
    scanner.feed(bytes_of(std::string_view(body).substr(at, 1460)));
  }
  EXPECT_EQ(scanner.finish(), usage(1000, 20000, kNo));
}

TEST(UsageScanner, FeedNeverAllocates) {
  std::string stream;
  for (int i = 0; i < 200; ++i) {
    stream +=
        ": ping\r\nevent: delta\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"tok\\n\"}}],";
    stream += "\"usage\":{\"prompt_tokens\":" + std::to_string(i) + "}}\r\n\r\n";
  }
  const std::string body = "{\"usage\":{\"prompt_tokens\":1,\"x\":[[{\"y\":null}]]}}";
  UsageScanner scanner;
  allocations = 0;
  counting_allocations = true;
  scanner.begin(true);
  for (std::size_t at = 0; at < stream.size(); at += 7) {
    scanner.feed(bytes_of(std::string_view(stream).substr(at, 7)));
  }
  const TokenUsage from_stream = scanner.finish();
  scanner.begin(false);
  scanner.feed(bytes_of(body));
  const TokenUsage from_body = scanner.finish();
  counting_allocations = false;
  EXPECT_EQ(allocations, 0u);
  EXPECT_EQ(from_stream, usage(199, kNo, kNo));
  EXPECT_EQ(from_body, usage(1, kNo, kNo));
}

// ---- Differential test against nlohmann::json ---------------------------------------------

using nlohmann::json;

// Random documents with usage objects placed at random (where they count and where they do
// not), and what the scanner must report, computed from the parsed object.
class RandomDocuments {
 public:
  explicit RandomDocuments(uint32_t seed) : rng_(seed) {}

  json document() {
    json root = json::object();
    const int members = pick(6);
    for (int i = 0; i < members; ++i) root[pick_of(kRootKeys)] = member_value(1);
    if (pick(3) > 0) root["usage"] = pick(5) == 0 ? value(1) : usage_object();
    if (pick(3) == 0) root[pick(2) == 0 ? "message" : "response"] = wrapper();
    return root;
  }

  // Serialised the way hosts do (compact) or as people do (indented), ASCII-only or not.
  std::string serialise(const json& document) {
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
  static constexpr const char* kRootKeys[] = {"id",    "object", "model", "choices",
                                              "type",  "delta",  "meta",  "usage_",
                                              "Usage", "data",   "text",  "prompt_tokens"};
  static constexpr const char* kUsageKeys[] = {"prompt_tokens",
                                               "input_tokens",
                                               "completion_tokens",
                                               "output_tokens",
                                               "total_tokens",
                                               "prompt_tokens_details",
                                               "completion_tokens_details",
                                               "cache_read_input_tokens",
                                               "reasoning_tokens",
                                               "total_tokens_",
                                               "Prompt_tokens",
                                               "usage"};
  static constexpr const char* kStringPieces[] = {"usage",    "\"",
                                                  "\\",       "{",
                                                  "}",        "[",
                                                  "]",        ":",
                                                  ",",        "prompt_tokens",
                                                  "\xC3\xA9", "\xE2\x80\xA8",
                                                  "\n",       "\t",
                                                  "\x01",     "data: ",
                                                  " ",        "\xF0\x9F\x98\x80",
                                                  "null",     "12"};

  template <std::size_t N>
  const char* pick_of(const char* const (&options)[N]) {
    return options[pick(N)];
  }

  std::string text() {
    std::string s;
    const int pieces = pick(5);
    for (int i = 0; i < pieces; ++i) s += pick_of(kStringPieces);
    return s;
  }

  json number() {
    switch (pick(14)) {
      case 0:
        return 0;
      case 1:
        return uint64_t{1} << 53;
      case 2:
        return (uint64_t{1} << 53) + 1;
      case 3:
        return std::numeric_limits<uint64_t>::max();
      case 4:
        return -static_cast<int64_t>(pick(1000)) - 1;
      case 5:
        return pick(1000) + 0.5;
      case 6:
        return static_cast<double>(pick(1000));  // dumps as "123.0": not an integer literal
      default:
        return std::uniform_int_distribution<int64_t>(0, 10'000'000)(rng_);
    }
  }

  json scalar() {
    switch (pick(5)) {
      case 0:
        return nullptr;
      case 1:
        return pick(2) == 0;
      case 2:
        return text();
      default:
        return number();
    }
  }

  json value(int depth) {
    if (depth >= 6 || pick(3) == 0) return scalar();
    if (pick(2) == 0) {
      json array = json::array();
      const int n = pick(4);
      for (int i = 0; i < n; ++i) array.push_back(member_value(depth + 1));
      return array;
    }
    json object = json::object();
    const int n = pick(4);
    for (int i = 0; i < n; ++i) {
      object[pick(4) == 0 ? std::string("usage") : pick_of(kRootKeys)] = member_value(depth + 1);
    }
    return object;
  }

  // A value anywhere below the top level: sometimes a decoy usage or wrapper.
  json member_value(int depth) {
    switch (pick(8)) {
      case 0:
        return json{{"usage", usage_object()}};
      case 1:
        return wrapper();
      default:
        return value(depth);
    }
  }

  json usage_object() {
    json usage = json::object();
    const int n = pick(7);
    for (int i = 0; i < n; ++i) {
      // Mostly the counting keys (the first five), else decoys.
      const char* key = kUsageKeys[pick(3) > 0 ? pick(5) : pick(std::size(kUsageKeys))];
      usage[key] = pick(6) == 0 ? value(4) : number();
    }
    return usage;
  }

  json wrapper() {
    json wrapped = json::object();
    const int n = pick(4);
    for (int i = 0; i < n; ++i) wrapped[pick_of(kRootKeys)] = value(3);
    if (pick(4) > 0) wrapped["usage"] = pick(6) == 0 ? value(3) : usage_object();
    if (pick(6) == 0) wrapped["message"] = json{{"usage", usage_object()}};
    if (pick(8) == 0) return json::array({wrapped});
    return wrapped;
  }

  std::mt19937 rng_;
};

void apply_usage(const json& usage_value, TokenUsage& found) {
  for (const auto& [key, member] : usage_value.items()) {
    if (!member.is_number_integer()) continue;  // floats, strings, null, containers
    int64_t count = 0;
    if (member.is_number_unsigned()) {
      const auto unsigned_count = member.get<uint64_t>();
      if (unsigned_count > uint64_t{1} << 53) continue;
      count = static_cast<int64_t>(unsigned_count);
    } else {
      count = member.get<int64_t>();
      if (count < 0 || count > kTwoTo53) continue;
    }
    if (key == "prompt_tokens" || key == "input_tokens") found.prompt_tokens = count;
    if (key == "completion_tokens" || key == "output_tokens") found.completion_tokens = count;
    if (key == "total_tokens") found.total_tokens = count;
  }
}

// The rules, read off the parsed document. nlohmann's objects iterate in key order, which is
// also the order dump() writes them in, so "last in the text wins" is "last in iteration".
TokenUsage expected_usage(const json& document) {
  TokenUsage found;
  for (const auto& [key, member] : document.items()) {
    if (!member.is_object()) continue;
    if (key == "usage") apply_usage(member, found);
    if (key == "message" || key == "response") {
      if (member.contains("usage") && member["usage"].is_object()) {
        apply_usage(member["usage"], found);
      }
    }
  }
  return found;
}

// Each field the event carried replaces the stream's.
void merge_expected(TokenUsage& into, const TokenUsage& from) {
  if (from.prompt_tokens != kNo) into.prompt_tokens = from.prompt_tokens;
  if (from.completion_tokens != kNo) into.completion_tokens = from.completion_tokens;
  if (from.total_tokens != kNo) into.total_tokens = from.total_tokens;
}

// Feeds `text` in pieces cut at random points.
TokenUsage scan_in_random_pieces(bool event_stream, std::string_view text, std::mt19937& rng) {
  std::vector<std::size_t> cuts;
  const int cut_count = std::uniform_int_distribution<int>(0, 6)(rng);
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
  return scan(event_stream, pieces);
}

TEST(UsageScannerDifferential, AgreesWithNlohmannOnRandomBodies) {
  RandomDocuments random(20240611);
  int reported = 0;
  for (int i = 0; i < 600; ++i) {
    const json document = random.document();
    const std::string text = random.serialise(document);
    ASSERT_EQ(json::parse(text), document);
    const TokenUsage expected = expected_usage(document);
    reported += expected.reported();
    EXPECT_EQ(scan_in_random_pieces(false, text, random.rng()), expected) << text;
    if (i % 20 == 0) {
      EXPECT_EQ(scan_every_way(false, text), expected) << text;
    }
    // Any strict prefix is an unfinished object: never reports.
    const std::size_t cut =
        std::uniform_int_distribution<std::size_t>(0, text.size() - 1)(random.rng());
    EXPECT_EQ(scan(false, {std::string_view(text).substr(0, cut)}), kNothing) << text;
  }
  EXPECT_GT(reported, 200);  // the generator does exercise the counting paths
}

TEST(UsageScannerDifferential, AgreesWithNlohmannOnRandomEventStreams) {
  RandomDocuments random(77);
  constexpr const char* kLineEnds[] = {"\n", "\r\n", "\r"};
  int reported = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string line_end = kLineEnds[random.pick(3)];
    std::string stream;
    TokenUsage expected;
    const int events = 1 + random.pick(6);
    for (int e = 0; e < events; ++e) {
      if (random.pick(3) == 0) stream += ": keep-alive" + line_end;
      if (random.pick(2) == 0) stream += "event: chunk" + line_end;
      std::string data;
      switch (random.pick(6)) {
        case 0:
          data = "[DONE]";
          break;
        case 1: {  // a strict prefix, or a document with something after it: malformed
          const std::string text = random.serialise(random.document());
          data = random.pick(2) == 0 ? text.substr(0, random.pick(static_cast<int>(text.size())))
                                     : text + (random.pick(2) == 0 ? "}" : " x");
          break;
        }
        default: {
          const json document = random.document();
          data = random.serialise(document);
          merge_expected(expected, expected_usage(document));
        }
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
    reported += expected.reported();
    EXPECT_EQ(scan_in_random_pieces(true, stream, random.rng()), expected) << stream;
    if (i % 25 == 0) {
      EXPECT_EQ(scan_every_way(true, stream), expected) << stream;
    }
  }
  EXPECT_GT(reported, 150);
}

}  // namespace
}  // namespace sluice
