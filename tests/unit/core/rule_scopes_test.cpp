// The `header:<name>` and `completion` scopes in the data path: bytes through the real HTTP stage
// into admission with a rule set compiled by the real compiler, and what comes out — the
// verdicts the tracker acts on, the answer or the SSE error event, and the audit records.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
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
ruleset: scopes-test
version: "1"
rules:
  - id: hdr.scanner-agent
    description: A vulnerability scanner's user agent
    pattern: 'sqlmap|nikto'
    flags: [caseless]
    scope: header:user-agent
    action: block
    tiers: [free]
    examples: { match: ["sqlmap/1.7"], no_match: ["curl/8.0"] }
  - id: hdr.title-flag
    description: An application title worth a look
    pattern: 'red\s*team'
    flags: [caseless]
    scope: header:x-title
    action: flag
    examples: { match: ["Red Team tool"], no_match: ["blue"] }
  - id: out.private-key
    description: A private key in a completion
    pattern: 'BEGIN (RSA |EC )?PRIVATE KEY'
    scope: completion
    action: block
    examples: { match: ["-----BEGIN RSA PRIVATE KEY-----"], no_match: ["public key"] }
  - id: out.weapons-flag
    description: Completions about weapons, flagged for review
    pattern: 'nerve\s+agent'
    flags: [caseless]
    scope: completion
    action: flag
    tiers: [verified]
    examples: { match: ["a nerve agent"], no_match: ["nervous"] }
  - id: out.launch-code
    description: A launch code (its end is decided by the byte after it)
    pattern: 'launch code [0-9]+\b'
    scope: completion
    action: block
    examples: { match: ["the launch code 1234."], no_match: ["launch code"] }
  - id: out.key-header
    description: The shipped private key header rule (rules/secrets.yaml)
    pattern: '-----BEGIN\s([A-Z0-9]+\s){0,3}PRIVATE\sKEY(\sBLOCK)?-----'
    scope: completion
    action: block
    examples: { match: ["-----BEGIN OPENSSH PRIVATE KEY-----"], no_match: ["-----BEGIN KEY-----"] }
)";

class Records final : public AuditSink {
 public:
  void write(const AuditRecord& record) override { records.push_back(record); }
  std::vector<AuditRecord> records;
};

std::shared_ptr<const RuleDatabase> compile(const char* text) {
  return compile_rules(load_rules_text(text, "scopes.yaml")).database;
}

// With `previous`, the workers' scratch is built to fit its rules too, as a reload does.
std::shared_ptr<const AdmissionPolicy> make_policy(LimiterStore& store,
                                                   std::shared_ptr<const RuleDatabase> db,
                                                   const AdmissionPolicy* previous = nullptr) {
  const Config config = load_config_text(
      "identities: i.yaml\ntiers:\n"
      "  free: { requests_per_second: 1000, burst: 1000, tokens_per_minute: 1000000,"
      " token_burst: 100000, max_concurrent: 1, max_body_bytes: 100000, max_output_tokens: 100 }\n"
      "  verified: { requests_per_second: 1000, burst: 1000, tokens_per_minute: 1000000,"
      " token_burst: 100000, max_concurrent: 1, max_body_bytes: 100000, max_output_tokens: 100 }\n",
      "scopes.yaml");
  std::vector<Identity> identities{Identity{"hobby", "free", {sha256_of("k-free")}, {}, {}},
                                   Identity{"acme", "verified", {sha256_of("k-acme")}, {}, {}}};
  return build_policy(config, std::make_shared<const IdentityTable>(std::move(identities)), store,
                      std::move(db), 1, previous);
}

std::string request(std::string_view key, std::string_view headers_before = "",
                    std::string_view headers_after = "") {
  const std::string body = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n" + std::string(headers_before) +
         "Authorization: Bearer " + std::string(key) + "\r\n" + std::string(headers_after) +
         "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

std::string chunk(std::string_view data) {
  char size[24];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + std::string(data) + "\r\n";
}

std::string delta(std::string_view content) {
  return chunk("data: {\"choices\":[{\"delta\":{\"content\":\"" + std::string(content) +
               "\"}}]}\n\n");
}

const std::string kStreamHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

std::string json_response(std::string_view content) {
  const std::string body = R"({"choices":[{"message":{"content":")" + std::string(content) +
                           R"("}}],"usage":{"total_tokens":5}})";
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::vector<std::string> rule_ids(const AuditRecord& record) {
  std::vector<std::string> ids;
  std::string_view rest = record.rules.view();
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find('\n'), rest.size());
    ids.emplace_back(rest.substr(0, end));
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  return ids;
}

class RuleScopesTest : public ::testing::Test {
 protected:
  RuleScopesTest()
      : db_(compile(kRules)),
        source_(make_policy(store_, db_)),
        admission_(source_, &records_, 0, 0),
        stage_(&config_, admission_) {}

  // Sends `pieces` in one direction of `flow`; returns the verdict of each, up to the first
  // that is not kContinue (and keeps the answer of a kDeny in denial_).
  std::vector<StreamVerdict> send(uint32_t flow, Direction direction,
                                  const std::vector<std::string>& pieces) {
    std::vector<StreamVerdict> verdicts;
    for (const std::string& piece : pieces) {
      verdicts.push_back(stage_.on_data(
          flow, direction, {reinterpret_cast<const uint8_t*>(piece.data()), piece.size()}, now_));
      if (verdicts.back() == StreamVerdict::kDeny) {
        const auto denial = stage_.denial(flow);
        denial_.assign(denial.begin(), denial.end());
      }
      if (verdicts.back() != StreamVerdict::kContinue) break;
    }
    return verdicts;
  }
  StreamVerdict send_request(uint32_t flow, const std::string& bytes) {
    stage_.on_open(flow, {});
    return send(flow, Direction::kToServer, {bytes}).back();
  }
  void close(uint32_t flow) { stage_.on_close(flow); }

