#include "sluice/http_request.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

// Everything the parser reported, flattened so two runs can be compared.
struct Recorded {
  struct Request {
    std::string method, target, host, key, body;
    uint8_t version_minor = 0;
    BodyFraming framing = BodyFraming::kNone;
    uint64_t content_length = 0;
    ContentEncoding encoding = ContentEncoding::kIdentity;
    KeySource key_source = KeySource::kNone;
    KeyStatus key_status = KeyStatus::kAbsent;
    bool json = false, expect_continue = false, keep_alive = false, complete = false;
    bool operator==(const Request&) const = default;
  };
  std::vector<Request> requests;
  RequestReason reason = RequestReason::ok;
  bool operator==(const Recorded&) const = default;
};

class RecordingSink final : public HttpRequestSink {
 public:
  explicit RecordingSink(Recorded& out) : out_(out) {}
  void on_head(const RequestHead& head) override {
    Recorded::Request r;
    r.method = std::string(head.method);
    r.target = std::string(head.target);
    r.host = std::string(head.host);
    r.key = std::string(head.key);
    r.version_minor = head.version_minor;
    r.framing = head.framing;
    r.content_length = head.content_length;
    r.encoding = head.content_encoding;
    r.key_source = head.key_source;
    r.key_status = head.key_status;
    r.json = head.json;
    r.expect_continue = head.expect_continue;
    r.keep_alive = head.keep_alive;
    out_.requests.push_back(r);
  }
  void on_body(std::span<const uint8_t> bytes) override {
    out_.requests.back().body.append(bytes.begin(), bytes.end());
  }
  void on_complete() override { out_.requests.back().complete = true; }

 private:
  Recorded& out_;
};

std::span<const uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// Feeds `pieces` in order to a fresh parser.
Recorded parse_pieces(const std::vector<std::string_view>& pieces, const HttpLimits& limits = {}) {
  Recorded out;
  RecordingSink sink(out);
  HttpRequestParser parser(&limits);
  for (std::string_view piece : pieces) {
    out.reason = parser.feed(bytes_of(piece), sink);
    if (out.reason != RequestReason::ok) break;
  }
  return out;
}

// The input whole, then split at every byte position, then byte by byte: all must agree.
Recorded parse_every_way(std::string_view input, const HttpLimits& limits = {}) {
  const Recorded whole = parse_pieces({input}, limits);
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    const Recorded split = parse_pieces({input.substr(0, cut), input.substr(cut)}, limits);
    EXPECT_EQ(split, whole) << "split at byte " << cut << " of:\n" << input;
  }
  std::vector<std::string_view> single;
  for (std::size_t i = 0; i < input.size(); ++i) single.push_back(input.substr(i, 1));
  EXPECT_EQ(parse_pieces(single, limits), whole) << "byte by byte:\n" << input;
  return whole;
}

constexpr std::string_view kChat =
    "POST /v1/chat/completions HTTP/1.1\r\n"
    "Host: inference.example\r\n"
    "Authorization: Bearer sk-test-123\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 27\r\n"
    "\r\n"
    "{\"model\":\"m\",\"messages\":[]}";

TEST(HttpRequest, ParsesAChatRequestHeadAndBody) {
  const Recorded r = parse_every_way(kChat);
  ASSERT_EQ(r.reason, RequestReason::ok);
  ASSERT_EQ(r.requests.size(), 1u);
  const auto& q = r.requests[0];
  EXPECT_EQ(q.method, "POST");
  EXPECT_EQ(q.target, "/v1/chat/completions");
  EXPECT_EQ(q.host, "inference.example");
  EXPECT_EQ(q.key, "sk-test-123");
  EXPECT_EQ(q.key_source, KeySource::kAuthorizationBearer);
  EXPECT_EQ(q.key_status, KeyStatus::kPresent);
  EXPECT_TRUE(q.json);
  EXPECT_EQ(q.framing, BodyFraming::kContentLength);
  EXPECT_EQ(q.body, "{\"model\":\"m\",\"messages\":[]}");
  EXPECT_TRUE(q.complete);
  EXPECT_TRUE(q.keep_alive);
}

