// Incremental HTTP/1.1 response framing (RFC 9112 §6.3) for the server → client direction, so
// a request's end-to-end life is known: status, framing (Content-Length, chunked, or until the
// connection closes), `text/event-stream`, interim 1xx responses, and bodiless responses (HEAD,
// 204, 304). The inference host is the protected side, so this reader is lenient where the
// request parser is strict, but bounded: lines are read through a fixed buffer.
#pragma once

#include <cstdint>
#include <span>

#include "sluice/http_request.hpp"  // ContentEncoding

namespace sluice {

struct ResponseHead {
  uint16_t status = 0;
  bool event_stream = false;  // Content-Type text/event-stream
  bool ndjson = false;        // Content-Type application/x-ndjson (Ollama's /api/ streams)
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool until_close = false;  // body delimited by the end of the connection
  // Content-Encoding gzip, x-gzip or deflate: the body handed on is that coding of the text.
  ContentEncoding encoding = ContentEncoding::kIdentity;
  bool coded = false;  // a coding besides those (br, zstd, a list of codings, a transfer coding
                       // other than chunked), or a second Content-Type (a client may follow
                       // either): the body bytes handed on cannot be read as text
};

// Where a response's body framing stands between two bytes, for Sluice to end the body itself.
struct BodyPosition {
  enum class Kind : uint8_t {
    kBetweenChunks,  // chunked, at the start of a chunk-size line
    kInChunk,        // chunked, `remaining` bytes of chunk data due (then CRLF)
    kInLength,       // Content-Length, `remaining` body bytes due
    kUntilClose,     // delimited by the end of the connection
    kElsewhere,      // inside a head, a chunk-size line, a chunk's CRLF or the trailers
  };
  Kind kind = Kind::kElsewhere;
  uint64_t remaining = 0;
};

class HttpResponseSink {
 public:
  virtual ~HttpResponseSink() = default;
  virtual void on_response_head(const ResponseHead& head) = 0;
  virtual void on_response_body(std::span<const uint8_t> bytes) = 0;  // de-chunked
  virtual void on_response_complete() = 0;
};

// Chunk sizes (RFC 9112 §7.1): 1 to kMaxChunkSizeDigits hex digits, as h11 takes them (leading
// zeros included; the value must fit 64 bits), then optional whitespace and chunk extensions
// (`;…`); anything else on the line fails the framing.
class HttpResponseParser {
 public:
  static constexpr uint32_t kMaxChunkSizeDigits = 20;
  // The request this response answers was a HEAD (its response has no body). Called once per
  // request, in order; up to kMaxPending requests may await their responses (pipelining).
  void expect_response(bool head_request);
  static constexpr uint32_t kMaxPending = 64;

  // Returns false when the bytes cannot be framed; the parser then stays failed.
  bool feed(std::span<const uint8_t> bytes, HttpResponseSink& sink);
  // The server closed its direction: completes a body delimited by the close.
  void end_of_stream(HttpResponseSink& sink);

  bool failed() const { return state_ == State::kFailed; }
  BodyPosition body_position() const;

 private:
  enum class State : uint8_t {
    kStatusLine,
    kHeaderLine,
    kBody,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailer,
    kUntilClose,
    kFailed
  };
  bool line_byte(uint8_t c);  // appends to line_; true when a full line is there
  bool end_of_status_line();
  void end_of_header_line();
  bool end_of_head(HttpResponseSink& sink);
  void complete(HttpResponseSink& sink);

  State state_ = State::kStatusLine;
  ResponseHead head_;
  uint64_t remaining_ = 0;
  uint32_t line_length_ = 0;    // bytes in the current line (only the first kLineBytes are kept)
  uint32_t pending_ = 0;        // requests awaiting a final response
  uint64_t head_requests_ = 0;  // bit i: the i-th pending request (from the oldest) was HEAD
  uint32_t oldest_ = 0;         // ring index of the oldest pending request
  bool chunked_ = false;
  bool close_ = false;
  bool content_type_ = false;  // a Content-Type field was seen in this head
  static constexpr uint32_t kLineBytes = 96;
  char line_[kLineBytes];
};

}  // namespace sluice
