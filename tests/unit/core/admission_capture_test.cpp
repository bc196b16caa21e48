// Prompt capture (audit.capture) in the data path: requests through the real HTTP stage into
// admission, whose records carry the canonical prompt text the rules scanned — for flagged
// requests only (a rule of any action or mode matched), for all, or none — in slots of a
// per-worker AuditCapturePool, handed to the writer with the record and returned by it.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "sluice/admission.hpp"
#include "sluice/http_stage.hpp"
#include "sluice/identity.hpp"
#include "sluice/rules_loader.hpp"

namespace sluice {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;

const char* const kRules = R"(
ruleset: capture-test
version: "1"
rules:
  - id: cap.block
    description: Blocked words
    pattern: 'forbidden\swords'
    scope: prompt
    action: block
    examples: { match: ["some forbidden words"], no_match: ["fine words"] }
  - id: cap.flag
    description: Flagged for review
    pattern: 'review\sme'
    scope: prompt
    action: flag
    examples: { match: ["please review me"], no_match: ["review"] }
  - id: cap.log
    description: Logged only
    pattern: 'log\sme'
    scope: prompt
    action: log
    examples: { match: ["log me"], no_match: ["log"] }
  - id: cap.shadow
    description: A shadow rule under trial
    pattern: 'shadowy'
    scope: prompt
    action: block
    mode: shadow
    examples: { match: ["a shadowy figure"], no_match: ["shadow"] }
)";

// The writer's part: a captured record's text is read from the pool, then its slot returned.
class CapturingSink final : public AuditSink {
 public:
  CapturingSink(AuditCapture mode, uint32_t slots, uint32_t slot_bytes)
      : pool(mode, slots, slot_bytes) {}
  void write(const AuditRecord& record) override {
    records.push_back(record);
    prompts.emplace_back();
    truncated.push_back(false);
    if (record.prompt == AuditPrompt::kCaptured) {
      prompts.back() = pool.text(record.prompt_slot);
      truncated.back() = pool.truncated(record.prompt_slot);
      pool.give_back(record.prompt_slot);
    }
  }
  AuditCapturePool* capture_pool() override { return &pool; }

  AuditCapturePool pool;
  std::vector<AuditRecord> records;
  std::vector<std::string> prompts;  // "" unless captured
  std::vector<bool> truncated;
};

std::shared_ptr<const AdmissionPolicy> make_policy(LimiterStore& store) {
  const Config config = load_config_text(
      "identities: i.yaml\ntiers:\n"
      "  verified: { requests_per_second: 1000, burst: 1000, tokens_per_minute: 1000000,"
      " token_burst: 100000, max_concurrent: 100, max_body_bytes: 100000,"
      " max_output_tokens: 100 }\n",
      "capture.yaml");
  std::vector<Identity> identities{Identity{"acme", "verified", {sha256_of("k-acme")}, {}, {}}};
  return build_policy(config, std::make_shared<const IdentityTable>(std::move(identities)), store,
                      compile_rules(load_rules_text(kRules, "capture-rules.yaml")).database, 1);
}