  std::shared_ptr<const RuleDatabase> db_;
  LimiterStore store_;
  PolicySource source_;
  Records records_;
  Admission admission_;
  const HttpStageConfig config_;
  HttpStage stage_;
  std::string denial_;
  uint64_t now_ = kSecond;
};

TEST_F(RuleScopesTest, AHeaderRuleDecidesForItsTierWhereverTheKeyComes) {
  for (const bool key_first : {false, true}) {
    const std::string ua = "User-Agent: sqlmap/1.7#stable (https://sqlmap.org)\r\n";
    const std::string free = key_first ? request("k-free", "", ua) : request("k-free", ua);
    const std::string verified = key_first ? request("k-acme", "", ua) : request("k-acme", ua);
    EXPECT_EQ(send_request(1, free), StreamVerdict::kDeny);
    EXPECT_TRUE(denial_.starts_with("HTTP/1.1 403 Forbidden\r\n")) << denial_;
    EXPECT_NE(denial_.find(R"("code":"content_policy_violation")"), std::string::npos);
    EXPECT_EQ(denial_.find("hdr."), std::string::npos) << "no rule id to the client";
    close(1);
    EXPECT_EQ(send_request(2, verified), StreamVerdict::kContinue) << "the rule is free's only";
    close(2);
  }
  ASSERT_EQ(records_.records.size(), 4u);
  for (std::size_t i = 0; i < 4; i += 2) {
    EXPECT_EQ(records_.records[i].reason.view(), "content_policy_violation");
    EXPECT_EQ(rule_ids(records_.records[i]), std::vector<std::string>{"hdr.scanner-agent"});
    EXPECT_EQ(records_.records[i + 1].verdict, AuditVerdict::admit);
    EXPECT_TRUE(rule_ids(records_.records[i + 1]).empty());
  }
}

TEST_F(RuleScopesTest, AHeaderRuleSeesTheFieldHoweverTheSegmentsCutIt) {
  const std::string input =
      request("k-free", "X-Title:   my red   team app  \r\nUser-Agent: curl\r\n");
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    const uint32_t flow = static_cast<uint32_t>(cut);
    stage_.on_open(flow, {});
    const std::vector<StreamVerdict> verdicts =
        send(flow, Direction::kToServer, {input.substr(0, cut), input.substr(cut)});
    EXPECT_EQ(verdicts.back(), StreamVerdict::kContinue) << "cut at " << cut;
    send(flow, Direction::kToClient, {json_response("fine")});
    close(flow);
  }
  ASSERT_EQ(records_.records.size(), input.size() - 1);
  for (const AuditRecord& record : records_.records) {
    EXPECT_EQ(record.verdict, AuditVerdict::admit);
    EXPECT_EQ(rule_ids(record), std::vector<std::string>{"hdr.title-flag"});
  }
  EXPECT_EQ(admission_.stats().rule_flags, input.size() - 1);
}

TEST_F(RuleScopesTest, AStreamedCompletionIsCutWithAnErrorEventWhenARuleBlocksIt) {
  ASSERT_EQ(send_request(1, request("k-acme")), StreamVerdict::kContinue);
  // The match spans three deltas; the segment that completes it is the one cut.
  const std::vector<StreamVerdict> verdicts =
      send(1, Direction::kToClient,
           {kStreamHead + delta("Here it is: -----BEGIN RSA "), delta("PRIV"),
            delta("ATE KEY-----\\nMIIE"), delta("more") + "0\r\n\r\n"});
  EXPECT_EQ(verdicts, (std::vector<StreamVerdict>{StreamVerdict::kContinue,
                                                  StreamVerdict::kContinue, StreamVerdict::kDeny}));
  EXPECT_TRUE(denial_.find("event: error\ndata: {\"error\":") != std::string::npos) << denial_;
  EXPECT_NE(denial_.find(R"("code":"completion_policy_violation")"), std::string::npos);
  EXPECT_TRUE(denial_.ends_with("\r\n0\r\n\r\n")) << "the chunked body ends";
  close(1);
  ASSERT_EQ(records_.records.size(), 1u);
  const AuditRecord& record = records_.records[0];
  EXPECT_EQ(record.verdict, AuditVerdict::deny);
  EXPECT_EQ(record.reason.view(), "completion_policy_violation");
  EXPECT_EQ(record.status, 200) << "the host's status";
  EXPECT_EQ(rule_ids(record), std::vector<std::string>{"out.private-key"});
  EXPECT_EQ(admission_.stats().responses_cut, 1u);
  // Its in-flight slot (max_concurrent 1) was given back.
  EXPECT_EQ(send_request(2, request("k-acme")), StreamVerdict::kContinue);
}

TEST_F(RuleScopesTest, APlainCompletionIsResetWhenARuleBlocksIt) {
  ASSERT_EQ(send_request(1, request("k-free")), StreamVerdict::kContinue);
  EXPECT_EQ(send(1, Direction::kToClient, {json_response("-----BEGIN EC PRIVATE KEY-----")}),
            std::vector<StreamVerdict>{StreamVerdict::kKill});
  close(1);
  ASSERT_EQ(records_.records.size(), 1u);
  EXPECT_EQ(records_.records[0].reason.view(), "completion_policy_violation");
}

