// Incremental HTTP/1.1 request parser (RFC 9112) for one direction of one flow: fed the flow's
// in-order bytes in pieces split anywhere (down to one byte), it reports each request's head,
// its de-chunked body and its end, for keep-alive and pipelined requests alike. Strict by
// default: every deviation is a named RequestReason with the status the enforcement stage
// sends. State is a fixed-size byte machine (no header buffering, no allocation): only the
// method, the target and the values of the few headers Sluice needs are kept, each bounded.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "sluice/request_reason.hpp"

namespace sluice {

inline constexpr std::size_t kMaxMethodBytes = 16;
inline constexpr std::size_t kMaxTargetBytes = 1024;
inline constexpr std::size_t kMaxKeyBytes = 256;
inline constexpr std::size_t kMaxValueBytes = 256;  // Host, Content-Type, … values kept
inline constexpr std::size_t kMaxMethods = 12;
// Longest header field name offered to HttpRequestSink::on_field_name (longer ones never are).
inline constexpr std::size_t kMaxFieldNameBytes = 64;

// Header fields that can carry an API key or a session secret: never offered to a sink, so no
// rule can scan (or log) them. The key itself reaches admission through RequestHead::key only.
bool is_secret_field(std::string_view lower_name);

struct HttpLimits {
  uint32_t max_header_bytes = 16384;  // request line + header section (and trailers)
  uint32_t max_headers = 100;
  uint64_t max_body_bytes = 4u << 20;  // after de-chunking, before content decoding
  // Methods allowed on inspected ports; CONNECT is always refused (http_connect).
  std::array<std::string_view, kMaxMethods> methods = {"GET",   "HEAD",   "POST",   "PUT",
                                                       "PATCH", "DELETE", "OPTIONS"};
};

enum class BodyFraming : uint8_t { kNone, kContentLength, kChunked };
enum class ContentEncoding : uint8_t { kIdentity, kGzip, kDeflate };

// Where the API key came from, and whether the request carried exactly one.
enum class KeySource : uint8_t { kNone, kAuthorizationBearer, kXApiKey, kApiKey };
enum class KeyStatus : uint8_t {
  kAbsent,       // no key header
  kPresent,      // exactly one key
  kDuplicated,   // the same key more than once (in one or several headers)
  kConflicting,  // different keys, more than one Authorization field (whatever their schemes),
                 // or x-api-key / api-key next to an Authorization of another scheme
};

// A request's head, valid during HttpRequestSink::on_head only (views point into the parser).
struct RequestHead {
  std::string_view method;
  std::string_view target;
  uint8_t version_minor = 1;  // HTTP/1.x
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  ContentEncoding content_encoding = ContentEncoding::kIdentity;
  // Content-Type application/json or */*+json. Informative only: every body on an inspected
  // port is read as JSON whatever its declared type (hosts parse it as JSON anyway).
  bool json = false;
  bool expect_continue = false;
  // False: the request closes the connection (HTTP/1.1 `Connection: close`, HTTP/1.0 without
  // `keep-alive`); the parser reads nothing after it (closed()).
  bool keep_alive = true;
  std::string_view host;
  KeySource key_source = KeySource::kNone;
  KeyStatus key_status = KeyStatus::kAbsent;
  std::string_view key;  // the first key seen (empty when absent); never logged
};

class HttpRequestSink {
 public:
  virtual ~HttpRequestSink() = default;
  // Each header field of the head (not the trailers) but the secret ones (is_secret_field) is
  // offered by its lower-case name before on_head. When the sink takes it (returns true), its
  // value follows in pieces — optional whitespace around it removed, the pieces views valid
  // during the call — and then on_field_end. A head the parser refuses ends without them.
  virtual bool on_field_name(std::string_view /*lower_name*/) { return false; }
  virtual void on_field_value(std::span<const uint8_t> /*bytes*/) {}
  virtual void on_field_end() {}
  virtual void on_head(const RequestHead& head) = 0;
  // Body bytes in order, chunk framing removed (still content-encoded).
  virtual void on_body(std::span<const uint8_t> bytes) = 0;
  virtual void on_complete() = 0;
};

class HttpRequestParser {
 public:
  explicit HttpRequestParser(const HttpLimits* limits) : limits_(limits) {}

  // Parses as much of `bytes` as forms requests, reporting to `sink`. Returns ok, or the first
  // rejection; after a rejection the parser stays failed (every later call returns it).
  // A request that closes the connection (RequestHead::keep_alive false) is the last one the
  // host reads (RFC 9112 §9.6; h11 and llhttp read nothing after it): when bytes follow it in the
  // same call it is refused (http_data_after_close) rather than completed, since the piece that
  // completes it would carry bytes no one inspected; when it completes at the end of a call the
  // parser is closed() and reads nothing more (later calls return ok and consume nothing).
  RequestReason feed(std::span<const uint8_t> bytes, HttpRequestSink& sink);

