#include "sluice/denial.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace sluice {
namespace {

std::string_view status_text(uint16_t status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

std::string_view kind_name(LimitKind kind) {
  switch (kind) {
    case LimitKind::kRequests:
      return "requests";
    case LimitKind::kTokens:
      return "tokens";
    case LimitKind::kConcurrent:
      return "concurrent";
    case LimitKind::kNone:
      break;
  }
  return "";
}

// Appends with snprintf semantics into [at, end); returns the new position (end when full).
template <typename... Args>
char* put(char* at, char* end, const char* format, Args... args) {
  if (at >= end) return end;
  const int n = std::snprintf(at, static_cast<std::size_t>(end - at), format, args...);
  return n < 0 || n >= end - at ? end : at + n;
}

constexpr uint64_t kNsPerMs = 1'000'000;

// The OpenAI error object for a refusal; returns its length (0 when it does not fit).
std::size_t write_error_body(const Refusal& refusal, std::span<char> out) {
  const RequestReasonInfo& info = info_of(refusal.reason);
  const std::string_view type = error_type(refusal.reason);
  // The detail is a rule id ([A-Za-z0-9._:-]); anything else is left out rather than escaped.
  std::string_view detail = refusal.detail.substr(0, 96);
  if (detail.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") !=
      std::string_view::npos)
    detail = {};
  const int length = std::snprintf(
      out.data(), out.size(),
      R"({"error":{"message":"%.*s%s%.*s","type":"%.*s","param":null,"code":"%.*s"}})",
      static_cast<int>(info.text.size()), info.text.data(), detail.empty() ? "" : ": ",
      static_cast<int>(detail.size()), detail.data(), static_cast<int>(type.size()), type.data(),
      static_cast<int>(info.name.size()), info.name.data());
  return length <= 0 || length >= static_cast<int>(out.size()) ? 0
                                                               : static_cast<std::size_t>(length);
}

}  // namespace

std::string_view error_type(RequestReason reason) {
  switch (reason) {
    case RequestReason::rate_limited_requests:
    case RequestReason::concurrency_limited:
      return "requests";
    case RequestReason::rate_limited_tokens:
      return "tokens";
    default:
      return "invalid_request_error";
  }
}

std::string format_reset(uint64_t ns) {
  const uint64_t ms = ns / kNsPerMs + (ns % kNsPerMs != 0);
  char text[48];
  if (ms == 0) return "0s";
  if (ms < 1000) {
    std::snprintf(text, sizeof text, "%llums", static_cast<unsigned long long>(ms));
    return text;
  }
  const uint64_t hours = ms / 3'600'000;
  const uint64_t minutes = ms / 60'000 % 60;
  const uint64_t seconds = ms / 1000 % 60;
  const uint64_t millis = ms % 1000;
  char* at = text;
  char* const end = text + sizeof text;
  if (hours > 0) at = put(at, end, "%lluh", static_cast<unsigned long long>(hours));
  if (hours > 0 || minutes > 0)
    at = put(at, end, "%llum", static_cast<unsigned long long>(minutes));
  at = put(at, end, "%llu", static_cast<unsigned long long>(seconds));
  if (millis != 0) {
    // Three digits, trailing zeros dropped: 1.5s, 1.25s, 1.001s.
    char digits[4];
    std::snprintf(digits, sizeof digits, "%03llu", static_cast<unsigned long long>(millis));
    int length = 3;
    while (length > 0 && digits[length - 1] == '0') --length;
    at = put(at, end, ".%.*s", length, digits);
  }
  put(at, end, "s");
  return text;
}

std::size_t write_denial(const Refusal& refusal, std::span<char> out) {
  const RequestReasonInfo& info = info_of(refusal.reason);
  char body[448];
  const std::size_t body_length = write_error_body(refusal, body);
  if (body_length == 0) return 0;

  const std::string_view phrase = status_text(info.status);
  char* const start = out.data();
  char* const end = out.data() + out.size();
  char* at =
      put(start, end, "HTTP/1.1 %u %.*s\r\ncontent-type: application/json\r\n",
          static_cast<unsigned>(info.status), static_cast<int>(phrase.size()), phrase.data());
  if (info.status == 429) {
    // RFC 9110 §10.2.3: delay-seconds, a whole number; rounded up so a client that waits it
    // out is admitted. A bucket without a known time (in flight) says one second.
    const uint64_t retry_ns = refusal.retry_after_ns == 0 ? 1'000'000'000 : refusal.retry_after_ns;
    const uint64_t retry_ms =
        std::max<uint64_t>(1, retry_ns / kNsPerMs + (retry_ns % kNsPerMs != 0));
    at = put(at, end, "retry-after: %llu\r\nretry-after-ms: %llu\r\n",
             static_cast<unsigned long long>((retry_ms + 999) / 1000),
             static_cast<unsigned long long>(retry_ms));
    const std::string_view kind = kind_name(refusal.bucket);
    if (!kind.empty()) {
      const int k = static_cast<int>(kind.size());
      at = put(at, end,
               "x-ratelimit-limit-%.*s: %llu\r\nx-ratelimit-remaining-%.*s: %llu\r\n"
               "x-ratelimit-reset-%.*s: %s\r\n",
               k, kind.data(), static_cast<unsigned long long>(refusal.limit), k, kind.data(),
               static_cast<unsigned long long>(refusal.remaining), k, kind.data(),
               format_reset(refusal.reset_after_ns).c_str());
    }
  }
  at = put(at, end, "content-length: %zu\r\nconnection: close\r\n\r\n%s", body_length, body);
  if (at >= end) return 0;
  return static_cast<std::size_t>(at - start);
}

std::size_t write_stream_denial(const Refusal& refusal, BodyPosition at, std::string_view event_end,
                                std::span<char> out) {
  char body[448];
  const std::size_t body_length = write_error_body(refusal, body);
  if (body_length == 0) return 0;
  char event[800];
  const int event_length = std::snprintf(event, sizeof event, "%.*sevent: error\ndata: %.*s\n\n",
                                         static_cast<int>(event_end.size()), event_end.data(),
                                         static_cast<int>(body_length), body);
  if (event_length <= 0 || event_length >= static_cast<int>(sizeof event)) return 0;
  const auto n = static_cast<std::size_t>(event_length);

  char* const start = out.data();
  char* const end = out.data() + out.size();
  char* put_at = start;
  // `count` bytes of the event from `from`, then blank lines up to `width` bytes.
  const auto put_event = [&](std::size_t from, std::size_t count, std::size_t width) {
    if (static_cast<std::size_t>(end - put_at) < std::max(count, width)) return false;
    std::memcpy(put_at, event + from, count);
    put_at += count;
    for (; count < width; ++count) *put_at++ = '\n';
    return true;
  };
  const auto put_text = [&](const char* text) {
    put_at = put(put_at, end, "%s", text);
    return put_at < end;
  };
  const auto put_chunk = [&](std::size_t from, std::size_t count) {
    put_at = put(put_at, end, "%zx\r\n", count);
    return put_at < end && put_event(from, count, count) && put_text("\r\n");
  };
  switch (at.kind) {
    case BodyPosition::Kind::kUntilClose:
      if (!put_event(0, n, n)) return 0;
      break;
    case BodyPosition::Kind::kInLength:
      if (n > at.remaining) return 0;
      // Padded to what the length still owes, when that fits; else the body ends short.
      if (!put_event(0, n, at.remaining <= out.size() ? at.remaining : n)) return 0;
      break;
    case BodyPosition::Kind::kBetweenChunks:
      if (!put_chunk(0, n) || !put_text("0\r\n\r\n")) return 0;
      break;
    case BodyPosition::Kind::kInChunk: {
      // The chunk in progress takes the event's first bytes (or all of it and blank lines).
      const std::size_t first = std::min<uint64_t>(n, at.remaining);
      if (at.remaining > out.size() || !put_event(0, first, at.remaining) || !put_text("\r\n"))
        return 0;
      if (first < n && !put_chunk(first, n - first)) return 0;
      if (!put_text("0\r\n\r\n")) return 0;
      break;
    }
    case BodyPosition::Kind::kElsewhere:
      return 0;
  }
  return static_cast<std::size_t>(put_at - start);
}

}  // namespace sluice