TEST_F(RuleScopesTest, FlagsInACompletionAreRecordedWithTheAdmittedRequest) {
  for (const char* key : {"k-acme", "k-free"}) {
    ASSERT_EQ(send_request(1, request(key)), StreamVerdict::kContinue);
    EXPECT_EQ(send(1, Direction::kToClient,
                   {kStreamHead + delta("Sarin is a nerve"), delta(" agent.") + "0\r\n\r\n"}),
              (std::vector<StreamVerdict>{StreamVerdict::kContinue, StreamVerdict::kContinue}));
    close(1);
  }
  ASSERT_EQ(records_.records.size(), 2u);
  EXPECT_EQ(records_.records[0].verdict, AuditVerdict::admit);
  EXPECT_EQ(rule_ids(records_.records[0]), std::vector<std::string>{"out.weapons-flag"});
  EXPECT_TRUE(rule_ids(records_.records[1]).empty()) << "the flag rule is verified's only";
}

TEST_F(RuleScopesTest, ACompletionWhoseCodingCannotBeReadIsCut) {
  ASSERT_EQ(send_request(1, request("k-acme")), StreamVerdict::kContinue);
  EXPECT_EQ(send(1, Direction::kToClient,
                 {"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: br\r\n"
                  "Content-Length: 3\r\n\r\nabc"}),
            std::vector<StreamVerdict>{StreamVerdict::kKill});
  close(1);
  ASSERT_EQ(records_.records.size(), 1u);
  EXPECT_EQ(records_.records[0].reason.view(), "completion_unreadable");
}

TEST_F(RuleScopesTest, AResponseIsScannedWithTheRulesItsRequestWasAdmittedUnder) {
  ASSERT_EQ(send_request(1, request("k-acme")), StreamVerdict::kContinue);
  // A reload to rules without any completion rule, between the request and its response.
  source_.publish(make_policy(store_, compile(R"(
ruleset: other
version: "2"
rules:
  - id: p.other
    description: something else
    pattern: 'zebrafinch'
    scope: prompt
    action: block
    examples: { match: ["zebrafinch"], no_match: ["finch"] }
)"),
                              source_.current().get()));
  admission_.refresh();
  EXPECT_EQ(send(1, Direction::kToClient, {json_response("BEGIN RSA PRIVATE KEY")}),
            std::vector<StreamVerdict>{StreamVerdict::kKill});
  close(1);
  // A request admitted under the new rules is not scanned for the old completion rule.
  ASSERT_EQ(send_request(2, request("k-acme")), StreamVerdict::kContinue);
  EXPECT_EQ(send(2, Direction::kToClient, {json_response("BEGIN RSA PRIVATE KEY")}),
            std::vector<StreamVerdict>{StreamVerdict::kContinue});
  close(2);
  ASSERT_EQ(records_.records.size(), 2u);
  EXPECT_EQ(records_.records[0].reason.view(), "completion_policy_violation");
  EXPECT_EQ(records_.records[1].reason.view(), "ok");
}

// ---- No byte that completes a match reaches the client ---------------------------------------

// What a client shows from the bytes it got: the text fields (content, text, delta, …) of the
// complete events of a stream, or of the whole body of a plain answer when it parses — as an SDK
// would, from what it holds when the connection ends.
void collect_text(const nlohmann::json& value, std::string_view key, std::string& out) {
  if (value.is_string()) {
    for (std::string_view shown :
         {"content", "text", "delta", "partial_json", "arguments", "reasoning_content", "thinking"})
      if (key == shown) out += value.get<std::string>();
  } else if (value.is_object()) {
    for (const auto& [name, member] : value.items()) collect_text(member, name, out);
  } else if (value.is_array()) {
    for (const auto& element : value) collect_text(element, key, out);
  }
}

std::string displayed(const std::string& bytes) {
  const std::size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string::npos) return {};
  const std::string head = bytes.substr(0, head_end);
  std::string body = bytes.substr(head_end + 4);
  if (head.find("Transfer-Encoding: chunked") != std::string::npos) {
    std::string data;
    std::size_t pos = 0;
    while (true) {
      const std::size_t eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      const std::size_t size = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
      if (size == 0) break;
      data += body.substr(eol + 2, size);  // what arrived of it
      pos = eol + 2 + size + 2;
      if (pos > body.size()) break;
    }
    body = data;
  }
  std::string out;
  if (head.find("text/event-stream") == std::string::npos) {
    const nlohmann::json document = nlohmann::json::parse(body, nullptr, false);
    if (!document.is_discarded()) collect_text(document, "", out);
    return out;
  }
  std::size_t pos = 0;
  while (true) {
    const std::size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;  // an event not ended is not dispatched
    std::string data;
    std::size_t line = pos;
    while (line < end) {
      const std::size_t eol = std::min(body.find('\n', line), end);
      const std::string text = body.substr(line, eol - line);
      if (text.starts_with("data:")) data += text.substr(text.starts_with("data: ") ? 6 : 5);
      line = eol + 1;
    }
    const nlohmann::json document = nlohmann::json::parse(data, nullptr, false);
    if (!document.is_discarded()) collect_text(document, "", out);
    pos = end + 2;
  }
  return out;
}

std::string event(std::string_view json) {
  return chunk("data: " + std::string(json) + "\n\n");
}

