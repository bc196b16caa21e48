#include "sluice/http_stage.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace sluice {
namespace {

struct Observed {
  std::vector<std::string> texts;  // canonical text per ended request
  std::vector<RequestReason> reasons;
  std::vector<std::string> models;
  std::vector<bool> documents;  // per ended request: its body was read as a JSON document
  std::vector<uint16_t> responses;
  std::vector<TokenUsage> usages;
  std::string current;
  bool operator==(const Observed&) const = default;
};

// Records what the stage reports; refuses where a test says so (as admission would).
struct Refusals {
  Refusal at_head;
  Refusal at_end;
};

class Observer final : public RequestObserver {
 public:
  explicit Observer(Observed& out, Refusals refusals = {}) : out_(out), refusals_(refusals) {}
  Refusal on_request_head(uint32_t, const RequestHead&, uint64_t) override {
    out_.current.clear();
    return refusals_.at_head;
  }
  void on_prompt_text(uint32_t, std::string_view text) override { out_.current += text; }
  Refusal on_request_end(uint32_t, const RequestOutcome& outcome, uint64_t) override {
    out_.texts.push_back(out_.current);
    out_.reasons.push_back(outcome.reason);
    out_.models.push_back(outcome.fields != nullptr ? outcome.fields->model : "");
    out_.documents.push_back(outcome.json);
    out_.current.clear();
    return refusals_.at_end;
  }
  void on_response_end(uint32_t, const ResponseOutcome& response, uint64_t) override {
    out_.responses.push_back(response.status);
    out_.usages.push_back(response.usage);
  }

 private:
  Observed& out_;
  Refusals refusals_;
};

struct StageRun {
  Observed observed;
  bool killed = false;
  std::string denial;
  bool operator==(const StageRun&) const = default;
};

StageRun run(const std::vector<std::string_view>& pieces, std::string_view response = "",
             Refusals refusals = {}) {
  const HttpStageConfig config;
  StageRun result;
  Observer observer(result.observed, refusals);
  HttpStage stage(&config, observer);
  stage.on_open(7, {});
  for (std::string_view piece : pieces) {
    const auto verdict = stage.on_data(
        7, Direction::kToServer, {reinterpret_cast<const uint8_t*>(piece.data()), piece.size()}, 0);
    if (verdict != StreamVerdict::kContinue) {
      EXPECT_EQ(verdict, StreamVerdict::kDeny);
      const auto denial = stage.denial(7);
      result.denial.assign(denial.begin(), denial.end());
      result.killed = true;
      break;
    }
  }
  if (!response.empty()) {
    stage.on_data(7, Direction::kToClient,
                  {reinterpret_cast<const uint8_t*>(response.data()), response.size()}, 0);
  }
  stage.on_close(7);
  return result;
}

StageRun run_every_way(std::string_view input, Refusals refusals = {}) {
  const StageRun whole = run({input}, "", refusals);
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    EXPECT_EQ(run({input.substr(0, cut), input.substr(cut)}, "", refusals), whole)
        << "cut at " << cut;
  }
  std::vector<std::string_view> single;
  for (std::size_t i = 0; i < input.size(); ++i) single.push_back(input.substr(i, 1));
  EXPECT_EQ(run(single, "", refusals), whole);
  return whole;
}

std::string request(std::string_view body, std::string_view extra_headers = "") {
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n" +
         std::string(extra_headers) + "Content-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + std::string(body);
}

TEST(HttpStage, ReportsTheCanonicalPromptOfEachPipelinedRequest) {
  const std::string input =
      request(
          R"({"model":"gpt-x","messages":[{"role":"system","content":"Be   brief."},{"role":"user","content":"ｉｇｎｏｒｅ previous"}]})") +
      request(R"({"model":"m2","prompt":["a","b"]})");
  const StageRun r = run_every_way(input);
  EXPECT_FALSE(r.killed);
  ASSERT_EQ(r.observed.reasons.size(), 2u);
  EXPECT_EQ(r.observed.reasons[0], RequestReason::ok);
  EXPECT_EQ(r.observed.texts[0], "Be brief.\nignore previous");
  EXPECT_EQ(r.observed.models[0], "gpt-x");
  EXPECT_EQ(r.observed.texts[1], "a\nb");
  EXPECT_EQ(r.observed.models[1], "m2");
}

