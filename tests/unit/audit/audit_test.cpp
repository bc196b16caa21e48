// The audit trail: record → JSON line, the per-worker SPSC ring, and the writer thread
// (io_uring or pwrite, rotation, drops, flush/stop draining).
#include <arpa/inet.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sluice/audit.hpp"

namespace sluice {
namespace {

using nlohmann::json;

AuditEndpoint endpoint(const char* address, uint16_t port) {
  AuditEndpoint result;
  result.port = port;
  if (inet_pton(AF_INET, address, result.address.data()) == 1) {
    result.family = 4;
  } else if (inet_pton(AF_INET6, address, result.address.data()) == 1) {
    result.family = 6;
  }
  return result;
}

int64_t utc_ns(int year, int month, int day, int hour, int minute, int second, int ms) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000 + int64_t{ms} * 1'000'000 + 456'789;
}

std::string format(const AuditRecord& record) {
  std::vector<char> out(kMaxAuditLineBytes);
  const std::size_t n = format_json_line(record, out);
  EXPECT_GT(n, 0u);
  return std::string(out.data(), n);
}

// Parses one produced line (which must end in exactly one '\n') with a real JSON parser.
json parse_line(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one record, one line";
  return json::parse(line.substr(0, line.size() - 1));  // throws on invalid JSON (or UTF-8)
}

AuditRecord deny_record() {
  AuditRecord record;
  record.ts_ns = utc_ns(2026, 11, 28, 19, 30, 0, 123);
  record.sequence = 7;
  record.worker = 3;
  record.src = endpoint("198.18.0.1", 40000);
  record.dst = endpoint("198.18.0.2", 8000);
  record.identity.assign("team-a");
  record.has_key_id = true;
  record.key_id = 0x0a1b2c3d4e5f;
  record.tier.assign("gold");
  record.verdict = AuditVerdict::deny;
  record.status = 429;
  record.reason.assign("rate_limited");
  record.method.assign("POST");
  record.set_path("/v1/chat/completions");
  record.set_model("llama-3-70b");
  record.request_bytes = 812;
  record.prompt_tokens_est = 150;
  record.max_output_tokens = 256;
  return record;
}

// ---- format ----------------------------------------------------------------------------------

TEST(AuditRecordTest, IsFixedSizeAndTriviallyCopyable) {
  static_assert(std::is_trivially_copyable_v<AuditRecord>);
  EXPECT_EQ(sizeof(AuditRecord), 640u);
  EXPECT_EQ(alignof(AuditRecord), 64u);
}

TEST(AuditFormatTest, WritesIpv4DenyRecordExactly) {
  const std::string line = format(deny_record());
  EXPECT_EQ(line,
            R"({"ts":"2026-11-28T19:30:00.123Z","seq":7,"worker":3,)"
            R"("flow":{"src":"198.18.0.1:40000","dst":"198.18.0.2:8000"},"identity":"team-a",)"
            R"("key_id":"0a1b2c3d4e5f","tier":"gold","verdict":"deny","status":429,)"
            R"("reason":"rate_limited","rules":[],"method":"POST","path":"/v1/chat/completions",)"
            R"("path_truncated":false,"model":"llama-3-70b","model_truncated":false,)"
            R"("request_bytes":812,"prompt_tokens_est":150,"max_output_tokens":256,)"
            R"("tokens_reserved":0,"usage":null,"tokens_charged":0})"
            "\n");
  const json parsed = parse_line(line);
  EXPECT_EQ(parsed["flow"]["src"], "198.18.0.1:40000");
  EXPECT_EQ(parsed["verdict"], "deny");
  EXPECT_TRUE(parsed["rules"].is_array());
  EXPECT_TRUE(parsed["rules"].empty());
}

TEST(AuditFormatTest, WritesIpv6InBracketsAndAbsentFieldsAsNull) {
  AuditRecord record;
  record.ts_ns = utc_ns(2024, 2, 29, 23, 59, 59, 999);
  record.sequence = 0;
  record.worker = 0;
  record.src = endpoint("2001:db8::1", 51000);
  record.dst = endpoint("2001:db8:0:0:1:0:0:2", 443);
  record.verdict = AuditVerdict::admit;
  record.status = 0;
  record.reason.assign("ok");
  record.method.assign("GET");
  record.set_path("/v1/models");
  record.request_bytes = 90;
  const std::string line = format(record);
  EXPECT_EQ(line,
            R"({"ts":"2024-02-29T23:59:59.999Z","seq":0,"worker":0,)"
            R"("flow":{"src":"[2001:db8::1]:51000","dst":"[2001:db8::1:0:0:2]:443"},)"
            R"("identity":null,"key_id":null,"tier":null,"verdict":"admit","status":0,)"
            R"("reason":"ok","rules":[],"method":"GET","path":"/v1/models","path_truncated":false,)"
            R"("model":null,"model_truncated":false,"request_bytes":90,"prompt_tokens_est":0,)"
            R"("max_output_tokens":null,"tokens_reserved":0,"usage":null,"tokens_charged":0})"
            "\n");
  const json parsed = parse_line(line);
  EXPECT_TRUE(parsed["identity"].is_null());
  EXPECT_TRUE(parsed["key_id"].is_null());
  EXPECT_TRUE(parsed["tier"].is_null());
  EXPECT_TRUE(parsed["model"].is_null());
  EXPECT_TRUE(parsed["max_output_tokens"].is_null());
}

TEST(AuditFormatTest, WritesTimestampsAsRfc3339UtcMilliseconds) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {0, "1970-01-01T00:00:00.000Z"},
      {-5, "1970-01-01T00:00:00.000Z"},  // clamped
      {999'999, "1970-01-01T00:00:00.000Z"},
      {1'000'000, "1970-01-01T00:00:00.001Z"},
      {utc_ns(2000, 2, 29, 12, 0, 0, 0), "2000-02-29T12:00:00.000Z"},
      {utc_ns(2100, 3, 1, 0, 0, 1, 5), "2100-03-01T00:00:01.005Z"},
      {utc_ns(2026, 12, 31, 23, 59, 59, 999), "2026-12-31T23:59:59.999Z"},
  };
  for (const auto& [ts_ns, text] : cases) {
    AuditRecord record;
    record.ts_ns = ts_ns;
    EXPECT_EQ(parse_line(format(record))["ts"], text) << ts_ns;
  }
}