struct Shape {
  const char* name;
  std::string response;
};

// The same forbidden texts in the four answer shapes a client reads.
std::vector<Shape> leaking_shapes() {
  const std::string chat_head = kStreamHead;
  std::vector<Shape> shapes;
  shapes.push_back({"sse_chat", chat_head + delta("Here: -----BEGIN RSA ") + delta("PRIVATE") +
                                    delta(" KEY-----") + delta("\\nMIIE") + "0\r\n\r\n"});
  shapes.push_back({"sse_chat_word_end", chat_head + delta("the launch code ") + delta("12") +
                                             delta("34") + delta(" is secret") + "0\r\n\r\n"});
  shapes.push_back({"sse_chat_key_header", chat_head + delta("Here:\\n") +
                                               delta("-----BEGIN OPENSSH") + delta(" PRIVATE") +
                                               delta(" KEY") + delta("-----") + delta("\\nb3Bl") +
                                               "0\r\n\r\n"});
  shapes.push_back({"json", json_response("Here: -----BEGIN RSA PRIVATE KEY-----\\nMIIE")});
  shapes.push_back({"json_word_end", json_response("the launch code 1234")});
  const auto anthropic = [](std::string_view text) {
    return event(
        R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":")" +
        std::string(text) + R"("}})");
  };
  shapes.push_back(
      {"anthropic", chat_head +
                        event(R"({"type":"message_start","message":{"id":"msg_1","type":"message",)"
                              R"("role":"assistant","content":[],"model":"m"}})") +
                        event(R"({"type":"content_block_start","index":0,"content_block":)"
                              R"({"type":"text","text":""}})") +
                        anthropic("Here: -----BEGIN EC ") + anthropic("PRIVATE KE") +
                        anthropic("Y-----") + event(R"({"type":"message_stop"})") + "0\r\n\r\n"});
  const auto responses = [](std::string_view text) {
    return event(R"({"type":"response.output_text.delta","item_id":"msg_1","output_index":0,)"
                 R"("content_index":0,"delta":")" +
                 std::string(text) + R"("})");
  };
  shapes.push_back({"responses", chat_head + responses("Here: -----BEGIN") +
                                     responses(" RSA PRIVATE") + responses(" KEY-----") +
                                     event(R"({"type":"response.completed"})") + "0\r\n\r\n"});
  return shapes;
}

const std::regex kForbidden(
    "BEGIN (RSA |EC )?PRIVATE KEY|launch code "
    "[0-9]+\\b|-----BEGIN\\s([A-Z0-9]+\\s){0,3}PRIVATE\\sKEY(\\sBLOCK)?-----");

TEST_F(RuleScopesTest, NoSegmentBoundaryLetsTheClientShowAMatch) {
  uint32_t flow = 1000;
  for (const Shape& shape : leaking_shapes()) {
    const std::string& wire = shape.response;
    ASSERT_TRUE(std::regex_search(displayed(wire), kForbidden)) << shape.name;
    // Split in two at every byte, and one byte per segment.
    std::vector<std::vector<std::string>> splits;
    for (std::size_t cut = 1; cut < wire.size(); ++cut)
      splits.push_back({wire.substr(0, cut), wire.substr(cut)});
    std::vector<std::string> bytes;
    for (const char c : wire) bytes.emplace_back(1, c);
    splits.push_back(bytes);
    for (const std::vector<std::string>& pieces : splits) {
      now_ += kSecond;  // within the tier's request and token rates
      ASSERT_EQ(send_request(flow, request("k-acme")), StreamVerdict::kContinue);
      denial_.clear();
      const std::vector<StreamVerdict> verdicts = send(flow, Direction::kToClient, pieces);
      std::string forwarded;
      for (std::size_t i = 0; i < verdicts.size(); ++i)
        if (verdicts[i] == StreamVerdict::kContinue) forwarded += pieces[i];
      const std::string shown = displayed(forwarded + denial_);
      EXPECT_NE(verdicts.back(), StreamVerdict::kContinue)
          << shape.name << ": not cut, first piece " << pieces[0].size() << " bytes";
      EXPECT_FALSE(std::regex_search(shown, kForbidden))
          << shape.name << ", first piece " << pieces[0].size() << " bytes: the client shows "
          << shown;
      close(flow++);
    }
  }
}

// ---- Each field and tool call of a choice is its own text --------------------------------------

// What the openai SDK accumulates from a chat stream: per choice, per delta field, per
// tool_calls[].index — each text apart, as the client shows them.
std::string number_of(const nlohmann::json& element) {
  const bool numbered =
      element.is_object() && element.contains("index") && element["index"].is_number_integer();
  return numbered ? std::to_string(element["index"].get<int>()) : "0";
}

