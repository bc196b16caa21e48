#include "sluice/http_request.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace sluice {
namespace {

constexpr uint8_t kCr = '\r';
constexpr uint8_t kLf = '\n';
constexpr uint32_t kMaxLeadingEmptyLines = 8;  // RFC 9112 §2.2: at least one must be ignored
constexpr uint32_t kMaxChunkSizeDigits = 16;   // 2^64 − 1; leading zeros count too
constexpr uint32_t kMaxChunkExtensionBytes = 256;
constexpr uint64_t kMaxContentLength = uint64_t{1} << 62;

// tchar (RFC 9110 §5.6.2).
constexpr std::array<bool, 256> kTokenChar = [] {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<uint8_t>(c)] = true;
  return table;
}();

bool is_control(uint8_t c) {
  return (c < 0x20 && c != '\t') || c == 0x7f;
}
bool is_space(uint8_t c) {
  return c == ' ' || c == '\t';
}
char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(static_cast<uint8_t>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && is_space(static_cast<uint8_t>(s.back()))) s.remove_suffix(1);
  return s;
}

// Calls `each` with every comma-separated element, trimmed (RFC 9110 §5.6.1 lists).
template <typename Each>
bool for_each_element(std::string_view list, Each each) {
  while (true) {
    const std::size_t comma = list.find(',');
    if (!each(trim(list.substr(0, comma)))) return false;
    if (comma == std::string_view::npos) return true;
    list.remove_prefix(comma + 1);
  }
}

int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

RequestReason HttpRequestParser::fail(RequestReason reason) {
  state_ = State::kFailed;
  failure_ = reason;
  return reason;
}

bool HttpRequestParser::method_allowed() const {
  const std::string_view method(method_, method_length_);
  return std::find(limits_->methods.begin(), limits_->methods.end(), method) !=
         limits_->methods.end();
}

void HttpRequestParser::begin_request() {
  // Only the scalar per-request fields need resetting; the buffers are read up to their lengths.
  header_bytes_ = header_count_ = pending_line_bytes_ = 0;
  method_length_ = version_length_ = 0;
  target_length_ = key_length_ = host_length_ = 0;
  version_minor_ = 1;
  chunked_ = transfer_encoding_seen_ = content_length_seen_ = false;
  connection_close_ = connection_keep_alive_ = connection_upgrade_ = false;
  expect_continue_ = json_ = in_trailers_ = false;
  content_type_seen_ = closes_ = authorization_other_scheme_ = false;
  authorization_count_ = 0;
  host_count_ = 0;
  content_encoding_ = ContentEncoding::kIdentity;
  key_source_ = KeySource::kNone;
  key_status_ = KeyStatus::kAbsent;
  content_length_ = body_remaining_ = body_total_ = 0;
  chunk_digits_ = 0;
}

RequestReason HttpRequestParser::count_header_byte() {
  if (++header_bytes_ > limits_->max_header_bytes)
    return fail(RequestReason::http_header_too_large);
  return RequestReason::ok;
}

void HttpRequestParser::note_key(KeySource source, std::string_view key) {
  if (key_status_ == KeyStatus::kAbsent) {
    std::memcpy(key_, key.data(), key.size());
    key_length_ = static_cast<uint16_t>(key.size());
    key_source_ = source;
    key_status_ = KeyStatus::kPresent;
    return;
  }
  if (std::string_view(key_, key_length_) != key)
    key_status_ = KeyStatus::kConflicting;
  else if (key_status_ == KeyStatus::kPresent)
    key_status_ = KeyStatus::kDuplicated;
}

RequestReason HttpRequestParser::end_of_request_line() {
  const std::string_view version(version_, version_length_);
  if (version == "HTTP/1.1") {
    version_minor_ = 1;
  } else if (version == "HTTP/1.0") {
    version_minor_ = 0;
  } else if (version.size() == 8 && version.starts_with("HTTP/") && version[6] == '.' &&
             std::isdigit(static_cast<unsigned char>(version[5])) &&
             std::isdigit(static_cast<unsigned char>(version[7]))) {
    return fail(RequestReason::http_bad_version);
  } else {
    return fail(RequestReason::http_bad_request_line);
  }
  return RequestReason::ok;
}

bool is_secret_field(std::string_view lower_name) {
  return lower_name == "authorization" || lower_name == "proxy-authorization" ||
         lower_name == "x-api-key" || lower_name == "api-key" || lower_name == "cookie";
}

