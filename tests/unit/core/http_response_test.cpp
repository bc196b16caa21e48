#include "sluice/http_response.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

struct Seen {
  struct Response {
    uint16_t status = 0;
    bool event_stream = false, until_close = false, chunked = false, complete = false;
    bool ndjson = false, coded = false;
    std::string body;
    bool operator==(const Response&) const = default;
  };
  std::vector<Response> responses;
  bool ok = true;
  bool operator==(const Seen&) const = default;
};

class Recorder final : public HttpResponseSink {
 public:
  explicit Recorder(Seen& seen) : seen_(seen) {}
  void on_response_head(const ResponseHead& head) override {
    seen_.responses.push_back({head.status, head.event_stream, head.until_close, head.chunked,
                               false, head.ndjson, head.coded, ""});
  }
  void on_response_body(std::span<const uint8_t> bytes) override {
    seen_.responses.back().body.append(bytes.begin(), bytes.end());
  }
  void on_response_complete() override { seen_.responses.back().complete = true; }

 private:
  Seen& seen_;
};

Seen run(const std::vector<bool>& head_requests, const std::vector<std::string_view>& pieces,
         bool close) {
  Seen seen;
  Recorder sink(seen);
  HttpResponseParser parser;
  for (bool head : head_requests) parser.expect_response(head);
  for (std::string_view piece : pieces) {
    seen.ok = parser.feed({reinterpret_cast<const uint8_t*>(piece.data()), piece.size()}, sink) &&
              seen.ok;
  }
  if (close) parser.end_of_stream(sink);
  return seen;
}

Seen run_every_way(const std::vector<bool>& heads, std::string_view input, bool close = false) {
  const Seen whole = run(heads, {input}, close);
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    EXPECT_EQ(run(heads, {input.substr(0, cut), input.substr(cut)}, close), whole) << "cut " << cut;
  }
  std::vector<std::string_view> single;
  for (std::size_t i = 0; i < input.size(); ++i) single.push_back(input.substr(i, 1));
  EXPECT_EQ(run(heads, single, close), whole);
  return whole;
}

TEST(HttpResponse, FramesContentLengthChunkedAndPipelinedResponses) {
  const Seen seen = run_every_way(
      {false, false},
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
      "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: t\r\n\r\n");
  ASSERT_TRUE(seen.ok);
  ASSERT_EQ(seen.responses.size(), 2u);
  EXPECT_EQ(seen.responses[0].body, "hello");
  EXPECT_TRUE(seen.responses[0].complete);
  EXPECT_TRUE(seen.responses[1].chunked);
  EXPECT_EQ(seen.responses[1].body, "abcde");
  EXPECT_TRUE(seen.responses[1].complete);
}

TEST(HttpResponse, RecognisesServerSentEvents) {
  const Seen seen = run_every_way({false},
                                  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; "
                                  "charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "f\r\ndata: {\"a\":1}\n\n\r\nc\r\ndata: [DONE]\r\n0\r\n\r\n");
  ASSERT_EQ(seen.responses.size(), 1u);
  EXPECT_TRUE(seen.responses[0].event_stream);
  EXPECT_EQ(seen.responses[0].body, "data: {\"a\":1}\n\ndata: [DONE]");
  EXPECT_TRUE(seen.responses[0].complete);
}

TEST(HttpResponse, SkipsInterimResponsesAndKnowsBodilessOnes) {
  const Seen seen =
      run_every_way({false, true, false},
                    "HTTP/1.1 100 Continue\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  // answers a HEAD: no body
                    "HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_EQ(seen.responses.size(), 3u);
  EXPECT_EQ(seen.responses[0].body, "ok");
  EXPECT_TRUE(seen.responses[1].complete);
  EXPECT_EQ(seen.responses[1].body, "");
  EXPECT_EQ(seen.responses[2].status, 204);
  EXPECT_TRUE(seen.responses[2].complete);
}

TEST(HttpResponse, ReadsABodyUntilTheConnectionCloses) {
  const Seen open = run({false}, {"HTTP/1.0 200 OK\r\n\r\npartial"}, false);
  EXPECT_FALSE(open.responses.at(0).complete);
  const Seen closed =
      run_every_way({false}, "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nall of it", true);
  EXPECT_TRUE(closed.responses.at(0).until_close);
  EXPECT_EQ(closed.responses.at(0).body, "all of it");
  EXPECT_TRUE(closed.responses.at(0).complete);
}

TEST(HttpResponse, FailsOnWhatItCannotFrame) {
  EXPECT_FALSE(run({false}, {"SSH-2.0-OpenSSH\r\n"}, false).ok);
  EXPECT_FALSE(
      run({false}, {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}, false).ok);
  EXPECT_FALSE(
      run({false}, {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"}, false).ok);
}

// RFC 9112 §7.1 as h11 reads it: up to 20 hex digits (leading zeros), then whitespace or
// extensions; more digits, or anything else after them, is no framing anyone agrees on.
TEST(HttpResponse, ReadsChunkSizesOfUpToTwentyDigitsAsH11Does) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const Seen twenty =
      run_every_way({false}, head + std::string(19, '0') + "3\r\nabc\r\n" + "2 \t;ext=1\r\nde\r\n" +
                                 std::string(20, '0') + "\r\n\r\n");
  ASSERT_TRUE(twenty.ok);
  EXPECT_EQ(twenty.responses.at(0).body, "abcde");
  EXPECT_TRUE(twenty.responses.at(0).complete);
  for (const std::string& size : {std::string(20, '0') + "3", std::string("3 x"), std::string("3x"),
                                  std::string("10000000000000000"), std::string(";ext")}) {
    const std::string input = head + size + "\r\nabc\r\n0\r\n\r\n";
    EXPECT_FALSE(run_every_way({false}, input).ok) << size;
  }
}

TEST(HttpResponse, ASecondContentTypeMakesTheBodyUnreadable) {
  const Seen two = run_every_way({false},
                                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 "content-type: text/event-stream\r\nContent-Length: 2\r\n\r\n{}");
  ASSERT_TRUE(two.ok);
  EXPECT_TRUE(two.responses.at(0).coded);
  const Seen one = run_every_way(
      {false}, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_FALSE(one.responses.at(0).coded);
}

TEST(HttpResponse, RecognisesOllamaNdjson) {
  const Seen seen = run_every_way(
      {false},
      "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 3\r\n\r\n{}\n");
  EXPECT_TRUE(seen.responses.at(0).ndjson);
  EXPECT_FALSE(seen.responses.at(0).event_stream);
}

}  // namespace
}  // namespace sluice