std::vector<std::string> accumulated_texts(const std::string& bytes) {
  std::map<std::string, std::string> texts;
  const std::size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string::npos) return {};
  std::string body = bytes.substr(head_end + 4), data;
  for (std::size_t pos = 0;;) {  // chunked
    const std::size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) break;
    const std::size_t size = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
    if (size == 0) break;
    data += body.substr(eol + 2, size);
    pos = eol + 2 + size + 2;
    if (pos > body.size()) break;
  }
  for (std::size_t pos = 0;;) {
    const std::size_t end = data.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string line = data.substr(pos, end - pos);
    pos = end + 2;
    if (!line.starts_with("data:")) continue;
    const nlohmann::json document =
        nlohmann::json::parse(line.substr(line.starts_with("data: ") ? 6 : 5), nullptr, false);
    if (document.is_discarded() || !document.is_object()) continue;
    // Anthropic: per block index, per field (text_delta to text, thinking_delta to thinking).
    for (const char* wrapper : {"content_block", "delta"}) {
      if (!document.contains(wrapper) || !document[wrapper].is_object()) continue;
      for (const auto& [key, value] : document[wrapper].items())
        if (value.is_string() && key != "type")
          texts["block" + number_of(document) + "." + key] += value.get<std::string>();
    }
    if (!document.contains("choices")) continue;
    for (const nlohmann::json& choice : document["choices"]) {
      if (!choice.is_object() || !choice.contains("delta") || !choice["delta"].is_object())
        continue;
      const std::string c = number_of(choice) + ".";
      const nlohmann::json& changes = choice["delta"];
      for (const auto& [key, value] : changes.items())
        if (value.is_string()) texts[c + key] += value.get<std::string>();
      if (!changes.contains("tool_calls")) continue;
      for (const nlohmann::json& call : changes["tool_calls"]) {
        const std::string t = c + "tool" + number_of(call) + ".";
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
          continue;
        for (const auto& [key, value] : call["function"].items())
          if (value.is_string()) texts[t + key] += value.get<std::string>();
      }
    }
  }
  std::vector<std::string> out;
  for (const auto& [path, text] : texts) out.push_back(text);
  return out;
}

TEST_F(RuleScopesTest, InterleavedFieldsToolCallsAndBlockFieldsAreScannedAsTextsOfTheirOwn) {
  // The live test's shapes (tests/e2e/fastapi_host.py): one character each in turn.
  const std::string secret = "Here: -----BEGIN RSA PRIVATE KEY-----";
  std::string fields = kStreamHead, tools = kStreamHead;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    fields +=
        event(R"({"choices":[{"index":0,"delta":{"content":")" + secret.substr(i, 1) + R"("}}]})") +
        event(R"({"choices":[{"index":0,"delta":{"reasoning_content":")" +
              std::string(1, static_cast<char>('a' + i % 26)) + R"("}}]})");
  }
  tools += event(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1",)"
                 R"("type":"function","function":{"name":"save_key","arguments":""}},)"
                 R"({"index":1,"id":"c2","type":"function","function":{"name":"search",)"
                 R"("arguments":""}}]}}]})");
  for (std::size_t i = 0; i < secret.size(); ++i) {
    const auto call = [](int index, std::string_view c) {
      return event(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":)" +
                   std::to_string(index) + R"(,"function":{"arguments":")" + std::string(c) +
                   R"("}}]}}]})");
    };
    tools +=
        call(0, secret.substr(i, 1)) + call(1, std::string(1, static_cast<char>('a' + i % 26)));
  }
  std::string blocks =
      kStreamHead + event(R"({"type":"content_block_start","index":0,"content_block":)"
                          R"({"type":"text","text":""}})");
  for (std::size_t i = 0; i < secret.size(); ++i) {
    blocks += event(R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta",)"
                    R"("text":")" +
                    secret.substr(i, 1) + R"("}})") +
              event(R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta",)"
                    R"("thinking":")" +
                    std::string(1, static_cast<char>('a' + i % 26)) + R"("}})");
  }
  uint32_t flow = 1500;
  for (const auto& [name, body] :
       {std::pair{"sse_interleave_fields", fields + "0\r\n\r\n"},
        std::pair{"sse_two_tools", tools + "0\r\n\r\n"},
        std::pair{"anthropic_text_and_thinking", blocks + "0\r\n\r\n"}}) {
    const std::string wire = body;
    const auto leaks = [](const std::string& bytes) {
      for (const std::string& text : accumulated_texts(bytes))
        if (std::regex_search(text, kForbidden)) return true;
      return false;
    };
    ASSERT_TRUE(leaks(wire)) << name;
    ASSERT_FALSE(std::regex_search(displayed(wire), kForbidden)) << name << ": not interleaved";
    // Split in two at every byte, and one byte per segment.
    std::vector<std::vector<std::string>> splits;
    for (std::size_t cut = 1; cut < wire.size(); cut += 1)
      splits.push_back({wire.substr(0, cut), wire.substr(cut)});
    std::vector<std::string> bytes;
    for (const char c : wire) bytes.emplace_back(1, c);
    splits.push_back(bytes);
    for (const std::vector<std::string>& pieces : splits) {
      now_ += kSecond;
      ASSERT_EQ(send_request(flow, request("k-acme")), StreamVerdict::kContinue);
      denial_.clear();
      const std::vector<StreamVerdict> verdicts = send(flow, Direction::kToClient, pieces);
      std::string forwarded;
      for (std::size_t i = 0; i < verdicts.size(); ++i)
        if (verdicts[i] == StreamVerdict::kContinue) forwarded += pieces[i];
      EXPECT_NE(verdicts.back(), StreamVerdict::kContinue)
          << name << ": not cut, first piece " << pieces[0].size() << " bytes";
      EXPECT_FALSE(leaks(forwarded + denial_))
          << name << ", first piece " << pieces[0].size() << " bytes: the client shows it";
      close(flow++);
    }
  }
}

// ---- Each choice of a stream is its own text ---------------------------------------------------

std::string choice_delta(int index, std::string_view content) {
  return event(R"({"choices":[{"index":)" + std::to_string(index) + R"(,"delta":{"content":")" +
               std::string(content) + R"("}}]})");
}