// Called at the colon: offers the field to the sink unless it is secret, a trailer or too long.
void HttpRequestParser::offer_field(HttpRequestSink& sink) {
  offer_ = Offer::kNone;
  held_space_length_ = 0;
  if (in_trailers_ || name_length_ > sizeof name_) return;
  const std::string_view name(name_, name_length_);
  if (header_ == Header::kAuthorization || header_ == Header::kXApiKey ||
      header_ == Header::kApiKey || is_secret_field(name) || !sink.on_field_name(name))
    return;
  offer_ = header_ == Header::kOther ? Offer::kStream : Offer::kAtEnd;
}

// A run of value bytes of a streamed field. Whitespace at the run's end is held back until a
// byte after it shows it is inside the value (at the line's end it is dropped); more than the
// 16 bytes held are handed over.
void HttpRequestParser::stream_value(const uint8_t* first, const uint8_t* last,
                                     HttpRequestSink& sink) {
  const uint8_t* content_end = last;
  while (content_end > first && is_space(content_end[-1])) --content_end;
  if (content_end > first) {
    if (held_space_length_ > 0) {
      sink.on_field_value({reinterpret_cast<const uint8_t*>(held_space_), held_space_length_});
      held_space_length_ = 0;
    }
    sink.on_field_value({first, static_cast<std::size_t>(content_end - first)});
  }
  for (const uint8_t* space = content_end; space < last; ++space) {
    if (held_space_length_ == sizeof held_space_) {
      sink.on_field_value({reinterpret_cast<const uint8_t*>(held_space_), held_space_length_});
      held_space_length_ = 0;
    }
    held_space_[held_space_length_++] = static_cast<char>(*space);
  }
}