  // The bytes between requests: no request is in progress.
  bool idle() const { return state_ == State::kStart && pending_line_bytes_ == 0; }
  // A request that closes the connection has completed: later bytes are not the host's to read.
  bool closed() const { return state_ == State::kClosed; }
  RequestReason failure() const { return failure_; }
  uint64_t requests_completed() const { return requests_completed_; }

 private:
  enum class State : uint8_t {
    kStart,    // before a request line (leading CRLFs allowed)
    kStartLf,  // CR seen before a request line
    kMethod,
    kTarget,
    kVersion,
    kRequestLineLf,  // CR after the version seen
    kLineStart,      // at the start of a header line (or the end of the section)
    kHeaderName,
    kValueStart,  // optional whitespace after the colon
    kValue,
    kValueLf,    // CR inside a header line seen
    kHeadEndLf,  // CR of the empty line seen
    kBody,       // Content-Length body
    kChunkSize,
    kChunkExtension,
    kChunkSizeLf,
    kChunkData,
    kChunkDataCr,
    kChunkDataLf,
    kClosed,  // after a request that closes the connection
    kFailed,
  };
  // The headers whose values matter; everything else is checked for syntax and skipped.
  enum class Header : uint8_t {
    kOther,
    kHost,
    kContentLength,
    kTransferEncoding,
    kContentType,
    kContentEncoding,
    kAuthorization,
    kXApiKey,
    kApiKey,
    kExpect,
    kConnection,
    kUpgrade,
    kHttp2Settings,
  };

  RequestReason fail(RequestReason reason);
  RequestReason count_header_byte();
  RequestReason end_of_request_line();
  RequestReason end_of_header_line(HttpRequestSink& sink);
  void offer_field(HttpRequestSink& sink);
  void stream_value(const uint8_t* first, const uint8_t* last, HttpRequestSink& sink);
  RequestReason end_of_head(HttpRequestSink& sink, bool more);
  RequestReason complete(HttpRequestSink& sink, bool more);
  void begin_request();
  void note_key(KeySource source, std::string_view key);
  bool method_allowed() const;

  const HttpLimits* limits_;
  State state_ = State::kStart;
  RequestReason failure_ = RequestReason::ok;
  uint64_t requests_completed_ = 0;

  // Per request.
  uint32_t header_bytes_ = 0;
  uint32_t header_count_ = 0;
  uint32_t pending_line_bytes_ = 0;  // leading CRLFs seen before the request line
  uint8_t method_length_ = 0;
  uint16_t target_length_ = 0;
  uint8_t version_length_ = 0;
  uint8_t version_minor_ = 1;
  bool chunked_ = false;
  bool transfer_encoding_seen_ = false;
  bool content_length_seen_ = false;
  bool connection_close_ = false;
  bool connection_keep_alive_ = false;
  bool connection_upgrade_ = false;
  bool expect_continue_ = false;
  bool json_ = false;
  bool in_trailers_ = false;
  bool content_type_seen_ = false;
  bool closes_ = false;                      // the request closes the connection
  bool authorization_other_scheme_ = false;  // an Authorization field not Bearer
  uint8_t authorization_count_ = 0;          // saturates at 2: more than one is a conflict
  uint8_t host_count_ = 0;
  ContentEncoding content_encoding_ = ContentEncoding::kIdentity;
  KeySource key_source_ = KeySource::kNone;
  KeyStatus key_status_ = KeyStatus::kAbsent;
  uint16_t key_length_ = 0;
  uint16_t host_length_ = 0;
  uint64_t content_length_ = 0;
  uint64_t body_remaining_ = 0;  // in the Content-Length body or the current chunk
  uint64_t body_total_ = 0;
  uint8_t chunk_digits_ = 0;

  // Per header line.
  Header header_ = Header::kOther;
  // Whether the sink took this field's value: streamed as read (fields not kept), or handed over
  // whole from value_ when the line ends (the fields kept).
  enum class Offer : uint8_t { kNone, kStream, kAtEnd };
  Offer offer_ = Offer::kNone;
  uint8_t held_space_length_ = 0;  // whitespace of a streamed value not handed over yet
  char held_space_[16];
  uint8_t name_length_ = 0;
  uint16_t value_length_ = 0;
  bool value_overflow_ = false;
  uint8_t trailing_spaces_ = 0;  // whitespace at the value's end, trimmed when the line ends

  char method_[kMaxMethodBytes];
  char version_[8];
  char name_[kMaxFieldNameBytes];  // lower-cased
  char target_[kMaxTargetBytes];
  char key_[kMaxKeyBytes];
  char host_[kMaxValueBytes];
  char value_[kMaxValueBytes + 16];  // room for "Bearer " before a key of kMaxKeyBytes
};

}  // namespace sluice
