// The HTTP answer Sluice sends in place of a refused request: a status line for the reason, the
// OpenAI error body that client SDKs already parse, and for a 429 the headers that tell a client
// when to come back — `retry-after` (whole seconds, rounded up), `retry-after-ms`, and the
// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` of the bucket that denied. Then
// `connection: close`: the flow ends after it.
//
//   HTTP/1.1 429 Too Many Requests
//   content-type: application/json
//   retry-after: 2
//   retry-after-ms: 1500
//   x-ratelimit-limit-requests: 3
//   x-ratelimit-remaining-requests: 0
//   x-ratelimit-reset-requests: 2.5s
//   content-length: 112
//   connection: close
//
//   {"error":{"message":"request rate limit reached","type":"requests","param":null,
//    "code":"rate_limited_requests"}}
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "sluice/http_response.hpp"
#include "sluice/request_reason.hpp"

namespace sluice {

// Room write_denial needs at most.
inline constexpr std::size_t kMaxDenialBytes = 1024;

// Writes the answer for `refusal` into `out`; returns its length (0 when out is too small,
// never with out.size() >= kMaxDenialBytes).
std::size_t write_denial(const Refusal& refusal, std::span<char> out);

// The end Sluice puts to a streamed (text/event-stream) response whose completion a rule refused:
// `event_end` (what finishes the client's event in progress, CompletionExtractor::
// write_event_end), then an SSE error event — the OpenAI SDKs raise it as an APIError with the
// reason as its code —
//
//   event: error
//   data: {"error":{"message":"…","type":"invalid_request_error","param":null,"code":"…"}}
//
// framed for where the body stands (`at`, before the dropped bytes): a chunk and the last chunk
// when chunked (the chunk in progress completed, with the first bytes, or padded with blank
// lines, which SSE ignores); padded to the bytes a Content-Length still owes; as is when the
// close ends the body. Returns 0 when it cannot be framed in `out` (inside a chunk-size line, a
// chunk larger than the buffer, more than the Content-Length owes): the flow is reset instead.
std::size_t write_stream_denial(const Refusal& refusal, BodyPosition at, std::string_view event_end,
                                std::span<char> out);

// The OpenAI error `type` for a reason: "requests" or "tokens" for rate limits (as OpenAI's
// own 429s say), "invalid_request_error" otherwise.
std::string_view error_type(RequestReason reason);

// A duration as OpenAI's x-ratelimit-reset-* headers write it: "0s", "20ms", "1.5s", "6m0s",
// "1h2m3s" (rounded up to the millisecond).
std::string format_reset(uint64_t ns);

}  // namespace sluice