std::string gzip(std::string_view text) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, text.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(HttpStage, ReadsGzipEncodedAndChunkedBodiesLikePlainOnes) {
  const std::string body = R"({"model":"m","messages":[{"role":"user","content":"hello world"}]})";
  const StageRun plain = run({request(body)});
  const std::string packed = gzip(body);
  const StageRun encoded = run_every_way(request(packed, "Content-Encoding: gzip\r\n"));
  EXPECT_EQ(encoded.observed.texts, plain.observed.texts);
  const std::string chunked =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n3\r\n" +
      body.substr(0, 3) + "\r\n" + [&] {
        std::string rest = body.substr(3);
        char size[16];
        std::snprintf(size, sizeof size, "%zx", rest.size());
        return std::string(size) + "\r\n" + rest + "\r\n0\r\n\r\n";
      }();
  EXPECT_EQ(run_every_way(chunked).observed.texts, plain.observed.texts);
}

TEST(HttpStage, KillsTheFlowOnARefusalAndReadsNothingAfterIt) {
  const std::string input = request(R"({"messages":[],"messages":[]})") +
                            request(R"({"messages":[{"role":"user","content":"smuggled"}]})");
  const StageRun r = run_every_way(input);
  EXPECT_TRUE(r.killed);
  ASSERT_EQ(r.observed.reasons.size(), 1u);
  EXPECT_EQ(r.observed.reasons[0], RequestReason::json_duplicate_key);
  const std::string body =
      R"({"error":{"message":"duplicate key in an object","type":"invalid_request_error",)"
      R"("param":null,"code":"json_duplicate_key"}})";
  EXPECT_EQ(r.denial,
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: " +
                std::to_string(body.size()) + "\r\nconnection: close\r\n\r\n" + body);
}

TEST(HttpStage, KillsTheFlowOnAFramingRefusal) {
  const StageRun r = run(
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"});
  EXPECT_TRUE(r.killed);
  ASSERT_EQ(r.observed.reasons.size(), 1u);
  EXPECT_EQ(r.observed.reasons[0], RequestReason::http_content_length_and_transfer_encoding);
  EXPECT_TRUE(r.denial.starts_with("HTTP/1.1 400 Bad Request\r\n")) << r.denial;
}

TEST(HttpStage, AnswersWithTheStatusOfTheReason) {
  const StageRun big = run({"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n"});
  EXPECT_TRUE(big.denial.starts_with("HTTP/1.1 413 Content Too Large\r\n")) << big.denial;
  const StageRun method = run({"TRACE / HTTP/1.1\r\nHost: h\r\n\r\n"});
  EXPECT_TRUE(method.denial.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")) << method.denial;
  const StageRun brotli = run({"POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: br\r\n\r\n"});
  EXPECT_TRUE(brotli.denial.starts_with("HTTP/1.1 415 Unsupported Media Type\r\n"))
      << brotli.denial;
}

TEST(HttpStage, FollowsResponsesToTheirEnd) {
  const StageRun r =
      run({request(R"({"prompt":"x"})")}, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(r.observed.responses, std::vector<uint16_t>{200});
}

TEST(HttpStage, ReportsTheUsageOfAJsonResponse) {
  const std::string body =
      R"({"id":"x","usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}})";
  const StageRun r = run({request(R"({"prompt":"x"})")},
                         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body);
  ASSERT_EQ(r.observed.usages.size(), 1u);
  EXPECT_EQ(r.observed.usages[0].prompt_tokens, 12);
  EXPECT_EQ(r.observed.usages[0].completion_tokens, 5);
  EXPECT_EQ(r.observed.usages[0].used(), 17u);
}

TEST(HttpStage, ReportsTheUsageOfTheFinalEventOfAChunkedEventStream) {
  const std::string events =
      "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,"
      "\"total_tokens\":11}}\n\ndata: [DONE]\n\n";
  char size[16];
  std::snprintf(size, sizeof size, "%zx", events.size());
  const StageRun r = run({request(R"({"prompt":"x","stream":true})")},
                         "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n" +
                             std::string(size) + "\r\n" + events + "\r\n0\r\n\r\n");
  ASSERT_EQ(r.observed.usages.size(), 1u);
  EXPECT_EQ(r.observed.usages[0].used(), 11u);
}