TEST(AuditFormatTest, EscapesQuotesBackslashesAndControlCharacters) {
  AuditRecord record = deny_record();
  const std::string path = std::string("/a\"b\\c\nd\te\x01\x1f\x7f/", 14) + std::string(1, '\0');
  record.set_path(path);
  record.identity.assign("who\"ever");
  const std::string line = format(record);
  EXPECT_NE(line.find(R"("path":"/a\"b\\c\u000ad\u0009e\u0001\u001f\u007f/\u0000")"),
            std::string::npos)
      << line;
  const json parsed = parse_line(line);
  EXPECT_EQ(parsed["path"], path);
  EXPECT_EQ(parsed["identity"], "who\"ever");
}

TEST(AuditFormatTest, ReplacesInvalidUtf8WithReplacementCharacter) {
  struct Case {
    std::string input;
    std::string expected;
  };
  const std::string fffd = "\xEF\xBF\xBD";
  const std::vector<Case> cases = {
      {"/caf\xC3\xA9/\xE2\x82\xAC/\xF0\x9F\x98\x80", "/caf\xC3\xA9/\xE2\x82\xAC/\xF0\x9F\x98\x80"},
      {"/a\xFF"
       "b",
       "/a" + fffd + "b"},
      {"/\xC3(", "/" + fffd + "("},                            // missing continuation
      {"/\xC0\xAF", "/" + fffd + fffd},                        // overlong '/'
      {"/\xED\xA0\x80", "/" + fffd + fffd + fffd},             // surrogate U+D800
      {"/\xF4\x90\x80\x80", "/" + fffd + fffd + fffd + fffd},  // above U+10FFFF
      {"/\xE2\x82", "/" + fffd + fffd},                        // truncated at the end
      {"/\x80", "/" + fffd},                                   // lone continuation
  };
  for (const Case& c : cases) {
    AuditRecord record = deny_record();
    record.set_path(c.input);
    record.set_model(c.input);
    const json parsed = parse_line(format(record));
    EXPECT_EQ(parsed["path"], c.expected) << c.input;
    EXPECT_EQ(parsed["model"], c.expected) << c.input;
  }
}

TEST(AuditFormatTest, TruncatesLongFieldsAndFlagsThem) {
  AuditRecord record = deny_record();
  record.set_path("/" + std::string(400, 'p'));
  record.set_model(std::string(100, 'm'));
  EXPECT_TRUE(record.identity.assign(std::string(60, 'i')));
  const json parsed = parse_line(format(record));
  EXPECT_EQ(parsed["path"], "/" + std::string(140, 'p'));
  EXPECT_EQ(parsed["path_truncated"], true);
  EXPECT_EQ(parsed["model"], std::string(64, 'm'));
  EXPECT_EQ(parsed["model_truncated"], true);
  EXPECT_EQ(parsed["identity"], std::string(48, 'i'));
}