// A chat request whose messages are `contents` (JSON string contents, escapes allowed).
std::string request(const std::vector<std::string>& contents) {
  std::string messages;
  for (const std::string& content : contents)
    messages += (messages.empty() ? "" : ",") + std::string(R"({"role":"user","content":")") +
                content + "\"}";
  const std::string body = R"({"model":"m","messages":[)" + messages + "]}";
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer k-acme\r\n"
         "Content-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

const std::string kResponseBody = R"({"choices":[{"message":{"content":"ok"}}]})";
const std::string kResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
    std::to_string(kResponseBody.size()) + "\r\n\r\n" + kResponseBody;

class Records final : public AuditSink {  // no capture_pool(): capture is off
 public:
  void write(const AuditRecord& record) override { records.push_back(record); }
  std::vector<AuditRecord> records;
};

class CaptureTest : public ::testing::Test {
 protected:
  void start(AuditCapture mode, uint32_t slots = 16, uint32_t slot_bytes = 4096) {
    sink_ = std::make_unique<CapturingSink>(mode, slots, slot_bytes);
    admission_ = std::make_unique<Admission>(source_, sink_.get(), 0, 0);
    stage_ = std::make_unique<HttpStage>(&config_, *admission_);
  }
  StreamVerdict send(uint32_t flow, Direction direction, const std::string& bytes) {
    return stage_->on_data(flow, direction,
                           {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, kSecond);
  }
  // One request on its own flow, answered when admitted, then the flow closed.
  StreamVerdict exchange(uint32_t flow, const std::vector<std::string>& contents) {
    stage_->on_open(flow, {});
    const StreamVerdict verdict = send(flow, Direction::kToServer, request(contents));
    if (verdict == StreamVerdict::kContinue) send(flow, Direction::kToClient, kResponse);
    stage_->on_close(flow);
    return verdict;
  }

  LimiterStore store_;
  PolicySource source_{make_policy(store_)};
  const HttpStageConfig config_;
  std::unique_ptr<CapturingSink> sink_;
  std::unique_ptr<Admission> admission_;
  std::unique_ptr<HttpStage> stage_;
};

TEST_F(CaptureTest, CaptureAllKeepsEveryPromptAsTheRulesScannedIt) {
  start(AuditCapture::kAll);
  // Canonical text: NFKC (the fullwidth "Ｈｉ" → "Hi"), whitespace runs → one space, one
  // newline between message fields.
  EXPECT_EQ(exchange(1, {"\\uff28\\uff49   there", "second\\tmessage"}), StreamVerdict::kContinue);
  EXPECT_EQ(exchange(2, {"some forbidden words"}), StreamVerdict::kDeny);
  ASSERT_EQ(sink_->records.size(), 2u);
  EXPECT_EQ(sink_->records[0].verdict, AuditVerdict::admit);
  EXPECT_EQ(sink_->records[0].prompt, AuditPrompt::kCaptured);
  EXPECT_EQ(sink_->prompts[0], "Hi there\nsecond message");
  EXPECT_FALSE(sink_->truncated[0]);
  EXPECT_EQ(sink_->records[1].verdict, AuditVerdict::deny);
  EXPECT_EQ(sink_->records[1].prompt, AuditPrompt::kCaptured);
  EXPECT_EQ(sink_->prompts[1], "some forbidden words");
}

TEST_F(CaptureTest, CaptureFlaggedKeepsOnlyPromptsARuleOfAnyActionOrModeMatched) {
  start(AuditCapture::kFlagged);
  EXPECT_EQ(exchange(1, {"nothing to see"}), StreamVerdict::kContinue);
  EXPECT_EQ(exchange(2, {"please review me"}), StreamVerdict::kContinue);
  EXPECT_EQ(exchange(3, {"some forbidden words"}), StreamVerdict::kDeny);
  EXPECT_EQ(exchange(4, {"log me"}), StreamVerdict::kContinue);
  EXPECT_EQ(exchange(5, {"a shadowy plan"}), StreamVerdict::kContinue);
  ASSERT_EQ(sink_->records.size(), 5u);
  EXPECT_EQ(sink_->records[0].prompt, AuditPrompt::kNone) << "no rule matched";
  const char* const expected[] = {"please review me", "some forbidden words", "log me",
                                  "a shadowy plan"};
  for (std::size_t i = 1; i < 5; ++i) {
    EXPECT_EQ(sink_->records[i].prompt, AuditPrompt::kCaptured) << i;
    EXPECT_EQ(sink_->prompts[i], expected[i - 1]);
    EXPECT_FALSE(sink_->records[i].rules.empty());
  }
}

TEST_F(CaptureTest, CaptureNoneWritesNoPrompt) {
  Records records;
  Admission admission(source_, &records, 0, 0);
  HttpStage stage(&config_, admission);
  stage.on_open(1, {});
  const std::string bytes = request({"please review me"});
  stage.on_data(1, Direction::kToServer,
                {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, kSecond);
  stage.on_close(1);
  ASSERT_EQ(records.records.size(), 1u);
  EXPECT_EQ(records.records[0].prompt, AuditPrompt::kNone);
}

TEST_F(CaptureTest, APromptLongerThanTheCapIsCutOnACharacterBoundaryAndMarked) {
  start(AuditCapture::kAll, 16, 64);
  // 62 ASCII bytes, then "é" (2 bytes) would straddle byte 64 only with one more: use "€" (3).
  const std::string head(62, 'a');
  EXPECT_EQ(exchange(1, {head + "\\u20acbbbb"}), StreamVerdict::kContinue);
  EXPECT_EQ(exchange(2, {std::string(64, 'c')}), StreamVerdict::kContinue);
  ASSERT_EQ(sink_->records.size(), 2u);
  EXPECT_EQ(sink_->prompts[0], head) << "the euro sign would not fit whole";
  EXPECT_TRUE(sink_->truncated[0]);
  EXPECT_EQ(sink_->prompts[1], std::string(64, 'c')) << "exactly the cap: whole";
  EXPECT_FALSE(sink_->truncated[1]);
}

TEST_F(CaptureTest, ARequestThatFindsNoFreeSlotIsRecordedWithoutItsPromptAndCounted) {
  start(AuditCapture::kAll, 1, 64);
  // Flow 1 is admitted and awaits its response: its slot stays taken.
  stage_->on_open(1, {});
  ASSERT_EQ(send(1, Direction::kToServer, request({"first"})), StreamVerdict::kContinue);
  EXPECT_EQ(exchange(2, {"second"}), StreamVerdict::kContinue);
  send(1, Direction::kToClient, kResponse);
  stage_->on_close(1);
  ASSERT_EQ(sink_->records.size(), 2u);
  EXPECT_EQ(sink_->records[0].prompt, AuditPrompt::kDropped) << "flow 2's, recorded first";
  EXPECT_EQ(sink_->records[1].prompt, AuditPrompt::kCaptured);
  EXPECT_EQ(sink_->prompts[1], "first");
  EXPECT_EQ(sink_->pool.dropped(), 1u);
  EXPECT_EQ(exchange(3, {"third"}), StreamVerdict::kContinue) << "the slot came back";
  EXPECT_EQ(sink_->records.back().prompt, AuditPrompt::kCaptured);
}

TEST_F(CaptureTest, SlotsComeBackFromUnselectedRequestsAndClosedFlows) {
  start(AuditCapture::kFlagged, 2, 64);
  for (uint32_t flow = 1; flow <= 50; ++flow) {
    // A flow cut mid-body: its request is never decided, its slot is freed.
    stage_->on_open(1000 + flow, {});
    const std::string bytes = request({"cut short"});
    send(1000 + flow, Direction::kToServer, bytes.substr(0, bytes.size() - 3));
    stage_->on_close(1000 + flow);
    EXPECT_EQ(exchange(flow, {flow % 2 == 0 ? "review me" : "clean"}), StreamVerdict::kContinue);
  }
  EXPECT_EQ(sink_->pool.dropped(), 0u);
  ASSERT_EQ(sink_->records.size(), 50u);
  for (std::size_t i = 0; i < 50; ++i)
    EXPECT_EQ(sink_->records[i].prompt, i % 2 == 1 ? AuditPrompt::kCaptured : AuditPrompt::kNone);
}

}  // namespace
}  // namespace sluice
