// Why a request is refused before any policy looks at it: every rejection of the HTTP
// assembler, the content decoder, the JSON extractor and the canonicaliser, declared once with
// the HTTP status the enforcement stage sends and a short text for people.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace sluice {

// X(name, status, text)
#define SLUICE_REQUEST_REASONS(X)                                                                \
  X(ok, 200, "accepted")                                                                         \
  /* HTTP/1.1 framing (RFC 9112) */                                                              \
  X(http_bad_request_line, 400, "malformed request line")                                        \
  X(http_09_request, 400, "HTTP/0.9 request")                                                    \
  X(http_bad_version, 505, "HTTP version other than 1.0 or 1.1")                                 \
  X(http_method_not_allowed, 405, "method outside the allowed set")                              \
  X(http_connect, 400, "CONNECT on an inspected port")                                           \
  X(http_uri_too_long, 414, "request target over the limit")                                     \
  X(http_upgrade, 400, "Upgrade (h2c, websocket, ...) on an inspected port")                     \
  X(http_bad_header, 400, "malformed header field")                                              \
  X(http_space_before_colon, 400, "whitespace between header name and colon")                    \
  X(http_obs_fold, 400, "obsolete line folding")                                                 \
  X(http_bare_cr, 400, "CR not followed by LF")                                                  \
  X(http_bare_lf, 400, "LF without CR")                                                          \
  X(http_control_character, 400, "NUL or control character in a header")                         \
  X(http_header_too_large, 431, "header section over the limit")                                 \
  X(http_too_many_headers, 431, "more header fields than the limit")                             \
  X(http_content_length_and_transfer_encoding, 400, "both Content-Length and Transfer-Encoding") \
  X(http_conflicting_content_length, 400, "differing Content-Length values")                     \
  X(http_bad_content_length, 400, "invalid Content-Length")                                      \
  X(http_unsupported_transfer_encoding, 400, "Transfer-Encoding other than chunked")             \
  X(http_bad_chunk_size, 400, "invalid chunk size")                                              \
  X(http_chunk_size_overflow, 400, "chunk size too large")                                       \
  X(http_bad_chunk_framing, 400, "chunk data not followed by CRLF")                              \
  X(http_body_too_large, 413, "body over the limit")                                             \
  X(http_missing_host, 400, "HTTP/1.1 request without Host")                                     \
  X(http_duplicate_host, 400, "more than one Host")                                              \
  X(http_duplicate_content_type, 400, "more than one Content-Type")                              \
  X(http_data_after_close, 400, "bytes after a request that closes the connection")              \
  /* content */                                                                                  \
  X(content_unsupported_encoding, 415, "Content-Encoding other than gzip or deflate")            \
  X(content_unsupported_charset, 415, "charset other than UTF-8")                                \
  X(content_bad_compressed_data, 400, "compressed body does not decode")                         \
  X(content_decompression_bomb, 413, "decoded body over the size or ratio limit")                \
  /* JSON prompt extraction */                                                                   \
  X(json_invalid, 400, "invalid JSON")                                                           \
  X(json_duplicate_key, 400, "duplicate key in an object")                                       \
  X(json_escaped_known_key, 400, "escaped key that decodes to a known field")                    \
  X(json_too_deep, 400, "nesting deeper than the limit")                                         \
  X(json_lone_surrogate, 400, "lone UTF-16 surrogate in a string")                               \
  X(json_invalid_utf8, 400, "invalid UTF-8")                                                     \
  X(json_field_too_long, 400, "a scalar field (model, ...) over its length limit")               \
  X(json_request_chat_template, 400, "a chat template in the request, which the host would run") \
  /* admission: identity, tier, limits (admission.hpp) */                                        \
  X(missing_api_key, 401, "no API key (Authorization: Bearer, x-api-key or api-key)")            \
  X(invalid_api_key, 401, "API key not recognised")                                              \
  X(conflicting_api_keys, 401, "more than one different API key")                                \
  X(endpoint_not_allowed, 403, "endpoint not allowed for this tier")                             \
  X(model_not_allowed, 403, "model not allowed for this tier")                                   \
  X(prompt_token_ids, 400, "prompt given as token ids, which cannot be inspected")               \
  X(tier_body_too_large, 413, "body over the tier's limit")                                      \
  X(max_output_tokens_over_cap, 400, "requested completion size over the tier's cap")            \
  X(tokens_over_burst, 413, "request needs more tokens than the tier's token burst")             \
  X(content_policy_violation, 403, "the request was refused by a content policy rule")           \
  X(rule_scan_failed, 503, "the content scan could not be completed")                            \
  X(identity_suspended, 403, "identity suspended after repeated flagged requests")               \
  X(completion_policy_violation, 403, "the response was cut by a content policy rule")           \
  X(completion_unreadable, 502, "the response cannot be read for its content rules")             \
  X(rate_limited_requests, 429, "request rate limit reached")                                    \
  X(rate_limited_tokens, 429, "token rate limit reached")                                        \
  X(concurrency_limited, 429, "too many requests in flight")

enum class RequestReason : uint8_t {
#define SLUICE_REASON_ENUM(name, status, text) name,
  SLUICE_REQUEST_REASONS(SLUICE_REASON_ENUM)
#undef SLUICE_REASON_ENUM
};

struct RequestReasonInfo {
  std::string_view name;
  uint16_t status;
  std::string_view text;
};

inline constexpr std::array kRequestReasons = {
#define SLUICE_REASON_INFO(name, status, text) RequestReasonInfo{#name, status, text},
    SLUICE_REQUEST_REASONS(SLUICE_REASON_INFO)
#undef SLUICE_REASON_INFO
};

inline constexpr std::size_t kRequestReasonCount = kRequestReasons.size();

constexpr const RequestReasonInfo& info_of(RequestReason reason) {
  return kRequestReasons[static_cast<std::size_t>(reason)];
}

// Reasons for cutting an admitted request's response (completion rules): such a request was
// counted admitted when it was; these count the responses cut, not more requests.
constexpr bool is_response_reason(RequestReason reason) {
  return reason == RequestReason::completion_policy_violation ||
         reason == RequestReason::completion_unreadable;
}

// The bucket a 429 describes, for its x-ratelimit-*-<kind> headers.
enum class LimitKind : uint8_t { kNone, kRequests, kTokens, kConcurrent };

// Why and how a request is refused: the reason, and for a limit the state of the bucket that
// denied it, as the 429's retry-after and x-ratelimit-* headers report it. A value: filled where
// the decision is made, formatted into the answer only when it is sent (denial.hpp).
struct Refusal {
  RequestReason reason = RequestReason::ok;
  LimitKind bucket = LimitKind::kNone;
  uint64_t limit = 0;           // the bucket's size (burst, token burst or max in flight)
  uint64_t remaining = 0;       // whole units left when it denied
  uint64_t reset_after_ns = 0;  // until the bucket is full again
  uint64_t retry_after_ns = 0;  // until this request would have been admitted
  // Said to the client after the reason's text when not empty (a rule id, when the config
  // discloses them). Must stay valid until the answer is sent, in the same burst.
  std::string_view detail;
  bool refused() const { return reason != RequestReason::ok; }
};

}  // namespace sluice