TEST(AuditFormatTest, TruncationDoesNotSplitAUtf8Sequence) {
  AuditRecord record = deny_record();
  record.set_path(std::string(140, 'a') + "\xE2\x82\xAC");  // € straddles byte 141
  EXPECT_TRUE(record.path_truncated);
  EXPECT_EQ(record.path.size, 140);
  const json parsed = parse_line(format(record));
  EXPECT_EQ(parsed["path"], std::string(140, 'a'));
}

TEST(AuditFormatTest, WritesReportedUsageWithAbsentPartsAsNull) {
  AuditRecord record = deny_record();
  record.verdict = AuditVerdict::admit;
  record.tokens_reserved = 1174;
  record.tokens_charged = 163;
  record.usage_reported = true;
  record.usage_prompt_tokens = 147;
  record.usage_completion_tokens = 16;
  const json parsed = parse_line(format(record));
  EXPECT_EQ(parsed["tokens_reserved"], 1174);
  EXPECT_EQ(parsed["tokens_charged"], 163);
  EXPECT_EQ(parsed["usage"]["prompt_tokens"], 147);
  EXPECT_EQ(parsed["usage"]["completion_tokens"], 16);
  EXPECT_TRUE(parsed["usage"]["total_tokens"].is_null());
}

TEST(AuditFormatTest, ListsRuleIdsAndKeepsOnlyWholeOnes) {
  AuditRecord record = deny_record();
  EXPECT_TRUE(record.add_rule("pi.ignore-previous"));
  EXPECT_TRUE(record.add_rule("jb.dan"));
  EXPECT_EQ(parse_line(format(record))["rules"], json::array({"pi.ignore-previous", "jb.dan"}));
  EXPECT_FALSE(record.add_rule(std::string(200, 'x'))) << "an id that does not fit is left out";
  EXPECT_FALSE(record.add_rule(""));
  EXPECT_EQ(parse_line(format(record))["rules"].size(), 2u);
  while (record.add_rule("r.0123456789")) {
  }
  const json full = parse_line(format(record));
  EXPECT_GT(full["rules"].size(), 10u);
  for (const auto& id : full["rules"]) EXPECT_FALSE(id.get<std::string>().empty());
}

TEST(AuditFormatTest, WorstCaseRecordFitsMaxLineAndSmallBufferReturnsZero) {
  AuditRecord record = deny_record();
  record.identity.assign(std::string(48, '\x01'));
  record.tier.assign(std::string(24, '\x01'));
  record.reason.assign(std::string(48, '\x01'));
  record.method.assign(std::string(8, '\x01'));
  record.set_path(std::string(141, '\x01'));
  record.set_model(std::string(64, '\x01'));
  record.src = endpoint("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
  record.dst = record.src;
  record.request_bytes = record.prompt_tokens_est = UINT64_MAX;
  record.max_output_tokens = INT64_MAX;
  record.tokens_reserved = record.tokens_charged = UINT64_MAX;
  record.usage_reported = true;
  record.usage_prompt_tokens = record.usage_completion_tokens = record.usage_total_tokens =
      INT64_MAX;
  record.sequence = UINT64_MAX;
  record.rules.assign(std::string(160, '\x01'));
  record.prompt = AuditPrompt::kDropped;
  const AuditLineExtras extras{.prev = kAuditGenesis};
  std::vector<char> out(kMaxAuditLineBytes);
  const std::string line(out.data(), format_json_line(record, out, extras));
  EXPECT_LT(line.size(), kMaxAuditLineBytes);
  parse_line(line);
  std::vector<char> small(line.size() - 1);
  EXPECT_EQ(format_json_line(record, small, extras), 0u);
  std::vector<char> exact(line.size());
  EXPECT_EQ(format_json_line(record, exact, extras), line.size());
}

TEST(AuditFormatTest, WritesTheCapturedPromptEscapedAndTheChainLinkLast) {
  AuditRecord record = deny_record();
  record.prompt = AuditPrompt::kCaptured;
  const std::string prev(64, 'a');
  const std::string line = [&] {
    std::vector<char> out(max_audit_line_bytes(64));
    const AuditLineExtras extras{
        .prompt = "say \"hi\"\nthen \\ bye", .prompt_truncated = true, .prev = prev};
    return std::string(out.data(), format_json_line(record, out, extras));
  }();
  EXPECT_TRUE(line.ends_with(
      R"("tokens_charged":0,"prompt":"say \"hi\"\u000athen \\ bye","prompt_truncated":true,)"
      R"("prev":")" +
      prev + "\"}\n"))
      << line;
  const json parsed = parse_line(line);
  EXPECT_EQ(parsed["prompt"], "say \"hi\"\nthen \\ bye");
  EXPECT_EQ(audit_line_prev(std::string_view(line).substr(0, line.size() - 1)), prev);
}