TEST_F(RuleScopesTest, InterleavedChoicesAreScannedAsTextsOfTheirOwn) {
  struct Case {
    const char* name;
    std::string body;
    const char* reason;  // of the record
  };
  std::string blocks;  // Anthropic: seven blocks one after another, the last holds the key
  for (int i = 0; i < 6; ++i)
    blocks +=
        event(R"({"type":"content_block_delta","index":)" + std::to_string(i) +
              R"(,"delta":{"type":"text_delta","text":"block )" + std::to_string(i) + R"("}})");
  const auto block = [](std::string_view text) {
    return event(
        R"({"type":"content_block_delta","index":6,"delta":{"type":"text_delta","text":")" +
        std::string(text) + R"("}})");
  };
  std::string nine;  // nine choices interleaved: more than the texts read at once
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 9; ++i) nine += choice_delta(i, "word ");
  const std::vector<Case> cases = {
      {"TwoChoices",
       choice_delta(0, "BEGIN RSA ") + choice_delta(1, "Sure, ") + choice_delta(0, "PRIVATE") +
           choice_delta(1, "here") + choice_delta(0, " KEY") + choice_delta(1, " it is"),
       "completion_policy_violation"},
      {"ChoicesInOneEvent",
       event(R"({"choices":[{"index":0,"delta":{"content":"BEGIN EC "}},)"
             R"({"index":1,"delta":{"content":"no "}}]})") +
           event(R"({"choices":[{"index":1,"delta":{"content":"no"}},)"
                 R"({"index":0,"delta":{"content":"PRIVATE KEY"}}]})"),
       "completion_policy_violation"},
      {"ResponsesItems",
       event(R"({"type":"response.output_text.delta","output_index":1,"delta":"BEGIN RSA "})") +
           event(R"({"type":"response.function_call_arguments.delta","output_index":2,)"
                 R"("delta":"{\"a\":1"})") +
           event(R"({"type":"response.output_text.delta","output_index":1,"delta":"PRIVATE KEY"})"),
       "completion_policy_violation"},
      {"SequentialBlocksBeyondTheTextsReadAtOnce",
       blocks + block("BEGIN RSA PRIV") + block("ATE KEY"), "completion_policy_violation"},
      {"NineChoicesInterleavedAreUnreadable", nine, "completion_unreadable"},
      {"AnIndexAfterTheTextOfAnotherPositionIsUnreadable",
       event(R"({"choices":[{"delta":{"content":"x"}},{"delta":{"content":"y"},"index":0}]})"),
       "completion_unreadable"},
  };
  uint32_t flow = 700;
  for (const Case& c : cases) {
    now_ += kSecond;
    ASSERT_EQ(send_request(flow, request("k-acme")), StreamVerdict::kContinue) << c.name;
    const std::vector<StreamVerdict> verdicts =
        send(flow, Direction::kToClient, {kStreamHead + c.body + "0\r\n\r\n"});
    EXPECT_NE(verdicts.back(), StreamVerdict::kContinue) << c.name;
    close(flow++);
    ASSERT_FALSE(records_.records.empty());
    EXPECT_EQ(records_.records.back().reason.view(), c.reason) << c.name;
  }
}

TEST_F(RuleScopesTest, FlagsOfEveryChoiceAreRecorded) {
  ASSERT_EQ(send_request(1, request("k-acme")), StreamVerdict::kContinue);
  EXPECT_EQ(send(1, Direction::kToClient,
                 {kStreamHead + choice_delta(0, "fine") + choice_delta(1, "a nerve") +
                  choice_delta(0, " text") + choice_delta(1, " agent") + "0\r\n\r\n"}),
            std::vector<StreamVerdict>{StreamVerdict::kContinue});
  close(1);
  ASSERT_EQ(records_.records.size(), 1u);
  EXPECT_EQ(records_.records[0].verdict, AuditVerdict::admit);
  EXPECT_EQ(rule_ids(records_.records[0]), std::vector<std::string>{"out.weapons-flag"});
}

// ---- What Sluice cannot read is not forwarded -------------------------------------------------