TEST(HttpRequest, ParsesPipelinedRequestsInOrder) {
  const std::string input =
      std::string(kChat) + "GET /v1/models HTTP/1.1\r\nHost: h\r\n\r\n" + std::string(kChat);
  const Recorded r = parse_every_way(input);
  ASSERT_EQ(r.reason, RequestReason::ok);
  ASSERT_EQ(r.requests.size(), 3u);
  EXPECT_EQ(r.requests[1].method, "GET");
  EXPECT_EQ(r.requests[1].framing, BodyFraming::kNone);
  EXPECT_TRUE(r.requests[1].complete);
  EXPECT_EQ(r.requests[2].body, r.requests[0].body);
}

TEST(HttpRequest, RemovesChunkFramingAndReadsTrailers) {
  const Recorded r = parse_every_way(
      "POST /v1/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n"
      "1;ext=\"x\"\r\n \r\n"
      "00006\r\nworld!\r\n"
      "0\r\nX-Trailer: t\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(r.reason, RequestReason::ok);
  ASSERT_EQ(r.requests.size(), 2u);
  EXPECT_EQ(r.requests[0].framing, BodyFraming::kChunked);
  EXPECT_EQ(r.requests[0].body, "hello world!");
  EXPECT_TRUE(r.requests[0].complete);
  EXPECT_TRUE(r.requests[1].complete);
}

TEST(HttpRequest, IgnoresEmptyLinesBeforeARequest) {
  const Recorded r = parse_every_way("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(r.reason, RequestReason::ok);
  EXPECT_EQ(r.requests.size(), 1u);
}

TEST(HttpRequest, ReadsEveryKeyHeader) {
  struct Case {
    std::string headers;
    KeySource source;
    KeyStatus status;
    std::string key;
  };
  const std::vector<Case> cases = {
      {"", KeySource::kNone, KeyStatus::kAbsent, ""},
      {"Authorization: bearer k1\r\n", KeySource::kAuthorizationBearer, KeyStatus::kPresent, "k1"},
      {"authorization: BEARER   k1  \r\n", KeySource::kAuthorizationBearer, KeyStatus::kPresent,
       "k1"},
      {"Authorization: Basic dXNlcjpwYXNz\r\n", KeySource::kNone, KeyStatus::kAbsent, ""},
      {"x-api-key: k2\r\n", KeySource::kXApiKey, KeyStatus::kPresent, "k2"},
      {"api-key: k3\r\n", KeySource::kApiKey, KeyStatus::kPresent, "k3"},
      {"x-api-key: k2\r\nx-api-key: k2\r\n", KeySource::kXApiKey, KeyStatus::kDuplicated, "k2"},
      {"Authorization: Bearer k1\r\nx-api-key: k1\r\n", KeySource::kAuthorizationBearer,
       KeyStatus::kDuplicated, "k1"},
      {"Authorization: Bearer k1\r\napi-key: k9\r\n", KeySource::kAuthorizationBearer,
       KeyStatus::kConflicting, "k1"},
      {"x-api-key: a\r\nx-api-key: a\r\napi-key: b\r\n", KeySource::kXApiKey,
       KeyStatus::kConflicting, "a"},
      // A second Authorization field, whatever the schemes and even with the same key, is a
      // conflict: a host may read the first, the last or both joined.
      {"Authorization: Basic dXNlcjpwYXNz\r\nAuthorization: Bearer k1\r\n",
       KeySource::kAuthorizationBearer, KeyStatus::kConflicting, "k1"},
      {"Authorization: Bearer k1\r\nAuthorization: Basic dXNlcjpwYXNz\r\n",
       KeySource::kAuthorizationBearer, KeyStatus::kConflicting, "k1"},
      {"Authorization: Bearer k1\r\nAuthorization: Bearer k1\r\n", KeySource::kAuthorizationBearer,
       KeyStatus::kConflicting, "k1"},
      {"Authorization: Basic a\r\nAuthorization: Digest b\r\n", KeySource::kNone,
       KeyStatus::kConflicting, ""},
      // A key field next to an Authorization that carries no key: two identities.
      {"Authorization: Basic dXNlcjpwYXNz\r\nx-api-key: k2\r\n", KeySource::kXApiKey,
       KeyStatus::kConflicting, "k2"},
      {"api-key: k3\r\nAuthorization: Token k3\r\n", KeySource::kApiKey, KeyStatus::kConflicting,
       "k3"},
      {"Authorization: Digest username=\"u\"\r\n", KeySource::kNone, KeyStatus::kAbsent, ""},
  };
  for (const Case& c : cases) {
    const std::string input = "GET / HTTP/1.1\r\nHost: h\r\n" + c.headers + "\r\n";
    const Recorded r = parse_every_way(input);
    ASSERT_EQ(r.reason, RequestReason::ok) << c.headers;
    ASSERT_EQ(r.requests.size(), 1u);
    EXPECT_EQ(r.requests[0].key_source, c.source) << c.headers;
    EXPECT_EQ(r.requests[0].key_status, c.status) << c.headers;
    EXPECT_EQ(r.requests[0].key, c.key) << c.headers;
  }
}

TEST(HttpRequest, ReadsContentTypeEncodingExpectAndConnection) {
  const Recorded r = parse_every_way(
      "POST / HTTP/1.0\r\nContent-Type: Application/Vnd.Api+JSON; charset=\"UTF-8\"\r\n"
      "Content-Encoding: gzip\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n"
      "Content-Length: 0\r\n\r\n");
  ASSERT_EQ(r.reason, RequestReason::ok);
  const auto& q = r.requests.at(0);
  EXPECT_TRUE(q.json);
  EXPECT_EQ(q.encoding, ContentEncoding::kGzip);
  EXPECT_TRUE(q.expect_continue);
  EXPECT_TRUE(q.keep_alive);
  EXPECT_EQ(q.version_minor, 0);
  EXPECT_TRUE(q.complete);
}

TEST(HttpRequest, AcceptsIdenticalDuplicateContentLengths) {
  const Recorded r = parse_every_way(
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok");
  ASSERT_EQ(r.reason, RequestReason::ok);
  EXPECT_EQ(r.requests.at(0).body, "ok");
}

struct Rejection {
  const char* name;
  std::string input;
  RequestReason reason;
};

class HttpRequestRejects : public ::testing::TestWithParam<Rejection> {};

TEST_P(HttpRequestRejects, WithItsNamedReason) {
  const Recorded r = parse_every_way(GetParam().input);
  EXPECT_EQ(r.reason, GetParam().reason) << info_of(r.reason).name;
}

const std::string kHead = "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n";

INSTANTIATE_TEST_SUITE_P(
    Table, HttpRequestRejects,
    ::testing::Values(
        Rejection{"BothContentLengthAndChunked",
                  kHead + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                  RequestReason::http_content_length_and_transfer_encoding},
        Rejection{"ChunkedThenContentLength",
                  kHead + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                  RequestReason::http_content_length_and_transfer_encoding},
        Rejection{"DifferingContentLengths",
                  kHead + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
                  RequestReason::http_conflicting_content_length},
        Rejection{"DifferingContentLengthList", kHead + "Content-Length: 5, 6\r\n\r\n",
                  RequestReason::http_conflicting_content_length},
        Rejection{"SignedContentLength", kHead + "Content-Length: +5\r\n\r\n",
                  RequestReason::http_bad_content_length},
        Rejection{"HugeContentLength", kHead + "Content-Length: 99999999999999999999\r\n\r\n",
                  RequestReason::http_bad_content_length},
        Rejection{"EmptyContentLength", kHead + "Content-Length: \r\n\r\n",
                  RequestReason::http_bad_content_length},
        Rejection{"GzipTransferEncoding", kHead + "Transfer-Encoding: gzip, chunked\r\n\r\n",
                  RequestReason::http_unsupported_transfer_encoding},
        Rejection{"ChunkedTwice",
                  kHead + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                  RequestReason::http_unsupported_transfer_encoding},
        Rejection{"ChunkedWithSpaceInside", kHead + "Transfer-Encoding: chun ked\r\n\r\n",
                  RequestReason::http_unsupported_transfer_encoding},
        Rejection{"ObsFold", kHead + "X-A: b\r\n c\r\n\r\n", RequestReason::http_obs_fold},
        Rejection{"WhitespaceBeforeFirstField", "GET / HTTP/1.1\r\n Host: h\r\n\r\n",
                  RequestReason::http_bad_header},
        Rejection{"SpaceBeforeColon", kHead + "Content-Length : 5\r\n\r\n",
                  RequestReason::http_space_before_colon},
        Rejection{"TabBeforeColon", kHead + "X-A\t: b\r\n\r\n",
                  RequestReason::http_space_before_colon},
        Rejection{"BareCrInValue", kHead + "X-A: b\rc\r\n\r\n", RequestReason::http_bare_cr},
        Rejection{"BareLfEndsHeader", kHead + "X-A: b\n\r\n", RequestReason::http_bare_lf},
        Rejection{"BareLfEndsRequestLine", "GET / HTTP/1.1\nHost: h\r\n\r\n",
                  RequestReason::http_bare_lf},
        Rejection{"BareCrEndsHead", kHead + "\rX", RequestReason::http_bare_cr},
        Rejection{"NulInValue", kHead + std::string("X-A: b\0c\r\n\r\n", 12),
                  RequestReason::http_control_character},
        Rejection{"ControlInValue", kHead + "X-A: b\x01\r\n\r\n",
                  RequestReason::http_control_character},
        Rejection{"DelInValue", kHead + "X-A: b\x7f\r\n\r\n",
                  RequestReason::http_control_character},
        Rejection{"ControlInName", kHead + "X\x01: b\r\n\r\n",
                  RequestReason::http_control_character},
        Rejection{"NoColon", kHead + "NoColonHere\r\n\r\n", RequestReason::http_bad_header},
        Rejection{"BadChunkSize", kHead + "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                  RequestReason::http_bad_chunk_size},
        Rejection{"NegativeChunkSize", kHead + "Transfer-Encoding: chunked\r\n\r\n-1\r\n",
                  RequestReason::http_bad_chunk_size},
        Rejection{"SpaceAfterChunkSize",
                  kHead + "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
                  RequestReason::http_bad_chunk_size},
        Rejection{"OverflowingChunkSize",
                  kHead + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
                  RequestReason::http_chunk_size_overflow},
        Rejection{"ChunkDataTooLong", kHead + "Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                  RequestReason::http_bad_chunk_framing},
        Rejection{"Http09", "GET /index.html\r\n", RequestReason::http_09_request},
        Rejection{"Http2Preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                  RequestReason::http_method_not_allowed},
        Rejection{"Http2Version", "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
                  RequestReason::http_bad_version},
        Rejection{"GarbageVersion", "GET / HTTX/1.1\r\nHost: h\r\n\r\n",
                  RequestReason::http_bad_request_line},
        Rejection{"TraceMethod", "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n",
                  RequestReason::http_method_not_allowed},
        Rejection{"LowercaseMethod", "post / HTTP/1.1\r\nHost: h\r\n\r\n",
                  RequestReason::http_method_not_allowed},
        Rejection{"Connect", "CONNECT host:443 HTTP/1.1\r\nHost: host:443\r\n\r\n",
                  RequestReason::http_connect},
        Rejection{"UpgradeH2c",
                  kHead + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
                  RequestReason::http_upgrade},
        Rejection{"Http2Settings", kHead + "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
                  RequestReason::http_upgrade},
        Rejection{"WebSocket", kHead + "Upgrade: websocket\r\n\r\n", RequestReason::http_upgrade},
        Rejection{"MissingHost", "GET / HTTP/1.1\r\n\r\n", RequestReason::http_missing_host},
        Rejection{"DuplicateHost", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                  RequestReason::http_duplicate_host},
        Rejection{"Brotli", kHead + "Content-Encoding: br\r\n\r\n",
                  RequestReason::content_unsupported_encoding},
        Rejection{"TwoEncodings",
                  kHead + "Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n\r\n",
                  RequestReason::content_unsupported_encoding},
        Rejection{"Latin1", kHead + "Content-Type: application/json; charset=iso-8859-1\r\n\r\n",
                  RequestReason::content_unsupported_charset},
        Rejection{"Utf16", kHead + "Content-Type: text/plain;charset=\"utf-16\"\r\n\r\n",
                  RequestReason::content_unsupported_charset},
        Rejection{
            "DuplicateContentType",
            kHead + "Content-Type: application/json\r\nContent-Type: application/json\r\n\r\n",
            RequestReason::http_duplicate_content_type},
        Rejection{"DifferingContentTypes",
                  kHead + "Content-Type: text/plain\r\ncontent-type: application/json\r\n\r\n",
                  RequestReason::http_duplicate_content_type},
        Rejection{"EmptyContentTypeTwice", kHead + "Content-Type:\r\nContent-Type: \r\n\r\n",
                  RequestReason::http_duplicate_content_type},
        Rejection{"BearerWithoutKey", kHead + "Authorization: Bearer \r\n\r\n",
                  RequestReason::http_bad_header},
        Rejection{"LongTarget",
                  "GET /" + std::string(kMaxTargetBytes, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n",
                  RequestReason::http_uri_too_long},
        Rejection{"LongKey",
                  kHead + "x-api-key: " + std::string(kMaxKeyBytes + 1, 'k') + "\r\n\r\n",
                  RequestReason::http_bad_header},
        Rejection{"ContentLengthOverLimit", kHead + "Content-Length: 4194305\r\n\r\n",
                  RequestReason::http_body_too_large}),
    [](const ::testing::TestParamInfo<Rejection>& param) { return std::string(param.param.name); });

TEST(HttpRequest, RefusesAHeaderSectionOverTheLimit) {
  HttpLimits limits;
  limits.max_header_bytes = 100;
  const std::string fits = "GET / HTTP/1.1\r\nHost: h\r\nX-A: " + std::string(50, 'a') + "\r\n\r\n";
  EXPECT_EQ(parse_every_way(fits, limits).reason, RequestReason::ok);
  const std::string over = "GET / HTTP/1.1\r\nHost: h\r\nX-A: " + std::string(80, 'a') + "\r\n\r\n";
  EXPECT_EQ(parse_every_way(over, limits).reason, RequestReason::http_header_too_large);
}

TEST(HttpRequest, RefusesChunkedBodiesOverTheLimit) {
  HttpLimits limits;
  limits.max_body_bytes = 10;
  const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(parse_every_way(head + "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", limits).reason,
            RequestReason::ok);
  EXPECT_EQ(parse_every_way(head + "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", limits).reason,
            RequestReason::http_body_too_large);
}

TEST(HttpRequest, RefusesMoreHeadersThanTheLimit) {
  HttpLimits limits;
  limits.max_headers = 3;
  const Recorded r =
      parse_pieces({"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"}, limits);
  EXPECT_EQ(r.reason, RequestReason::http_too_many_headers);
}

TEST(HttpRequest, AllowsOnlyTheConfiguredMethods) {
  HttpLimits limits;
  limits.methods = {"POST"};
  EXPECT_EQ(parse_pieces({"GET / HTTP/1.1\r\nHost: h\r\n\r\n"}, limits).reason,
            RequestReason::http_method_not_allowed);
  EXPECT_EQ(parse_pieces({"POST / HTTP/1.1\r\nHost: h\r\n\r\n"}, limits).reason, RequestReason::ok);
}

TEST(HttpRequest, StaysFailedAfterARejection) {
  Recorded out;
  RecordingSink sink(out);
  const HttpLimits limits;
  HttpRequestParser parser(&limits);
  EXPECT_EQ(parser.feed(bytes_of("GET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n"), sink),
            RequestReason::http_space_before_colon);
  EXPECT_EQ(parser.feed(bytes_of("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), sink),
            RequestReason::http_space_before_colon);
  EXPECT_TRUE(out.requests.empty());
}

TEST(HttpRequest, ReportsIdleOnlyBetweenRequests) {
  Recorded out;
  RecordingSink sink(out);
  const HttpLimits limits;
  HttpRequestParser parser(&limits);
  EXPECT_TRUE(parser.idle());
  parser.feed(bytes_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab"), sink);
  EXPECT_FALSE(parser.idle());
  parser.feed(bytes_of("c"), sink);
  EXPECT_TRUE(parser.idle());
  EXPECT_EQ(parser.requests_completed(), 1u);
}

// Requests that close the connection, each with the bytes a client sent after it.
struct AfterClose {
  const char* name;
  std::string request;
  std::string after;
};

const std::vector<AfterClose> kAfterClose = {
    {"Http11Close",
     "POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"},
    {"Http11CloseInAList", "GET / HTTP/1.1\r\nHost: h\r\nConnection: TE, Close\r\n\r\n",
     "GET /second HTTP/1.1\r\nHost: h\r\n\r\n"},
    {"Http11CloseChunked",
     "POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
     "2\r\n{}\r\n0\r\nX-T: t\r\n\r\n",
     "\r\n"},
    {"Http10WithoutKeepAlive", "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", "G"},
    {"Http10KeepAliveAndClose",
     "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
     "GET / HTTP/1.0\r\n\r\n"},
};

TEST(HttpRequest, RefusesARequestThatClosesTheConnectionWhenBytesFollowItInThePiece) {
  for (const AfterClose& c : kAfterClose) {
    const std::string input = c.request + c.after;
    // Bytes after it in the piece that completes it, wherever the piece starts: refused
    // instead of completed (the piece carries bytes the host never reads).
    for (std::size_t cut = 0; cut < input.size(); ++cut) {
      if (cut == c.request.size()) continue;
      const Recorded r = parse_pieces({input.substr(0, cut), input.substr(cut)});
      EXPECT_EQ(r.reason, RequestReason::http_data_after_close) << c.name << " cut at " << cut;
      for (const auto& q : r.requests) EXPECT_FALSE(q.complete) << c.name << " cut at " << cut;
    }
  }
}

TEST(HttpRequest, ReadsNothingAfterARequestThatClosesTheConnection) {
  for (const AfterClose& c : kAfterClose) {
    // The request ends a piece: completed, and the bytes after it are not read, however they
    // come (in one piece, byte by byte, or forming a whole request).
    for (const bool byte_by_byte : {false, true}) {
      Recorded out;
      RecordingSink sink(out);
      const HttpLimits limits;
      HttpRequestParser parser(&limits);
      std::vector<std::string_view> pieces;
      const std::string_view request = c.request;
      if (byte_by_byte) {
        for (std::size_t i = 0; i < request.size(); ++i) pieces.push_back(request.substr(i, 1));
      } else {
        pieces.push_back(request);
      }
      for (std::string_view piece : pieces)
        ASSERT_EQ(parser.feed(bytes_of(piece), sink), RequestReason::ok);
      EXPECT_TRUE(parser.closed()) << c.name;
      EXPECT_FALSE(parser.idle()) << c.name;
      EXPECT_EQ(parser.feed(bytes_of(c.after), sink), RequestReason::ok) << c.name;
      EXPECT_EQ(parser.feed(bytes_of(c.request), sink), RequestReason::ok) << c.name;
      ASSERT_EQ(out.requests.size(), 1u) << c.name;
      EXPECT_TRUE(out.requests[0].complete) << c.name;
      EXPECT_FALSE(out.requests[0].keep_alive) << c.name;
      EXPECT_EQ(parser.requests_completed(), 1u) << c.name;
    }
  }
}

TEST(HttpRequest, ReadsPipelinedRequestsAfterAnHttp10KeepAlive) {
  const Recorded r = parse_every_way(
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(r.reason, RequestReason::ok);
  ASSERT_EQ(r.requests.size(), 2u);
  EXPECT_TRUE(r.requests[0].keep_alive);
  EXPECT_TRUE(r.requests[1].complete);
}

}  // namespace
}  // namespace sluice