RequestReason HttpRequestParser::end_of_header_line(HttpRequestSink& sink) {
  if (offer_ == Offer::kStream) {
    offer_ = Offer::kNone;
    held_space_length_ = 0;
    sink.on_field_end();
  }
  if (in_trailers_ || header_ == Header::kOther) return RequestReason::ok;
  if (value_overflow_) return fail(RequestReason::http_bad_header);
  const std::string_view value(value_, static_cast<std::size_t>(value_length_ - trailing_spaces_));
  if (offer_ == Offer::kAtEnd) {
    offer_ = Offer::kNone;
    if (!value.empty())
      sink.on_field_value({reinterpret_cast<const uint8_t*>(value.data()), value.size()});
    sink.on_field_end();
  }
  switch (header_) {
    case Header::kHost:
      if (++host_count_ > 1) return fail(RequestReason::http_duplicate_host);
      if (value.size() > kMaxValueBytes) return fail(RequestReason::http_bad_header);
      std::memcpy(host_, value.data(), value.size());
      host_length_ = static_cast<uint16_t>(value.size());
      return RequestReason::ok;
    case Header::kContentLength: {
      // RFC 9110 §8.6: a list of identical values may be taken as one; anything else is an error.
      bool differing = false;
      const bool valid = for_each_element(value, [&](std::string_view element) {
        if (element.empty() || element.size() > 19) return false;
        uint64_t parsed = 0;
        for (char c : element) {
          if (c < '0' || c > '9') return false;
          parsed = parsed * 10 + static_cast<uint64_t>(c - '0');
        }
        if (parsed > kMaxContentLength) return false;
        if (content_length_seen_ && parsed != content_length_) differing = true;
        content_length_ = parsed;
        content_length_seen_ = true;
        return true;
      });
      if (!valid) return fail(RequestReason::http_bad_content_length);
      if (differing) return fail(RequestReason::http_conflicting_content_length);
      return RequestReason::ok;
    }
    case Header::kTransferEncoding:
      // Only exactly one `chunked`: a list, a repeat or any other coding could be read
      // differently by the host (the classic request-smuggling ground).
      if (transfer_encoding_seen_ || !equals_ignoring_case(value, "chunked")) {
        return fail(RequestReason::http_unsupported_transfer_encoding);
      }
      transfer_encoding_seen_ = chunked_ = true;
      return RequestReason::ok;
    case Header::kContentType: {
      // Starlette reads the first Content-Type, a parser that keeps the last reads another one:
      // two are refused whatever their values.
      if (content_type_seen_) return fail(RequestReason::http_duplicate_content_type);
      content_type_seen_ = true;
      const std::size_t semicolon = value.find(';');
      const std::string_view media = trim(value.substr(0, semicolon));
      json_ = equals_ignoring_case(media, "application/json") ||
              (media.size() > 5 && equals_ignoring_case(media.substr(media.size() - 5), "+json"));
      std::string_view parameters =
          semicolon == std::string_view::npos ? "" : value.substr(semicolon + 1);
      while (!parameters.empty()) {
        const std::size_t next = parameters.find(';');
        const std::string_view parameter = trim(parameters.substr(0, next));
        parameters = next == std::string_view::npos ? "" : parameters.substr(next + 1);
        const std::size_t equals = parameter.find('=');
        if (equals == std::string_view::npos) continue;
        if (!equals_ignoring_case(trim(parameter.substr(0, equals)), "charset")) continue;
        std::string_view charset = trim(parameter.substr(equals + 1));
        if (charset.size() >= 2 && charset.front() == '"' && charset.back() == '"') {
          charset = charset.substr(1, charset.size() - 2);
        }
        if (!equals_ignoring_case(charset, "utf-8") && !equals_ignoring_case(charset, "utf8")) {
          return fail(RequestReason::content_unsupported_charset);
        }
      }
      return RequestReason::ok;
    }
    case Header::kContentEncoding: {
      // One coding at most: a chain of codings is refused rather than decoded in layers.
      if (content_encoding_ != ContentEncoding::kIdentity) {
        return fail(RequestReason::content_unsupported_encoding);
      }
      if (equals_ignoring_case(value, "gzip") || equals_ignoring_case(value, "x-gzip")) {
        content_encoding_ = ContentEncoding::kGzip;
      } else if (equals_ignoring_case(value, "deflate")) {
        content_encoding_ = ContentEncoding::kDeflate;
      } else if (!equals_ignoring_case(value, "identity")) {
        return fail(RequestReason::content_unsupported_encoding);
      }
      return RequestReason::ok;
    }
    case Header::kAuthorization: {
      // A second Authorization field, whatever its scheme, is a conflict (end_of_head): a host
      // reads the first, the last or both joined, and `Basic` next to `Bearer` is two identities.
      if (authorization_count_ < 2) ++authorization_count_;
      const std::size_t space = std::min(value.find(' '), value.size());
      if (!equals_ignoring_case(value.substr(0, space), "bearer")) {
        authorization_other_scheme_ = true;  // another scheme: not an API key
        return RequestReason::ok;
      }
      const std::string_view key = trim(value.substr(space));
      if (key.empty() || key.find_first_of(" \t") != std::string_view::npos) {
        return fail(RequestReason::http_bad_header);
      }
      if (key.size() > kMaxKeyBytes) return fail(RequestReason::http_bad_header);
      note_key(KeySource::kAuthorizationBearer, key);
      return RequestReason::ok;
    }
    case Header::kXApiKey:
    case Header::kApiKey:
      if (value.empty() || value.size() > kMaxKeyBytes) return fail(RequestReason::http_bad_header);
      note_key(header_ == Header::kXApiKey ? KeySource::kXApiKey : KeySource::kApiKey, value);
      return RequestReason::ok;
    case Header::kExpect:
      expect_continue_ = expect_continue_ || equals_ignoring_case(value, "100-continue");
      return RequestReason::ok;
    case Header::kConnection:
      for_each_element(value, [&](std::string_view token) {
        if (equals_ignoring_case(token, "close")) connection_close_ = true;
        if (equals_ignoring_case(token, "keep-alive")) connection_keep_alive_ = true;
        if (equals_ignoring_case(token, "upgrade")) connection_upgrade_ = true;
        return true;
      });
      return RequestReason::ok;
    case Header::kUpgrade:
    case Header::kHttp2Settings:
      return fail(RequestReason::http_upgrade);
    case Header::kOther:
      break;
  }
  return RequestReason::ok;
}