std::string plain_response(std::string_view head_fields, std::string_view body) {
  return "HTTP/1.1 200 OK\r\n" + std::string(head_fields) +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

TEST_F(RuleScopesTest, AnAnswerThatCannotBeReadIsCutAndOneReadOtherwiseIsScanned) {
  const std::string json = "Content-Type: application/json\r\n";
  const std::string key = R"({"choices":[{"message":{"content":"BEGIN RSA PRIVATE KEY"}}]})";
  const std::string ok = R"({"choices":[{"message":{"content":"fine"}}]})";
  const std::string utf16 = std::string("{\0\"\0a\0\"\0:\0\"\0b\0\"\0}\0", 18);
  const std::string sse_as_json =
      "data: " + std::string(R"({"choices":[{"delta":{"content":"BEGIN RSA "}}]})") +
      "\n\ndata: " + R"({"choices":[{"delta":{"content":"PRIVATE KEY"}}]})" + "\n\n";
  const std::string ndjson_body =
      R"({"model":"m","message":{"role":"assistant","content":"BEGIN EC "},"done":false})"
      "\n"
      R"({"model":"m","message":{"role":"assistant","content":"PRIVATE KEY"},"done":false})"
      "\n";
  struct Case {
    const char* name;
    std::string response;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"NaN", plain_response(json, R"({"choices":[],"x":NaN})" + ok), "completion_unreadable"},
      {"ByteOrderMark", plain_response(json, "\xEF\xBB\xBF" + ok), "completion_unreadable"},
      {"Utf16", plain_response(json, utf16), "completion_unreadable"},
      {"NestedTooDeep",
       plain_response(json, "{\"x\":" + std::string(70, '[') + std::string(70, ']') + "}"),
       "completion_unreadable"},
      {"TwoObjects", plain_response(json, ok + ok), "completion_unreadable"},
      {"PlainText", plain_response("Content-Type: text/plain\r\n", "Internal Server Error"),
       "completion_unreadable"},
      {"SecondContentType", plain_response(json + "Content-Type: text/plain\r\n", ok),
       "completion_unreadable"},
      {"HeadNotHttp", "HTTX/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", "completion_unreadable"},
      {"ChunkSizeOf21Digits",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(19, '0') + "2f\r\n" +
           ok.substr(0, 47) + "\r\n0\r\n\r\n",
       "completion_unreadable"},
      {"ChunkSizeWithGarbage",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2f x\r\n" + ok + "\r\n0\r\n\r\n",
       "completion_unreadable"},
      {"ChunkSizeOf20DigitsIsRead",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(18, '0') +
           chunk(key).substr(0, 2) + chunk(key).substr(2) + "0\r\n\r\n",
       "completion_policy_violation"},
      {"EventStreamWithoutItsTypeIsReadAsOne", plain_response(json, sse_as_json),
       "completion_policy_violation"},
      {"JsonLabelledAsEventStreamIsReadAsJson",
       plain_response("Content-Type: text/event-stream\r\n", key), "completion_policy_violation"},
      {"OllamaNdjsonIsReadLineByLine",
       plain_response("Content-Type: application/x-ndjson\r\n", ndjson_body),
       "completion_policy_violation"},
  };
  uint32_t flow = 500;
  for (const Case& c : cases) {
    now_ += kSecond;
    ASSERT_EQ(send_request(flow, request("k-acme")), StreamVerdict::kContinue) << c.name;
    const std::vector<StreamVerdict> verdicts = send(flow, Direction::kToClient, {c.response});
    EXPECT_NE(verdicts.back(), StreamVerdict::kContinue) << c.name;
    close(flow++);
    ASSERT_FALSE(records_.records.empty());
    EXPECT_EQ(records_.records.back().reason.view(), c.reason) << c.name;
  }
  EXPECT_EQ(admission_.stats().responses_cut, cases.size());
}

TEST_F(RuleScopesTest, AnAnswerThatCannotBeReadIsForwardedWhenNoCompletionRuleApplies) {
  // A tier without completion rules: nothing reads the answer, nothing is cut.
  source_.publish(make_policy(store_, compile(R"(
ruleset: other
version: "2"
rules:
  - id: p.other
    description: something else
    pattern: 'zebrafinch'
    scope: prompt
    action: block
    examples: { match: ["zebrafinch"], no_match: ["finch"] }
)"),
                              source_.current().get()));
  admission_.refresh();
  ASSERT_EQ(send_request(1, request("k-acme")), StreamVerdict::kContinue);
  EXPECT_EQ(send(1, Direction::kToClient,
                 {plain_response("Content-Type: application/json\r\n", "{\"x\":NaN}")}),
            std::vector<StreamVerdict>{StreamVerdict::kContinue});
  close(1);
}

// ---- Graduated response: flags demote, then suspend -------------------------------------------

class EscalationTest : public RuleScopesTest {
 protected:
  EscalationTest() {
    const Config config = load_config_text(R"(
identities: i.yaml
tiers:
  free: { requests_per_second: 1000, burst: 1000, tokens_per_minute: 1000000, token_burst: 100000,
          max_concurrent: 4, max_body_bytes: 100000, max_output_tokens: 100, models: ["small-*"] }
  verified: { requests_per_second: 1000, burst: 1000, tokens_per_minute: 1000000,
              token_burst: 100000, max_concurrent: 4, max_body_bytes: 100000,
              max_output_tokens: 100 }
escalation:
  verified: { flags: 3, window: 10m, action: demote, to: free, duration: 1h }
  free:     { flags: 2, window: 10m, action: suspend, duration: 30m }
)",
                                           "escalation.yaml");
    std::vector<Identity> identities{Identity{"acme", "verified", {sha256_of("k-acme")}, {}, {}}};
    source_.publish(build_policy(config,
                                 std::make_shared<const IdentityTable>(std::move(identities)),
                                 store_, db_, 1, source_.current().get()));
    admission_.refresh();
  }

  // One request of acme's on a new flow, answered; flagged when `flag`.
  StreamVerdict ask(bool flag, std::string_view model = "m") {
    const uint32_t flow = next_flow_++;
    const std::string body = "{\"model\":\"" + std::string(model) +
                             "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const std::string bytes = "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n" +
                              std::string(flag ? "X-Title: red team\r\n" : "") +
                              "Authorization: Bearer k-acme\r\nContent-Type: application/json\r\n"
                              "Content-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
    const StreamVerdict verdict = send_request(flow, bytes);
    if (verdict == StreamVerdict::kContinue)
      send(flow, Direction::kToClient, {json_response("ok")});
    close(flow);
    return verdict;
  }
  std::vector<const AuditRecord*> escalations() const {
    std::vector<const AuditRecord*> out;
    for (const AuditRecord& r : records_.records)
      if (r.verdict == AuditVerdict::escalate) out.push_back(&r);
    return out;
  }

  uint32_t next_flow_ = 100;
};