TEST(AuditFormatTest, WritesADroppedPromptAsNullAndMarkedAndNoPromptKeyOtherwise) {
  AuditRecord record = deny_record();
  record.prompt = AuditPrompt::kDropped;
  EXPECT_TRUE(format(record).ends_with(R"("tokens_charged":0,"prompt":null,"prompt_dropped":true})"
                                       "\n"));
  record.prompt = AuditPrompt::kNone;
  EXPECT_EQ(format(record).find("prompt\""), std::string::npos);
}

TEST(AuditFormatTest, WorstCasePromptFitsItsMaxLine) {
  AuditRecord record = deny_record();
  record.prompt = AuditPrompt::kCaptured;
  const std::string prompt(65536, '\x01');  // each byte escaped as \u0001
  std::vector<char> out(max_audit_line_bytes(prompt.size()));
  const std::size_t n = format_json_line(record, out, {.prompt = prompt, .prev = kAuditGenesis});
  ASSERT_GT(n, 6 * prompt.size());
  EXPECT_EQ(parse_line(std::string(out.data(), n))["prompt"], prompt);
}

// ---- chain -----------------------------------------------------------------------------------

TEST(AuditChainTest, StartsAtGenesisAndLinksBySha256OfTheLine) {
  AuditChain chain;
  EXPECT_EQ(chain.prev(), kAuditGenesis);
  EXPECT_EQ(chain.prev(), std::string(64, '0'));
  chain.advance("abc");  // FIPS 180-2, appendix B.1
  EXPECT_EQ(chain.prev(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  chain.advance("");
  EXPECT_EQ(chain.prev(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_TRUE(chain.set_prev("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
  EXPECT_EQ(chain.prev(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_FALSE(chain.set_prev("xyz"));
  EXPECT_FALSE(chain.set_prev(std::string(63, '0') + "g"));
  EXPECT_EQ(chain.prev(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(AuditChainTest, FindsTheLinkOnlyAtTheEndOfALine) {
  const std::string hex(64, 'f');
  EXPECT_EQ(audit_line_prev(R"({"a":1,"prev":")" + hex + "\"}"), hex);
  EXPECT_EQ(audit_line_prev(R"({"a":1,"prev":")" + hex + "\",\"b\":2}"), "");
  EXPECT_EQ(audit_line_prev(R"({"a":1,"prev":")" + std::string(64, 'F') + "\"}"), "")
      << "lowercase only, as written";
  EXPECT_EQ(audit_line_prev(R"({"a":1,"prev":")" + hex.substr(1) + "\"}"), "");
  EXPECT_EQ(audit_line_prev(""), "");
}

// ---- capture pool ----------------------------------------------------------------------------

TEST(AuditCapturePoolTest, HandsOutEachSlotOnceUntilItComesBack) {
  AuditCapturePool pool(AuditCapture::kAll, 3, 16);
  std::vector<int32_t> taken;
  for (int i = 0; i < 3; ++i) taken.push_back(pool.acquire());
  std::sort(taken.begin(), taken.end());
  EXPECT_EQ(taken, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(pool.acquire(), AuditCapturePool::kNoSlot);
  pool.give_back(1);  // the writer's return
  EXPECT_EQ(pool.acquire(), 1);
  pool.release(2);  // the worker's own
  EXPECT_EQ(pool.acquire(), 2);
  int refills = 0;
  pool.set_refill([&] {
    ++refills;
    pool.give_back(0);
  });
  EXPECT_EQ(pool.acquire(), 0) << "a refill that returns a slot";
  EXPECT_EQ(refills, 1);
  EXPECT_THROW(AuditCapturePool(AuditCapture::kAll, 0, 16), std::invalid_argument);
  EXPECT_THROW(AuditCapturePool(AuditCapture::kAll, 65536, 16), std::invalid_argument);
}

TEST(AuditCapturePoolTest, AppendsUpToTheCapCuttingOnACharacterBoundary) {
  AuditCapturePool pool(AuditCapture::kAll, 1, 8);
  const auto slot = static_cast<uint16_t>(pool.acquire());
  pool.append(slot, "abc");
  pool.append(slot, "de");
  EXPECT_EQ(pool.text(slot), "abcde");
  EXPECT_FALSE(pool.truncated(slot));
  pool.append(slot, "f\xE2\x82\xAC");  // f€: the euro sign would end at byte 9
  EXPECT_EQ(pool.text(slot), "abcdef");
  EXPECT_TRUE(pool.truncated(slot));
  pool.append(slot, "g");
  EXPECT_EQ(pool.text(slot), "abcdef") << "nothing after a cut";
  pool.release(slot);
  EXPECT_EQ(pool.acquire(), slot);
  EXPECT_EQ(pool.text(slot), "") << "a slot taken again starts empty";
  EXPECT_FALSE(pool.truncated(slot));
}

// ---- ring ------------------------------------------------------------------------------------

TEST(AuditRingTest, RejectsCapacityThatIsNotAPowerOfTwo) {
  EXPECT_THROW(AuditRing(0), std::invalid_argument);
  EXPECT_THROW(AuditRing(1), std::invalid_argument);
  EXPECT_THROW(AuditRing(6), std::invalid_argument);
  EXPECT_NO_THROW(AuditRing(8));
}

TEST(AuditRingTest, FullRingRefusesAndOverwritesNothing) {
  AuditRing ring(4);
  AuditRecord record;
  for (uint64_t i = 0; i < 4; ++i) {
    record.sequence = i;
    EXPECT_TRUE(ring.try_push(record));
  }
  record.sequence = 99;
  EXPECT_FALSE(ring.try_push(record));
  EXPECT_FALSE(ring.try_push(record));
  EXPECT_EQ(ring.dropped(), 2u);
  std::vector<AuditRecord> out(8);
  ASSERT_EQ(ring.pop_batch(out), 4u);
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(out[i].sequence, i);
  EXPECT_EQ(ring.pop_batch(out), 0u);
  record.sequence = 4;
  EXPECT_TRUE(ring.try_push(record));  // room again after the pop
  ASSERT_EQ(ring.pop_batch(out), 1u);
  EXPECT_EQ(out[0].sequence, 4u);
}

TEST(AuditRingTest, ConcurrentProducerAndConsumerSeeEveryRecordOnceInOrder) {
  constexpr uint64_t kRecords = 1'000'000;
  AuditRing ring(1024);
  std::thread producer([&] {
    AuditRecord record;
    for (uint64_t i = 0; i < kRecords; ++i) {
      record.sequence = i;
      record.request_bytes = i * 3;  // a second field, to catch torn copies
      while (!ring.try_push(record)) std::this_thread::yield();
    }
  });
  std::vector<AuditRecord> out(100);
  uint64_t expected = 0;
  bool in_order = true;
  while (expected < kRecords && in_order) {
    const std::size_t n = ring.pop_batch(out);
    if (n == 0) std::this_thread::yield();
    for (std::size_t i = 0; i < n; ++i) {
      if (out[i].sequence != expected || out[i].request_bytes != expected * 3) in_order = false;
      ++expected;
    }
  }
  producer.join();
  EXPECT_TRUE(in_order) << "at record " << expected;
  EXPECT_EQ(expected, kRecords);
  EXPECT_EQ(ring.pop_batch(out), 0u) << "nothing duplicated";
  EXPECT_EQ(ring.pushed(), kRecords);
}

TEST(AuditRingTest, PushOrDiscardFreesTheCapturedSlotOfARefusedRecord) {
  AuditRing ring(2);
  ring.enable_capture(AuditCapture::kAll, 1, 16);
  AuditCapturePool& pool = *ring.capture();
  AuditRecord record;
  EXPECT_TRUE(ring.push_or_discard(record));
  EXPECT_TRUE(ring.push_or_discard(record));
  record.prompt = AuditPrompt::kCaptured;
  record.prompt_slot = static_cast<uint16_t>(pool.acquire());
  EXPECT_EQ(pool.acquire(), AuditCapturePool::kNoSlot);
  EXPECT_FALSE(ring.push_or_discard(record));
  EXPECT_EQ(ring.dropped(), 1u);
  EXPECT_EQ(pool.acquire(), record.prompt_slot) << "back in the pool";
  AuditRing plain(2);
  EXPECT_EQ(plain.capture(), nullptr);
}

// ---- writer ----------------------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sluice-audit-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line + "\n");
  return lines;
}

// NAME.k … NAME.1, NAME: oldest first.
std::vector<std::string> files_in_rotation_order(const std::string& name) {
  std::vector<std::string> files;
  for (unsigned k = 1; std::filesystem::exists(name + "." + std::to_string(k)); ++k) {
    files.insert(files.begin(), name + "." + std::to_string(k));
  }
  if (std::filesystem::exists(name)) files.push_back(name);
  return files;
}

bool io_uring_available() {
  io_uring ring;
  if (io_uring_queue_init(2, &ring, 0) != 0) return false;
  io_uring_queue_exit(&ring);
  return true;
}

// Where the chain over `files` (oldest first) breaks: "" when every line links to the one
// before it, from the genesis value; else "FILE:LINE".
std::string chain_break(const std::vector<std::string>& files) {
  AuditChain chain;
  for (const std::string& file : files) {
    uint64_t number = 0;
    for (const std::string& line : read_lines(file)) {
      ++number;
      const std::string_view text(line.data(), line.size() - 1);
      if (audit_line_prev(text) != chain.prev()) return file + ":" + std::to_string(number);
      chain.advance(text);
    }
  }
  return "";
}

AuditRecord numbered(uint16_t worker, uint64_t sequence) {
  AuditRecord record = deny_record();
  record.worker = worker;
  record.sequence = sequence;
  return record;
}

class AuditWriterTest : public ::testing::TestWithParam<bool> {  // param: force_pwrite
 protected:
  AuditWriterConfig config(const std::string& path) const {
    AuditWriterConfig result;
    result.path = path;
    result.force_pwrite = GetParam();
    return result;
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, AuditWriterTest, ::testing::Values(false, true),
                         [](const auto& param_info) {
                           return param_info.param ? "pwrite" : "io_uring";
                         });

TEST_P(AuditWriterTest, ReportsWhichBackendRan) {
  TempDir dir;
  AuditWriter writer(config(dir.file("audit.jsonl")));
  EXPECT_EQ(writer.backend_description(), "not started");
  writer.start();
  const std::string description = writer.backend_description();
  std::cout << "[ audit    ] backend: " << description << "\n";
  RecordProperty("audit_backend", description);
  if (GetParam()) {
    EXPECT_EQ(writer.backend(), AuditBackend::pwrite);
    EXPECT_EQ(description, "pwrite (io_uring disabled by config)");
  } else if (io_uring_available()) {
    EXPECT_EQ(writer.backend(), AuditBackend::io_uring);
    EXPECT_EQ(description, "io_uring");
  } else {
    EXPECT_EQ(writer.backend(), AuditBackend::pwrite);
    EXPECT_EQ(description.rfind("pwrite (io_uring_queue_init: ", 0), 0u) << description;
  }
  writer.stop();
}

TEST_P(AuditWriterTest, FlushWritesEverythingPushedBeforeIt) {
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  AuditRing ring(64);
  AuditWriter writer(config(path));
  writer.add_ring(ring);
  writer.start();
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(ring.try_push(numbered(0, i)));
  writer.flush();
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 10u);
  for (uint64_t i = 0; i < 10; ++i) EXPECT_EQ(parse_line(lines[i])["seq"], i);
  EXPECT_EQ(writer.stats().records_written, 10u);
  EXPECT_EQ(writer.stats().bytes_written, std::filesystem::file_size(path));
  writer.stop();
  writer.flush();  // after stop: returns at once
}

TEST_P(AuditWriterTest, StopDrainsRecordsStillInTheRings) {
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  AuditRing first(4096), second(4096);
  AuditWriter writer(config(path));
  writer.add_ring(first);
  writer.add_ring(second);
  writer.start();
  for (uint64_t i = 0; i < 3000; ++i) {
    ASSERT_TRUE(first.try_push(numbered(0, i)));
    ASSERT_TRUE(second.try_push(numbered(1, i)));
  }
  writer.stop();
  EXPECT_EQ(read_lines(path).size(), 6000u);
  EXPECT_EQ(writer.stats().records_written, 6000u);
  EXPECT_EQ(writer.stats().records_dropped, 0u);
}

TEST_P(AuditWriterTest, AppendsToAnExistingLogOnRestart) {
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  for (int run = 0; run < 2; ++run) {
    AuditRing ring(16);
    AuditWriter writer(config(path));
    writer.add_ring(ring);
    writer.start();
    for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(ring.try_push(numbered(0, run * 5 + i)));
  }  // the destructor stops
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 10u);
  for (uint64_t i = 0; i < 10; ++i) EXPECT_EQ(parse_line(lines[i])["seq"], i);
}

TEST_P(AuditWriterTest, ChainsEveryLineToThePreviousFromGenesis) {
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  AuditRing ring(256);
  AuditWriter writer(config(path));
  writer.add_ring(ring);
  writer.start();
  for (uint64_t i = 0; i < 200; ++i) ASSERT_TRUE(ring.try_push(numbered(0, i)));
  writer.stop();
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 200u);
  EXPECT_EQ(parse_line(lines[0])["prev"], std::string(kAuditGenesis));
  EXPECT_EQ(chain_break({path}), "");
  AuditChain chain;
  chain.advance(std::string_view(lines[0]).substr(0, lines[0].size() - 1));
  EXPECT_EQ(parse_line(lines[1])["prev"], std::string(chain.prev()));
}

TEST_P(AuditWriterTest, TheChainGoesOnAcrossRotationsAndRestarts) {
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  AuditWriterConfig cfg = config(path);
  cfg.max_file_bytes = 8192;
  cfg.keep = 1000;
  uint64_t sequence = 0;
  for (int run = 0; run < 3; ++run) {
    AuditRing ring(1024);
    AuditWriter writer(cfg);
    writer.add_ring(ring);
    writer.start();
    for (int i = 0; i < 60; ++i) ASSERT_TRUE(ring.try_push(numbered(0, sequence++)));
  }
  const auto files = files_in_rotation_order(path);
  EXPECT_GT(files.size(), 5u);
  EXPECT_EQ(chain_break(files), "");
  uint64_t lines = 0;
  for (const std::string& file : files) lines += read_lines(file).size();
  EXPECT_EQ(lines, sequence);
  // Without the oldest file the trail does not start at genesis.
  EXPECT_EQ(chain_break({files.begin() + 1, files.end()}), files[1] + ":1");
}

TEST_P(AuditWriterTest, RestartCutsATornLastLineAndChainsToTheLastCompleteOne) {
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  {
    AuditRing ring(16);
    AuditWriter writer(config(path));
    writer.add_ring(ring);
    writer.start();
    for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(ring.try_push(numbered(0, i)));
  }
  const std::string torn = R"({"ts":"2026-11-28T19:30:00.123Z","seq":3,"wor)";
  {
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << torn;
  }
  AuditRing ring(16);
  AuditWriter writer(config(path));
  writer.add_ring(ring);
  writer.start();
  ASSERT_TRUE(ring.try_push(numbered(0, 4)));
  writer.stop();
  EXPECT_EQ(writer.stats().torn_bytes_cut, torn.size());
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(parse_line(lines[3])["seq"], 4);
  EXPECT_EQ(chain_break({path}), "");
}

TEST_P(AuditWriterTest, RestartOnALogWithoutANewlineStartsItAfresh) {
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\"torn";
  }
  AuditRing ring(16);
  AuditWriter writer(config(path));
  writer.add_ring(ring);
  writer.start();
  ASSERT_TRUE(ring.try_push(numbered(0, 0)));
  writer.stop();
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(parse_line(lines[0])["prev"], std::string(kAuditGenesis));
}

TEST_P(AuditWriterTest, WritesCapturedPromptsAndReturnsTheirSlots) {
  constexpr uint64_t kRecords = 2000;
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  AuditRing ring(64);
  ring.enable_capture(AuditCapture::kAll, 4, 64);
  AuditCapturePool& pool = *ring.capture();
  AuditWriter writer(config(path));
  writer.add_ring(ring);
  writer.start();
  std::thread worker([&] {
    for (uint64_t i = 0; i < kRecords; ++i) {
      AuditRecord record = numbered(0, i);
      int32_t slot;
      while ((slot = pool.acquire()) == AuditCapturePool::kNoSlot) std::this_thread::yield();
      pool.append(static_cast<uint16_t>(slot), "prompt \"" + std::to_string(i) + "\"");
      if (i % 3 == 0) pool.append(static_cast<uint16_t>(slot), std::string(100, 'x'));
      record.prompt = AuditPrompt::kCaptured;
      record.prompt_slot = static_cast<uint16_t>(slot);
      while (!ring.try_push(record)) std::this_thread::yield();
    }
  });
  worker.join();
  writer.stop();
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), kRecords);
  for (uint64_t i = 0; i < kRecords; ++i) {
    const json parsed = parse_line(lines[i]);
    const std::string expected = "prompt \"" + std::to_string(i) + "\"";
    if (i % 3 == 0) {
      EXPECT_EQ(parsed["prompt"], (expected + std::string(100, 'x')).substr(0, 64));
      EXPECT_EQ(parsed["prompt_truncated"], true);
    } else {
      EXPECT_EQ(parsed["prompt"], expected);
      EXPECT_EQ(parsed["prompt_truncated"], false);
    }
  }
  EXPECT_EQ(chain_break({path}), "");
}

TEST_P(AuditWriterTest, TwoWorkersWithTinyRingsAndFilesDropCountRotateAndKeepOrder) {
  constexpr uint64_t kAttemptsPerWorker = 100'000;
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  AuditWriterConfig cfg = config(path);
  // Small enough that the 128 records the two rings hold at first already fill 3 files,
  // however little CPU the writer gets on a loaded 2-core box.
  cfg.max_file_bytes = 16 << 10;
  cfg.buffer_bytes = 8 << 10;
  cfg.keep = 100'000;  // keep every file, to count them all
  cfg.idle_sleep_us = 100;
  AuditRing rings[2] = {AuditRing(64), AuditRing(64)};
  AuditWriter writer(cfg);
  writer.add_ring(rings[0]);
  writer.add_ring(rings[1]);
  writer.start();
  uint64_t refused[2] = {0, 0};  // what each worker saw try_push refuse
  std::vector<std::thread> workers;
  for (uint16_t w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      for (uint64_t i = 0; i < kAttemptsPerWorker; ++i) {
        if (!rings[w].try_push(numbered(w, i))) ++refused[w];
        // Pace the workers a little so that, on 2 cores, the writer drains some and drops
        // are a fraction, not nearly all.
        if (i % 32 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    });
  }
  for (auto& worker : workers) worker.join();
  writer.stop();

  const AuditWriterStats stats = writer.stats();
  EXPECT_EQ(stats.records_dropped, refused[0] + refused[1]);
  EXPECT_GT(stats.records_dropped, 0u) << "a 64-record ring under 100k pushes drops some";
  EXPECT_EQ(stats.records_written + stats.records_dropped, 2 * kAttemptsPerWorker);
  EXPECT_EQ(stats.records_lost, 0u);
  EXPECT_EQ(stats.write_errors, 0u);
  EXPECT_EQ(stats.format_errors, 0u);

  const auto files = files_in_rotation_order(path);
  EXPECT_EQ(files.size(), stats.rotations + 1);
  EXPECT_GT(stats.rotations, 0u);
  uint64_t lines_total = 0, bytes_total = 0;
  int64_t last_sequence[2] = {-1, -1};
  for (const std::string& file : files) {
    const uint64_t size = std::filesystem::file_size(file);
    bytes_total += size;
    EXPECT_LE(size, cfg.max_file_bytes) << file;
    for (const std::string& line : read_lines(file)) {
      const json parsed = parse_line(line);
      const int worker = parsed["worker"];
      const int64_t sequence = parsed["seq"];
      ASSERT_TRUE(worker == 0 || worker == 1);
      ASSERT_GT(sequence, last_sequence[worker]) << file;
      last_sequence[worker] = sequence;
      ++lines_total;
    }
  }
  EXPECT_EQ(lines_total, stats.records_written);
  EXPECT_EQ(bytes_total, stats.bytes_written);
  std::cout << "[ audit    ] " << writer.backend_description() << ": written "
            << stats.records_written << ", dropped " << stats.records_dropped << ", rotations "
            << stats.rotations << "\n";
}

TEST_P(AuditWriterTest, KeepsOnlyTheConfiguredNumberOfRotatedFiles) {
  TempDir dir;
  const std::string path = dir.file("audit.jsonl");
  AuditWriterConfig cfg = config(path);
  cfg.max_file_bytes = 4096;
  cfg.keep = 2;
  AuditRing ring(1024);
  AuditWriter writer(cfg);
  writer.add_ring(ring);
  writer.start();
  for (uint64_t i = 0; i < 500; ++i) ASSERT_TRUE(ring.try_push(numbered(0, i)));
  writer.stop();
  EXPECT_GT(writer.stats().rotations, 3u);
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::exists(path + ".1"));
  EXPECT_TRUE(std::filesystem::exists(path + ".2"));
  EXPECT_FALSE(std::filesystem::exists(path + ".3"));
  // The newest records survive, in order, ending with the last one pushed.
  int64_t last = -1;
  for (const std::string& file : files_in_rotation_order(path)) {
    for (const std::string& line : read_lines(file)) {
      const int64_t sequence = parse_line(line)["seq"];
      EXPECT_GT(sequence, last);
      last = sequence;
    }
  }
  EXPECT_EQ(last, 499);
}

