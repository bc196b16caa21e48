#include "sluice/http_response.hpp"

#include <algorithm>
#include <string_view>

namespace sluice {
namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (lower(text[i]) != prefix[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

void HttpResponseParser::expect_response(bool head_request) {
  if (pending_ == kMaxPending) return;  // beyond the ring: taken as a request with a body
  const uint32_t slot = (oldest_ + pending_) % kMaxPending;
  if (head_request)
    head_requests_ |= uint64_t{1} << slot;
  else
    head_requests_ &= ~(uint64_t{1} << slot);
  ++pending_;
}

bool HttpResponseParser::line_byte(uint8_t c) {
  if (c == '\n') {
    if (line_length_ > 0 && line_length_ <= kLineBytes && line_[line_length_ - 1] == '\r')
      --line_length_;
    return true;
  }
  if (line_length_ < kLineBytes) line_[line_length_] = static_cast<char>(c);
  if (line_length_ < UINT32_MAX) ++line_length_;
  return false;
}

bool HttpResponseParser::end_of_status_line() {
  const std::string_view line(line_, std::min(line_length_, kLineBytes));
  if (line.size() < 12 || !line.starts_with("HTTP/1.") || line[8] != ' ') return false;
  uint16_t status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return false;
    status = static_cast<uint16_t>(status * 10 + (line[i] - '0'));
  }
  head_ = ResponseHead{};
  head_.status = status;
  chunked_ = close_ = content_type_ = false;
  return true;
}

void HttpResponseParser::end_of_header_line() {
  const std::string_view line(line_, std::min(line_length_, kLineBytes));
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return;
  const std::string_view value = trim(line.substr(colon + 1));
  const std::string_view name = line.substr(0, colon);
  const auto is = [&](std::string_view wanted) {
    return name.size() == wanted.size() && starts_with_ignoring_case(name, wanted);
  };
  if (is("content-length")) {
    uint64_t parsed = 0;
    bool valid = !value.empty() && value.size() <= 18;
    for (char c : value)
      valid = valid && c >= '0' && c <= '9', parsed = parsed * 10 + static_cast<uint64_t>(c - '0');
    if (valid) {
      head_.has_content_length = true;
      head_.content_length = parsed;
    }
  } else if (is("transfer-encoding")) {
    chunked_ =
        value.size() >= 7 && starts_with_ignoring_case(value.substr(value.size() - 7), "chunked");
    // "gzip, chunked": the de-chunked body is still coded.
    if (!(value.size() == 7 && chunked_)) head_.coded = true;
  } else if (is("content-encoding")) {
    const bool identity =
        value.empty() || (value.size() == 8 && starts_with_ignoring_case(value, "identity"));
    const bool gzip = (value.size() == 4 && starts_with_ignoring_case(value, "gzip")) ||
                      (value.size() == 6 && starts_with_ignoring_case(value, "x-gzip"));
    const bool deflate = value.size() == 7 && starts_with_ignoring_case(value, "deflate");
    // One coding at most: a second Content-Encoding line, or a list, is not read.
    if (head_.encoding != ContentEncoding::kIdentity || !(identity || gzip || deflate))
      head_.coded = true;
    else if (!identity)
      head_.encoding = gzip ? ContentEncoding::kGzip : ContentEncoding::kDeflate;
  } else if (is("content-type")) {
    if (content_type_) head_.coded = true;  // two: the client may read either
    content_type_ = true;
    head_.event_stream = starts_with_ignoring_case(value, "text/event-stream");
    head_.ndjson = starts_with_ignoring_case(value, "application/x-ndjson");
  } else if (is("connection")) {
    close_ = starts_with_ignoring_case(value, "close");
  }
}

bool HttpResponseParser::end_of_head(HttpResponseSink& sink) {
  const bool head_request = pending_ > 0 && (head_requests_ >> oldest_ & 1);
  if (head_.status == 101) return false;            // switching protocols: nothing left to frame
  if (head_.status >= 100 && head_.status < 200) {  // interim: the final response follows
    state_ = State::kStatusLine;
    return true;
  }
  head_.chunked = chunked_;
  const bool bodiless = head_request || head_.status == 204 || head_.status == 304;
  if (!bodiless && !chunked_ && !head_.has_content_length) head_.until_close = true;
  sink.on_response_head(head_);
  if (bodiless || (!chunked_ && head_.has_content_length && head_.content_length == 0)) {
    complete(sink);
  } else if (chunked_) {
    state_ = State::kChunkSize;
  } else if (head_.has_content_length) {
    remaining_ = head_.content_length;
    state_ = State::kBody;
  } else {
    state_ = State::kUntilClose;
  }
  return true;
}

void HttpResponseParser::complete(HttpResponseSink& sink) {
  sink.on_response_complete();
  if (pending_ > 0) {
    oldest_ = (oldest_ + 1) % kMaxPending;
    --pending_;
  }
  state_ = State::kStatusLine;
}

bool HttpResponseParser::feed(std::span<const uint8_t> bytes, HttpResponseSink& sink) {
  const uint8_t* p = bytes.data();
  const uint8_t* const end = p + bytes.size();
  while (p < end) {
    switch (state_) {
      case State::kFailed:
        return false;
      case State::kBody:
      case State::kChunkData: {
        const auto n = static_cast<std::size_t>(
            std::min<uint64_t>(remaining_, static_cast<uint64_t>(end - p)));
        sink.on_response_body({p, n});
        p += n;
        remaining_ -= n;
        if (remaining_ == 0) {
          if (state_ == State::kBody)
            complete(sink);
          else
            state_ = State::kChunkDataEnd;
        }
        break;
      }
      case State::kUntilClose:
        sink.on_response_body({p, static_cast<std::size_t>(end - p)});
        p = end;
        break;
      default: {
        if (!line_byte(*p++)) break;
        const bool empty = line_length_ == 0;
        const State at = state_;
        if (at == State::kStatusLine) {
          if (!empty && !end_of_status_line())
            state_ = State::kFailed;
          else if (!empty)
            state_ = State::kHeaderLine;
        } else if (at == State::kHeaderLine) {
          if (!empty)
            end_of_header_line();
          else if (!end_of_head(sink))
            state_ = State::kFailed;
        } else if (at == State::kChunkSize) {
          uint64_t size = 0;
          uint32_t digits = 0;
          bool fits = true;
          const std::string_view line(line_, std::min(line_length_, kLineBytes));
          std::size_t i = 0;
          for (; i < line.size(); ++i) {
            const char c = lower(line[i]);
            const int digit = c >= '0' && c <= '9'   ? c - '0'
                              : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                     : -1;
            if (digit < 0) break;
            fits = fits && size >> 60 == 0;
            size = size * 16 + static_cast<uint64_t>(digit);
            ++digits;
          }
          while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
          // What follows the size: nothing, or chunk extensions.
          if (i < line.size() && line[i] != ';') digits = 0;
          if (digits == 0 || digits > kMaxChunkSizeDigits || !fits)
            state_ = State::kFailed;
          else if (size == 0)
            state_ = State::kTrailer;
          else
            remaining_ = size, state_ = State::kChunkData;
        } else if (at == State::kChunkDataEnd) {
          state_ = empty ? State::kChunkSize : State::kFailed;
        } else if (at == State::kTrailer) {
          if (empty) complete(sink);
        }
        line_length_ = 0;
        break;
      }
    }
  }
  return state_ != State::kFailed;
}

BodyPosition HttpResponseParser::body_position() const {
  switch (state_) {
    case State::kChunkSize:
      return {
          line_length_ == 0 ? BodyPosition::Kind::kBetweenChunks : BodyPosition::Kind::kElsewhere,
          0};
    case State::kChunkData:
      return {BodyPosition::Kind::kInChunk, remaining_};
    case State::kBody:
      return {BodyPosition::Kind::kInLength, remaining_};
    case State::kUntilClose:
      return {BodyPosition::Kind::kUntilClose, 0};
    default:
      return {};
  }
}

void HttpResponseParser::end_of_stream(HttpResponseSink& sink) {
  if (state_ == State::kUntilClose) complete(sink);
}

}  // namespace sluice