TEST_F(EscalationTest, FlagsDemoteThenSuspendAndTheEscalationExpires) {
  EXPECT_EQ(ask(true), StreamVerdict::kContinue);
  EXPECT_EQ(ask(true), StreamVerdict::kContinue);
  EXPECT_TRUE(escalations().empty()) << "two flags fit the budget of three";
  EXPECT_EQ(ask(true), StreamVerdict::kContinue) << "the third flag is still admitted";
  ASSERT_EQ(escalations().size(), 1u);
  const AuditRecord& demoted = *escalations()[0];
  EXPECT_EQ(demoted.reason.view(), "demoted");
  EXPECT_EQ(demoted.identity.view(), "acme");
  EXPECT_EQ(demoted.tier.view(), "free");
  EXPECT_EQ(demoted.until_ns - demoted.ts_ns, int64_t{3600} * 1'000'000'000);
  EXPECT_EQ(rule_ids(demoted), std::vector<std::string>{"hdr.title-flag"});

  // Now free: its models (small-*) and its escalation apply.
  now_ += kSecond;
  EXPECT_EQ(ask(false, "m"), StreamVerdict::kDeny) << "model m is outside free's small-*";
  EXPECT_NE(denial_.find("model_not_allowed"), std::string::npos);
  EXPECT_EQ(ask(false, "small-1"), StreamVerdict::kContinue);
  EXPECT_EQ(records_.records.back().tier.view(), "free");
  EXPECT_EQ(ask(true, "small-1"), StreamVerdict::kContinue);
  EXPECT_EQ(ask(true, "small-1"), StreamVerdict::kContinue);
  ASSERT_EQ(escalations().size(), 2u);
  EXPECT_EQ(escalations()[1]->reason.view(), "suspended");
  EXPECT_TRUE(escalations()[1]->tier.empty());

  EXPECT_EQ(ask(false, "small-1"), StreamVerdict::kDeny);
  EXPECT_NE(denial_.find("identity_suspended"), std::string::npos) << denial_;
  EXPECT_EQ(records_.records.back().reason.view(), "identity_suspended");

  // Thirty minutes on, the suspension is over: acme is verified again.
  now_ += 31 * 60 * kSecond;
  EXPECT_EQ(ask(false, "m"), StreamVerdict::kContinue);
  EXPECT_EQ(records_.records.back().tier.view(), "verified");
  EXPECT_EQ(admission_.stats().escalations, 2u);
}

TEST_F(EscalationTest, FlagsSpreadOverMoreThanTheWindowNeverEscalate) {
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(ask(true), StreamVerdict::kContinue);
    now_ += 5 * 60 * kSecond;  // one flag every 5 minutes: 2 per 10-minute window
  }
  EXPECT_TRUE(escalations().empty());
}

TEST_F(EscalationTest, AFlagOfARequestAdmittedBeforeTheEscalationLeavesTheNewBudgetAlone) {
  // Admitted as verified; its answer comes after the demotion, with verified's completion flag.
  ASSERT_EQ(send_request(1, request("k-acme")), StreamVerdict::kContinue);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ask(true), StreamVerdict::kContinue);
  ASSERT_EQ(escalations().size(), 1u);
  send(1, Direction::kToClient, {kStreamHead + delta("Sarin is a nerve agent.") + "0\r\n\r\n"});
  close(1);
  EXPECT_EQ(rule_ids(records_.records.back()), std::vector<std::string>{"out.weapons-flag"});
  EXPECT_EQ(records_.records.back().tier.view(), "verified");

  // free's budget is whole: its first flag is absorbed, the second suspends.
  EXPECT_EQ(ask(true, "small-1"), StreamVerdict::kContinue);
  EXPECT_EQ(escalations().size(), 1u) << "a flag of the step before drained free's budget";
  EXPECT_EQ(ask(true, "small-1"), StreamVerdict::kContinue);
  ASSERT_EQ(escalations().size(), 2u);
  EXPECT_EQ(escalations()[1]->reason.view(), "suspended");
}

TEST_F(EscalationTest, AnExpiredDemotionLeavesTheIdentityAFreshBudget) {
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ask(true), StreamVerdict::kContinue);
  ASSERT_EQ(escalations().size(), 1u);
  now_ += 55 * 60 * kSecond;
  EXPECT_EQ(ask(true, "small-1"), StreamVerdict::kContinue) << "one flag as free: absorbed";
  now_ += 6 * 60 * kSecond;  // the hour of demotion is over
  EXPECT_EQ(ask(true), StreamVerdict::kContinue);
  EXPECT_EQ(records_.records.back().tier.view(), "verified");
  EXPECT_EQ(ask(true), StreamVerdict::kContinue);
  EXPECT_EQ(escalations().size(), 1u) << "the flag as free was carried over the expiry";
  EXPECT_EQ(ask(true), StreamVerdict::kContinue);
  EXPECT_EQ(escalations().size(), 2u) << "the third flag demotes again";
}

TEST(RuleScopes, NoRuleMayReadAFieldThatCarriesSecrets) {
  for (const char* field : {"authorization", "Proxy-Authorization", "x-api-key", "cookie"}) {
    const std::string text = std::string(R"(
ruleset: s
version: "1"
rules:
  - id: h.secret
    description: d
    pattern: 'x'
    scope: header:)") + field +
                             R"(
    action: block
    examples: { match: ["x"], no_match: ["y"] }
)";
    try {
      load_rules_text(text, "secret.yaml");
      ADD_FAILURE() << field << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("secret.yaml:8:"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("API keys or session secrets"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace sluice