TEST_P(AuditWriterTest, StartNamesTheFileItCannotOpen) {
  AuditWriterConfig cfg = config("/nonexistent-sluice-dir/audit.jsonl");
  AuditWriter writer(cfg);
  try {
    writer.start();
    FAIL() << "start() should throw";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("/nonexistent-sluice-dir/audit.jsonl"),
              std::string::npos)
        << error.what();
  }
}

// Not a benchmark (sanitizers and a shared 2-core box), a sanity figure printed with the
// backend: one producer, a ring large enough never to drop, records/s from start to stop().
TEST_P(AuditWriterTest, ReportsThroughput) {
  constexpr uint64_t kRecords = 300'000;
  TempDir dir;
  AuditWriterConfig cfg = config(dir.file("audit.jsonl"));
  AuditRing ring(1 << 14);
  AuditWriter writer(cfg);
  writer.add_ring(ring);
  writer.start();
  const auto begin = std::chrono::steady_clock::now();
  std::thread producer([&] {
    for (uint64_t i = 0; i < kRecords; ++i) {
      const AuditRecord record = numbered(0, i);
      while (!ring.try_push(record)) std::this_thread::yield();
    }
  });
  producer.join();
  writer.stop();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  const AuditWriterStats stats = writer.stats();
  EXPECT_EQ(stats.records_written, kRecords);
  std::cout << "[ audit    ] " << writer.backend_description() << ": "
            << static_cast<uint64_t>(kRecords / seconds) << " records/s, "
            << static_cast<uint64_t>(stats.bytes_written / seconds / 1e6) << " MB/s ("
            << stats.bytes_written / kRecords << " B/line)\n";
}

}  // namespace
}  // namespace sluice