RequestReason HttpRequestParser::end_of_head(HttpRequestSink& sink, bool more) {
  if (version_minor_ == 1 && host_count_ == 0) return fail(RequestReason::http_missing_host);
  // RFC 9112 §6.3 ¶3 lets a server take Transfer-Encoding over Content-Length; an intermediary
  // and a host might not agree which wins, so both together are refused.
  if (chunked_ && content_length_seen_) {
    return fail(RequestReason::http_content_length_and_transfer_encoding);
  }
  RequestHead head;
  head.method = {method_, method_length_};
  head.target = {target_, target_length_};
  head.version_minor = version_minor_;
  head.content_encoding = content_encoding_;
  head.json = json_;
  head.expect_continue = expect_continue_;
  // RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
  head.keep_alive =
      version_minor_ == 1 ? !connection_close_ : connection_keep_alive_ && !connection_close_;
  closes_ = !head.keep_alive;
  head.host = {host_, host_length_};
  head.key_source = key_source_;
  // Credentials a host could read as another identity than the key Sluice judges: more than one
  // Authorization field, or a key field next to an Authorization that carries no key.
  if (authorization_count_ > 1 ||
      (authorization_other_scheme_ && key_status_ != KeyStatus::kAbsent))
    key_status_ = KeyStatus::kConflicting;
  head.key_status = key_status_;
  head.key = {key_, key_length_};
  if (chunked_) {
    head.framing = BodyFraming::kChunked;
  } else if (content_length_seen_) {
    if (content_length_ > limits_->max_body_bytes) return fail(RequestReason::http_body_too_large);
    head.framing = BodyFraming::kContentLength;
    head.content_length = content_length_;
  }
  sink.on_head(head);
  if (head.framing == BodyFraming::kChunked) {
    state_ = State::kChunkSize;
  } else if (head.framing == BodyFraming::kContentLength && content_length_ > 0) {
    body_remaining_ = content_length_;
    state_ = State::kBody;
  } else {
    return complete(sink, more);
  }
  return RequestReason::ok;
}

// `more`: bytes follow the request's last one in the piece being read.
RequestReason HttpRequestParser::complete(HttpRequestSink& sink, bool more) {
  if (closes_ && more) return fail(RequestReason::http_data_after_close);
  sink.on_complete();
  ++requests_completed_;
  state_ = closes_ ? State::kClosed : State::kStart;
  begin_request();
  return RequestReason::ok;
}