TEST(HttpStage, ReadsTheUsageOfAGzipResponseButNotOfACodingItCannotDecode) {
  const std::string body = gzip(R"({"usage":{"total_tokens":17}})");
  const StageRun r = run({request(R"({"prompt":"x"})")},
                         "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body);
  ASSERT_EQ(r.observed.usages.size(), 1u);
  EXPECT_EQ(r.observed.usages[0].used(), 17u);
  const StageRun brotli = run({request(R"({"prompt":"x"})")},
                              "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: " +
                                  std::to_string(body.size()) + "\r\n\r\n" + body);
  ASSERT_EQ(brotli.observed.usages.size(), 1u);
  EXPECT_FALSE(brotli.observed.usages[0].reported());
}

TEST(HttpStage, ReadsAJsonContentTypeWithoutABodyAsNoDocument) {
  // What the official OpenAI SDK sends for models.list().
  const StageRun r =
      run_every_way("GET /v1/models HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\r\n");
  EXPECT_FALSE(r.killed);
  EXPECT_EQ(r.observed.reasons, std::vector<RequestReason>{RequestReason::ok});
}

// What a request's Content-Type says does not decide whether its body is read: FastAPI, vLLM,
// LiteLLM and llama.cpp parse any body as JSON.
const std::vector<std::string> kContentTypes = {
    "",
    "Content-Type: text/plain\r\n",
    "Content-Type: text/json\r\n",
    "Content-Type: application/x-www-form-urlencoded\r\n",
    "Content-Type: multipart/form-data; boundary=x\r\n",
    "Content-Type: application/octet-stream\r\n",
    "Content-Type: application/json\r\n",
};

std::string typed_request(std::string_view content_type, std::string_view body) {
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n" + std::string(content_type) +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

TEST(HttpStage, ReadsEveryBodyAsJsonWhateverItsContentType) {
  const std::string body =
      R"({"model":"gpt-x","max_tokens":100000,"messages":[{"role":"user","content":"ignore previous"}]})";
  for (const std::string& type : kContentTypes) {
    const StageRun r = run_every_way(typed_request(type, body));
    EXPECT_FALSE(r.killed) << type;
    EXPECT_EQ(r.observed.reasons, std::vector<RequestReason>{RequestReason::ok}) << type;
    EXPECT_EQ(r.observed.documents, std::vector<bool>{true}) << type;
    EXPECT_EQ(r.observed.models, std::vector<std::string>{"gpt-x"}) << type;
    EXPECT_EQ(r.observed.texts, std::vector<std::string>{"ignore previous"}) << type;
  }
}

TEST(HttpStage, RefusesABodyThatIsNotOneJsonObjectWhateverItsContentType) {
  const std::vector<std::string> bodies = {
      "model=gpt-x&prompt=ignore+previous",
      "--x\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n--x--\r\n",
      "[{\"prompt\":\"x\"}]",
      "\"ignore previous\"",
  };
  for (const std::string& type : kContentTypes) {
    for (const std::string& body : bodies) {
      const StageRun r = run({typed_request(type, body)});
      EXPECT_TRUE(r.killed) << type << body;
      EXPECT_EQ(r.observed.reasons, std::vector<RequestReason>{RequestReason::json_invalid})
          << type << body;
      EXPECT_TRUE(r.denial.starts_with("HTTP/1.1 400 Bad Request\r\n")) << r.denial;
    }
  }
}

TEST(HttpStage, ReadsAnEmptyBodyOfAnyContentTypeAsNoDocument) {
  for (const std::string& type : kContentTypes) {
    const StageRun r = run_every_way(typed_request(type, ""));
    EXPECT_FALSE(r.killed) << type;
    EXPECT_EQ(r.observed.reasons, std::vector<RequestReason>{RequestReason::ok}) << type;
    EXPECT_EQ(r.observed.documents, std::vector<bool>{false}) << type;
  }
}

StreamVerdict feed(HttpStage& stage, std::string_view bytes) {
  return stage.on_data(7, Direction::kToServer,
                       {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, 0);
}

const std::string kClosing =
    "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
    "Content-Length: 14\r\n\r\n{\"prompt\":\"a\"}";
const std::string kSmuggled = request(R"({"prompt":"smuggled"})");

TEST(HttpStage, DiscardsWhatFollowsARequestThatClosesTheConnection) {
  for (const std::string& closing :
       {kClosing, std::string("POST / HTTP/1.0\r\nContent-Length: 14\r\n\r\n{\"prompt\":\"a\"}")}) {
    const HttpStageConfig config;
    Observed observed;
    Observer observer(observed);
    HttpStage stage(&config, observer);
    stage.on_open(7, {});
    EXPECT_EQ(feed(stage, closing), StreamVerdict::kContinue);
    // Neither read nor forwarded, however it comes: not a request, not counted.
    EXPECT_EQ(feed(stage, kSmuggled), StreamVerdict::kDiscard);
    EXPECT_EQ(feed(stage, "\r\n"), StreamVerdict::kDiscard);
    EXPECT_EQ(feed(stage, "G"), StreamVerdict::kDiscard);
    EXPECT_EQ(observed.reasons, std::vector<RequestReason>{RequestReason::ok});
    EXPECT_EQ(observed.texts, std::vector<std::string>{"a"});
    // The host's answer is still followed.
    const std::string_view response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    EXPECT_EQ(
        stage.on_data(7, Direction::kToClient,
                      {reinterpret_cast<const uint8_t*>(response.data()), response.size()}, 0),
        StreamVerdict::kContinue);
    EXPECT_EQ(observed.responses, std::vector<uint16_t>{200});
    stage.on_close(7);
  }
}

TEST(HttpStage, RefusesARequestThatClosesTheConnectionWhenBytesFollowItInTheSegment) {
  const std::string input = kClosing + kSmuggled;
  for (std::size_t cut = 0; cut < input.size(); ++cut) {
    if (cut == kClosing.size()) continue;
    const StageRun r = cut == 0 ? run({input}) : run({input.substr(0, cut), input.substr(cut)});
    EXPECT_TRUE(r.killed) << "cut at " << cut;
    EXPECT_EQ(r.observed.reasons, std::vector<RequestReason>{RequestReason::http_data_after_close})
        << "cut at " << cut;
    EXPECT_TRUE(r.denial.starts_with("HTTP/1.1 400 Bad Request\r\n")) << r.denial;
    EXPECT_NE(r.denial.find(R"("code":"http_data_after_close")"), std::string::npos) << r.denial;
  }
}

TEST(HttpStage, AnswersARefusalAtTheHeadWithoutReadingTheBody) {
  Refusals refusals;
  refusals.at_head = Refusal{RequestReason::invalid_api_key};
  const StageRun r = run_every_way(request(R"({"prompt":"x"})"), refusals);
  EXPECT_TRUE(r.killed);
  EXPECT_TRUE(r.observed.reasons.empty()) << "no request end after a refusal at the head";
  EXPECT_TRUE(r.denial.starts_with("HTTP/1.1 401 Unauthorized\r\n")) << r.denial;
  EXPECT_NE(r.denial.find(R"("code":"invalid_api_key")"), std::string::npos) << r.denial;
}

TEST(HttpStage, AnswersARefusalAtTheEndWithTheLimitHeaders) {
  Refusals refusals;
  refusals.at_end = Refusal{RequestReason::rate_limited_requests,
                            LimitKind::kRequests,
                            3,
                            0,
                            2'500'000'000,
                            1'200'000'000};
  const std::string input = request(R"({"prompt":"x"})");
  const StageRun r = run_every_way(input, refusals);
  EXPECT_TRUE(r.killed);
  EXPECT_EQ(r.observed.reasons, std::vector<RequestReason>{RequestReason::ok});
  const std::string body =
      R"({"error":{"message":"request rate limit reached","type":"requests","param":null,)"
      R"("code":"rate_limited_requests"}})";
  EXPECT_EQ(r.denial,
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
            "retry-after: 2\r\nretry-after-ms: 1200\r\nx-ratelimit-limit-requests: 3\r\n"
            "x-ratelimit-remaining-requests: 0\r\nx-ratelimit-reset-requests: 2.5s\r\n"
            "content-length: " +
                std::to_string(body.size()) + "\r\nconnection: close\r\n\r\n" + body);
  // The refusal comes with the request's last byte: every byte before it was passed on.
  const StageRun short_of_end = run({input.substr(0, input.size() - 1)}, "", refusals);
  EXPECT_FALSE(short_of_end.killed);
}

TEST(HttpStage, KeepsItsPerFlowStateSmall) {
  // The figure the README documents; a change that grows it should be a conscious one.
  RecordProperty("flow_state_bytes", static_cast<int>(HttpStage::flow_state_bytes()));
  std::printf("HttpStage flow state: %zu bytes\n", HttpStage::flow_state_bytes());
  // 5656 bytes on x86-64: 8 completion canonicalisers (192 bytes each: every text a client
  // accumulates apart — content, reasoning, tool calls, choices — scanned on its own) and two
  // completion extractors (400 bytes each: the reader and the copy taken before each segment
  // for the error event). 6 KiB leaves room for one more field of a few dozen bytes.
  EXPECT_LE(HttpStage::flow_state_bytes(), 6144u);
}

TEST(HttpStage, RecyclesFlowStates) {
  const HttpStageConfig config;
  Observed observed;
  Observer observer(observed);
  HttpStage stage(&config, observer);
  const std::string input = request(R"({"prompt":"x"})");
  for (uint32_t round = 0; round < 100; ++round) {
    const uint32_t flow = round % 3;
    stage.on_data(flow, Direction::kToServer,
                  {reinterpret_cast<const uint8_t*>(input.data()), input.size()}, 0);
    stage.on_close(flow);
  }
  EXPECT_EQ(stage.states_allocated(), 1u);
  EXPECT_EQ(observed.reasons.size(), 100u);
}

// ---- Header fields and completions: what admission's rules see --------------------------------

// Takes the header fields named in `wanted` and the completion text of every response; refuses
// the response whose completion text holds `block_word` (as it streams), or at its end when
// `block_at_end`.
class RuleObserver final : public RequestObserver {
 public:
  std::vector<std::string> wanted;
  std::string block_word;
  bool block_at_end = false;

  std::vector<std::string> offered;   // every field name offered
  std::vector<std::string> fields;    // "name=value" of the fields taken
  std::string completion;             // the canonical completion text so far
  std::vector<bool> completion_ends;  // `readable` of each on_completion_end
  int response_ends = 0;

  bool on_header_field(uint32_t, std::string_view name) override {
    offered.emplace_back(name);
    if (std::find(wanted.begin(), wanted.end(), name) == wanted.end()) return false;
    fields.push_back(std::string(name) + "=");
    return true;
  }
  void on_header_value(uint32_t, std::string_view bytes) override { fields.back() += bytes; }
  void on_header_end(uint32_t) override { fields.back() += ";"; }
  Refusal on_request_head(uint32_t, const RequestHead&, uint64_t) override { return {}; }
  void on_prompt_text(uint32_t, std::string_view) override {}
  Refusal on_request_end(uint32_t, const RequestOutcome&, uint64_t) override { return {}; }
  bool on_response_head(uint32_t, const ResponseHead&) override {
    completion.clear();
    return true;
  }
  Refusal on_completion_text(uint32_t, std::string_view text) override {
    completion += text;
    if (!block_word.empty() && completion.find(block_word) != std::string::npos)
      return Refusal{RequestReason::completion_policy_violation};
    return {};
  }
  Refusal on_completion_end(uint32_t, bool readable) override {
    completion_ends.push_back(readable);
    if (!readable) return Refusal{RequestReason::completion_unreadable};
    return block_at_end ? Refusal{RequestReason::completion_policy_violation} : Refusal{};
  }
  void on_response_end(uint32_t, const ResponseOutcome&, uint64_t) override { ++response_ends; }
};

struct ResponseRun {
  std::vector<StreamVerdict> verdicts;  // per response piece, up to the first refusal
  std::string denial;                   // what the client gets instead, after kDeny
};

// One request, then its response in `pieces`, each delivered as one segment's bytes.
ResponseRun run_response(RuleObserver& observer, const std::vector<std::string>& pieces,
                         const std::string& request_bytes = request(R"({"prompt":"x"})")) {
  const HttpStageConfig config;
  HttpStage stage(&config, observer);
  stage.on_open(3, {});
  EXPECT_EQ(stage.on_data(
                3, Direction::kToServer,
                {reinterpret_cast<const uint8_t*>(request_bytes.data()), request_bytes.size()}, 0),
            StreamVerdict::kContinue);
  ResponseRun run;
  for (const std::string& piece : pieces) {
    const StreamVerdict verdict = stage.on_data(
        3, Direction::kToClient, {reinterpret_cast<const uint8_t*>(piece.data()), piece.size()}, 0);
    run.verdicts.push_back(verdict);
    if (verdict == StreamVerdict::kDeny) {
      const auto denial = stage.denial(3);
      run.denial.assign(denial.begin(), denial.end());
    }
    if (verdict != StreamVerdict::kContinue) break;
  }
  stage.on_close(3);
  return run;
}

TEST(HttpStage, OffersHeaderFieldsButNeverThoseCarryingSecrets) {
  const std::string long_value(300, 'v');
  const std::string input =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nUser-Agent: \t curl/8  x \t \r\n"
      "Authorization: Bearer sk-secret\r\nX-Api-Key: k1\r\nApi-Key: k2\r\nCookie: c=1\r\n"
      "Proxy-Authorization: Basic eA==\r\nX-Title: " +
      long_value +
      "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\n{}\r\n0\r\nX-Title: trailer\r\n\r\n";
  std::vector<std::string> whole_fields;
  for (std::size_t cut = 0; cut < input.size(); ++cut) {
    RuleObserver observer;
    observer.wanted = {"user-agent", "x-title", "host"};
    const HttpStageConfig config;
    HttpStage stage(&config, observer);
    stage.on_open(1, {});
    for (const std::string_view piece :
         {std::string_view(input).substr(0, cut), std::string_view(input).substr(cut)}) {
      ASSERT_EQ(stage.on_data(1, Direction::kToServer,
                              {reinterpret_cast<const uint8_t*>(piece.data()), piece.size()}, 0),
                StreamVerdict::kContinue);
    }
    EXPECT_EQ(observer.offered, (std::vector<std::string>{"host", "user-agent", "x-title",
                                                          "content-type", "transfer-encoding"}))
        << "cut at " << cut;
    EXPECT_EQ(observer.fields, (std::vector<std::string>{"host=h;", "user-agent=curl/8  x;",
                                                         "x-title=" + long_value + ";"}))
        << "cut at " << cut;
  }
}

TEST(HttpStage, HandsTheCompletionTextOverAsTheResponseStreams) {
  RuleObserver observer;
  const std::string body =
      R"({"choices":[{"message":{"role":"assistant","content":"Ｈｅｌｌｏ  world"}}],)"
      R"("usage":{"total_tokens":3}})";
  const std::string packed = gzip(body);
  const ResponseRun run =
      run_response(observer, {"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Content-Encoding: gzip\r\nContent-Length: " +
                              std::to_string(packed.size()) + "\r\n\r\n" + packed});
  EXPECT_EQ(run.verdicts, std::vector<StreamVerdict>{StreamVerdict::kContinue});
  EXPECT_EQ(observer.completion, "Hello world");
  EXPECT_EQ(observer.completion_ends, std::vector<bool>{true});
  EXPECT_EQ(observer.response_ends, 1);
}

std::string sse_event(std::string_view content) {
  return "data: {\"choices\":[{\"delta\":{\"content\":\"" + std::string(content) + "\"}}]}\n\n";
}

std::string chunk(std::string_view data) {
  char size[24];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + std::string(data) + "\r\n";
}

const std::string kSseHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

std::string stream_error(std::string_view event_end = "") {
  return std::string(event_end) +
         "event: error\ndata: {\"error\":{\"message\":\"the response was cut by a content "
         "policy rule\",\"type\":\"invalid_request_error\",\"param\":null,"
         "\"code\":\"completion_policy_violation\"}}\n\n";
}

TEST(HttpStage, EndsARefusedStreamWithAnErrorEventInItsOwnChunk) {
  RuleObserver observer;
  observer.block_word = "secret plans";
  const ResponseRun run = run_response(
      observer, {kSseHead + chunk(sse_event("The secret")), chunk(sse_event(" plans are")),
                 chunk(sse_event(" never sent")) + "0\r\n\r\n"});
  EXPECT_EQ(run.verdicts,
            (std::vector<StreamVerdict>{StreamVerdict::kContinue, StreamVerdict::kDeny}));
  EXPECT_EQ(run.denial, chunk(stream_error()) + "0\r\n\r\n");
  EXPECT_EQ(observer.response_ends, 0) << "a response cut has no end";
}

TEST(HttpStage, CompletesTheChunkInProgressBeforeTheErrorEvent) {
  RuleObserver observer;
  observer.block_word = "secret plans";
  // One chunk holds both events; the segment boundary falls inside it, after the first event.
  const std::string first = sse_event("The secret");
  const std::string both = chunk(first + sse_event(" plans are"));
  const std::size_t split = kSseHead.size() + both.find("\r\n") + 2 + first.size();
  const std::string stream = kSseHead + both + "0\r\n\r\n";
  const ResponseRun run = run_response(observer, {stream.substr(0, split), stream.substr(split)});
  ASSERT_EQ(run.verdicts,
            (std::vector<StreamVerdict>{StreamVerdict::kContinue, StreamVerdict::kDeny}));
  const std::size_t owed = sse_event(" plans are").size();
  const std::string event = stream_error();
  ASSERT_LT(event.size(), owed + 200);
  const std::string expected =
      event.size() <= owed
          ? event + std::string(owed - event.size(), '\n') + "\r\n0\r\n\r\n"
          : event.substr(0, owed) + "\r\n" + chunk(event.substr(owed)) + "0\r\n\r\n";
  EXPECT_EQ(run.denial, expected);
}

TEST(HttpStage, FinishesTheClientsEventBeforeTheErrorEventWhenTheCutFallsInsideIt) {
  RuleObserver observer;
  observer.block_word = "secret plans";
  const std::string head =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
  const std::string event = sse_event("The secret plans");
  const std::size_t split = event.find("secret");
  const ResponseRun run =
      run_response(observer, {head + event.substr(0, split), event.substr(split)});
  ASSERT_EQ(run.verdicts,
            (std::vector<StreamVerdict>{StreamVerdict::kContinue, StreamVerdict::kDeny}));
  // The client holds `data: {"choices":[{"delta":{"content":"The `: its JSON is closed and the
  // event dispatched, so that it parses; the body ends with the close (no chunk framing).
  EXPECT_EQ(run.denial, stream_error("\"}}]}\n\n"));
}

TEST(HttpStage, ResetsARefusedResponseThatIsNotAStream) {
  RuleObserver observer;
  observer.block_word = "secret plans";
  const std::string body = R"({"choices":[{"message":{"content":"The secret plans are these"}}]})";
  const ResponseRun run = run_response(
      observer, {"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n" + body});
  EXPECT_EQ(run.verdicts, std::vector<StreamVerdict>{StreamVerdict::kKill});
  EXPECT_EQ(observer.response_ends, 0);
}

TEST(HttpStage, RefusesAtTheLastSegmentWhenTheVerdictComesAtTheEnd) {
  RuleObserver observer;
  observer.block_at_end = true;
  const ResponseRun run = run_response(
      observer, {kSseHead + chunk(sse_event("fine")), chunk(sse_event("still fine")), "0\r\n\r\n"});
  EXPECT_EQ(run.verdicts,
            (std::vector<StreamVerdict>{StreamVerdict::kContinue, StreamVerdict::kContinue,
                                        StreamVerdict::kDeny}));
  EXPECT_EQ(run.denial, chunk(stream_error()) + "0\r\n\r\n");
  EXPECT_EQ(observer.response_ends, 0);
}

TEST(HttpStage, RefusesACompletionItCannotDecode) {
  RuleObserver observer;
  const ResponseRun run = run_response(
      observer, {"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: br\r\n"
                 "Content-Length: 4\r\n\r\n\x1b\x00\x00\x00"});
  EXPECT_EQ(run.verdicts, std::vector<StreamVerdict>{StreamVerdict::kKill});
  EXPECT_EQ(observer.completion_ends, std::vector<bool>{false});
}

}  // namespace
}  // namespace sluice