RequestReason HttpRequestParser::feed(std::span<const uint8_t> bytes, HttpRequestSink& sink) {
  if (state_ == State::kFailed) return failure_;
  if (state_ == State::kClosed) return RequestReason::ok;  // not read: see feed's contract
  const uint8_t* p = bytes.data();
  const uint8_t* const end = p + bytes.size();
  RequestReason r = RequestReason::ok;
#define SLUICE_COUNT() \
  if ((r = count_header_byte()) != RequestReason::ok) return r
  while (p < end) {
    const uint8_t c = *p;
    switch (state_) {
      case State::kStart:
        if (c == kCr || c == kLf) {
          // Empty lines before a request line are ignored (RFC 9112 §2.2), a bounded number.
          if (++pending_line_bytes_ > 2 * kMaxLeadingEmptyLines) {
            return fail(RequestReason::http_bad_request_line);
          }
          if (c == kLf) return fail(RequestReason::http_bare_lf);
          state_ = State::kStartLf;
          ++p;
          break;
        }
        if (!kTokenChar[c]) return fail(RequestReason::http_bad_request_line);
        pending_line_bytes_ = 0;
        state_ = State::kMethod;
        break;  // the byte is read again as part of the method
      case State::kStartLf:
        if (c != kLf) return fail(RequestReason::http_bare_cr);
        ++pending_line_bytes_;
        state_ = State::kStart;
        ++p;
        break;
      case State::kMethod:
        SLUICE_COUNT();
        if (kTokenChar[c]) {
          if (method_length_ == kMaxMethodBytes)
            return fail(RequestReason::http_method_not_allowed);
          method_[method_length_++] = static_cast<char>(c);
        } else if (c == ' ') {
          const std::string_view method(method_, method_length_);
          if (method == "CONNECT") return fail(RequestReason::http_connect);
          if (!method_allowed()) return fail(RequestReason::http_method_not_allowed);
          state_ = State::kTarget;
        } else {
          return fail(RequestReason::http_bad_request_line);
        }
        ++p;
        break;
      case State::kTarget:
        SLUICE_COUNT();
        if (c == ' ') {
          if (target_length_ == 0) return fail(RequestReason::http_bad_request_line);
          state_ = State::kVersion;
        } else if (c == kCr || c == kLf) {
          // "GET /path CRLF": the HTTP/0.9 simple request, which has no headers to inspect.
          return fail(RequestReason::http_09_request);
        } else if (c > 0x20 && c < 0x7f) {
          if (target_length_ == kMaxTargetBytes) return fail(RequestReason::http_uri_too_long);
          target_[target_length_++] = static_cast<char>(c);
        } else {
          return fail(RequestReason::http_bad_request_line);
        }
        ++p;
        break;
      case State::kVersion:
        SLUICE_COUNT();
        if (c == kCr) {
          if ((r = end_of_request_line()) != RequestReason::ok) return r;
          state_ = State::kRequestLineLf;
        } else if (c == kLf) {
          return fail(RequestReason::http_bare_lf);
        } else {
          if (version_length_ == sizeof version_ || c <= 0x20 || c >= 0x7f) {
            return fail(RequestReason::http_bad_request_line);
          }
          version_[version_length_++] = static_cast<char>(c);
        }
        ++p;
        break;
      case State::kRequestLineLf:
        SLUICE_COUNT();
        if (c != kLf) return fail(RequestReason::http_bare_cr);
        state_ = State::kLineStart;
        ++p;
        break;
      case State::kLineStart:
        SLUICE_COUNT();
        if (c == kCr) {
          state_ = State::kHeadEndLf;
        } else if (c == kLf) {
          return fail(RequestReason::http_bare_lf);
        } else if (is_space(c)) {
          // A continuation line (obs-fold, RFC 9112 §5.2), or whitespace before the first field.
          return fail(header_count_ > 0 ? RequestReason::http_obs_fold
                                        : RequestReason::http_bad_header);
        } else if (kTokenChar[c]) {
          if (++header_count_ > limits_->max_headers)
            return fail(RequestReason::http_too_many_headers);
          name_length_ = 0;
          value_length_ = 0;
          value_overflow_ = false;
          trailing_spaces_ = 0;
          name_[name_length_++] = lower(static_cast<char>(c));
          state_ = State::kHeaderName;
        } else {
          return fail(is_control(c) ? RequestReason::http_control_character
                                    : RequestReason::http_bad_header);
        }
        ++p;
        break;
      case State::kHeaderName:
        SLUICE_COUNT();
        if (kTokenChar[c]) {
          // Names longer than the buffer are none of the ones looked for: keep counting only.
          if (name_length_ < sizeof name_) name_[name_length_] = lower(static_cast<char>(c));
          if (name_length_ < UINT8_MAX) ++name_length_;
        } else if (c == ':') {
          const std::string_view name(name_, std::min<std::size_t>(name_length_, sizeof name_));
          header_ = name_length_ > sizeof name_   ? Header::kOther
                    : name == "host"              ? Header::kHost
                    : name == "content-length"    ? Header::kContentLength
                    : name == "transfer-encoding" ? Header::kTransferEncoding
                    : name == "content-type"      ? Header::kContentType
                    : name == "content-encoding"  ? Header::kContentEncoding
                    : name == "authorization"     ? Header::kAuthorization
                    : name == "x-api-key"         ? Header::kXApiKey
                    : name == "api-key"           ? Header::kApiKey
                    : name == "expect"            ? Header::kExpect
                    : name == "connection"        ? Header::kConnection
                    : name == "upgrade"           ? Header::kUpgrade
                    : name == "http2-settings"    ? Header::kHttp2Settings
                                                  : Header::kOther;
          offer_field(sink);
          state_ = State::kValueStart;
        } else if (is_space(c)) {
          return fail(RequestReason::http_space_before_colon);
        } else if (c == kCr || c == kLf) {
          return fail(RequestReason::http_bad_header);
        } else {
          return fail(is_control(c) ? RequestReason::http_control_character
                                    : RequestReason::http_bad_header);
        }
        ++p;
        break;
      case State::kValueStart:
        if (is_space(c)) {
          SLUICE_COUNT();
          ++p;
          break;
        }
        state_ = State::kValue;
        break;  // read again as the value's first byte
      case State::kValue:
        if (offer_ == Offer::kStream) {
          // A field the sink takes and the parser does not keep: its bytes go on as one run.
          const uint8_t* const run = p;
          while (p < end && *p != kCr && !is_control(*p)) {
            SLUICE_COUNT();
            ++p;
          }
          if (p > run) {
            stream_value(run, p, sink);
            break;  // the byte that ended the run (if any) is read again below
          }
        }
        SLUICE_COUNT();
        if (c == kCr) {
          state_ = State::kValueLf;
        } else if (c == kLf) {
          return fail(RequestReason::http_bare_lf);
        } else if (is_control(c)) {
          return fail(RequestReason::http_control_character);
        } else {
          trailing_spaces_ =
              is_space(c) ? static_cast<uint8_t>(std::min(trailing_spaces_ + 1, 255)) : 0;
          if (header_ != Header::kOther && !in_trailers_) {
            if (value_length_ < sizeof value_)
              value_[value_length_++] = static_cast<char>(c);
            else
              value_overflow_ = true;
          }
        }
        ++p;
        break;
      case State::kValueLf:
        SLUICE_COUNT();
        if (c != kLf) return fail(RequestReason::http_bare_cr);
        if ((r = end_of_header_line(sink)) != RequestReason::ok) return r;
        state_ = State::kLineStart;
        ++p;
        break;
      case State::kHeadEndLf:
        SLUICE_COUNT();
        if (c != kLf) return fail(RequestReason::http_bare_cr);
        ++p;
        r = in_trailers_ ? complete(sink, p < end) : end_of_head(sink, p < end);
        if (r != RequestReason::ok) return r;
        break;
      case State::kBody: {
        const auto n = static_cast<std::size_t>(
            std::min<uint64_t>(body_remaining_, static_cast<uint64_t>(end - p)));
        sink.on_body({p, n});
        p += n;
        body_remaining_ -= n;
        if (body_remaining_ == 0 && (r = complete(sink, p < end)) != RequestReason::ok) return r;
        break;
      }
      case State::kChunkSize: {
        const int digit = hex_value(c);
        if (digit >= 0) {
          if (++chunk_digits_ > kMaxChunkSizeDigits)
            return fail(RequestReason::http_chunk_size_overflow);
          body_remaining_ = body_remaining_ * 16 + static_cast<uint64_t>(digit);
        } else if (chunk_digits_ == 0) {
          return fail(RequestReason::http_bad_chunk_size);
        } else if (c == ';') {
          pending_line_bytes_ = 0;
          state_ = State::kChunkExtension;
        } else if (c == kCr) {
          state_ = State::kChunkSizeLf;
        } else if (c == kLf) {
          return fail(RequestReason::http_bare_lf);
        } else {
          return fail(RequestReason::http_bad_chunk_size);
        }
        ++p;
        break;
      }
      case State::kChunkExtension:
        // Extensions are read over and ignored; bounded so they cannot stall the parser.
        if (c == kCr) {
          state_ = State::kChunkSizeLf;
        } else if (c == kLf) {
          return fail(RequestReason::http_bare_lf);
        } else if (is_control(c) || ++pending_line_bytes_ > kMaxChunkExtensionBytes) {
          return fail(RequestReason::http_bad_chunk_size);
        }
        ++p;
        break;
      case State::kChunkSizeLf:
        if (c != kLf) return fail(RequestReason::http_bare_cr);
        ++p;
        chunk_digits_ = 0;
        pending_line_bytes_ = 0;
        if (body_remaining_ == 0) {  // the last chunk: a trailer section follows
          in_trailers_ = true;
          state_ = State::kLineStart;
          break;
        }
        if (body_remaining_ > limits_->max_body_bytes - body_total_) {
          return fail(RequestReason::http_body_too_large);
        }
        body_total_ += body_remaining_;
        state_ = State::kChunkData;
        break;
      case State::kChunkData: {
        const auto n = static_cast<std::size_t>(
            std::min<uint64_t>(body_remaining_, static_cast<uint64_t>(end - p)));
        sink.on_body({p, n});
        p += n;
        body_remaining_ -= n;
        if (body_remaining_ == 0) state_ = State::kChunkDataCr;
        break;
      }
      case State::kChunkDataCr:
        if (c != kCr) return fail(RequestReason::http_bad_chunk_framing);
        state_ = State::kChunkDataLf;
        ++p;
        break;
      case State::kChunkDataLf:
        if (c != kLf) return fail(RequestReason::http_bad_chunk_framing);
        state_ = State::kChunkSize;
        ++p;
        break;
      case State::kClosed:  // reached only through complete(), which leaves no bytes behind
      case State::kFailed:
        return failure_;
    }
  }
#undef SLUICE_COUNT
  return RequestReason::ok;
}

}  // namespace sluice
