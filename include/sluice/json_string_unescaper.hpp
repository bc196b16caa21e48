// A second, streaming JSON-string unescape for the text of a field that holds a JSON document as
// a string (tool-call arguments): the host json.loads that text and a template prints the
// decoded value (tojson, ensure_ascii=False), so `no \u0065thical` in the inner document reaches
// the model as `no ethical`. Escapes are decoded wherever they occur in the text: a valid JSON
// document has escapes only inside its strings (RFC 8259 §7), so this reads its strings as
// json.loads does and leaves the rest as it is.
//
//   \uXXXX      the code point, UTF-8; a high surrogate followed at once by a \u low surrogate is
//               one code point; a lone surrogate (either half) is U+FFFD
//   \" \\ \/    the character
//   \b \f \n \r \t  the control character
//   anything else (a backslash before another byte, \u with fewer than four hex digits): the
//               bytes as they are, the byte that broke the escape read afresh
//
// Bytes that are not part of an escape pass through unchanged, so valid UTF-8 in gives valid
// UTF-8 out. State: a pending escape (at most 6 bytes, `\uXXXX`) and a pending high surrogate;
// 10 bytes, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "sluice/utf8.hpp"

namespace sluice {

class JsonStringUnescaper {
 public:
  // Most bytes the unescaper carries between calls.
  static constexpr std::size_t kStateBytes = 12;

  void reset() { *this = JsonStringUnescaper(); }

  // Feeds the next bytes of the text; out(const uint8_t*, size_t) receives the decoded text.
  template <typename Out>
  void feed(const uint8_t* p, std::size_t size, Out&& out) {
    const uint8_t* end = p + size;
    while (p < end) {
      if (pending_size_ == 0 && high_ == 0) {
        const auto* slash = static_cast<const uint8_t*>(std::memchr(p, '\\', end - p));
        const uint8_t* stop = slash == nullptr ? end : slash;
        if (stop != p) out(p, static_cast<std::size_t>(stop - p));
        if (slash == nullptr) return;
        pending_[0] = '\\';
        pending_size_ = 1;
        p = slash + 1;
        continue;
      }
      step(*p++, out);
    }
  }

  // The end of the text: what is pending is emitted as it came (a pending high surrogate: U+FFFD).
  template <typename Out>
  void finish(Out&& out) {
    flush_high(out);
    if (pending_size_ > 0) out(pending_, pending_size_);
    pending_size_ = 0;
  }

 private:
  template <typename Out>
  void step(uint8_t c, Out& out) {
    if (pending_size_ == 0) {
      // A high surrogate is pending: only `\u` may continue it.
      if (c == '\\') {
        pending_[0] = c;
        pending_size_ = 1;
        return;
      }
      flush_high(out);
      out(&c, 1);
      return;
    }
    if (pending_size_ == 1) {
      if (c == 'u') {
        pending_[pending_size_++] = c;
        return;
      }
      const uint8_t decoded = short_escape(c);
      flush_high(out);
      if (decoded != 0) {
        pending_size_ = 0;
        out(&decoded, 1);
        return;
      }
      return broken(c, out);
    }
    if (hex_value(c) < 0) return broken(c, out);
    pending_[pending_size_++] = c;
    if (pending_size_ < 6) return;
    pending_size_ = 0;
    uint32_t unit = 0;
    for (int i = 2; i < 6; ++i) unit = (unit << 4) | static_cast<uint32_t>(hex_value(pending_[i]));
    if (unit >= 0xdc00 && unit <= 0xdfff) {
      if (high_ != 0) {
        const uint32_t cp = 0x10000 + ((uint32_t{high_} - 0xd800) << 10) + (unit - 0xdc00);
        high_ = 0;
        return emit_code_point(cp, out);
      }
      return emit_code_point(0xfffd, out);
    }
    flush_high(out);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      high_ = static_cast<uint16_t>(unit);
      return;
    }
    emit_code_point(unit, out);
  }

  // The escape in pending_ is not one: its bytes as they came, then c read afresh.
  template <typename Out>
  void broken(uint8_t c, Out& out) {
    flush_high(out);
    const uint8_t size = pending_size_;
    pending_size_ = 0;
    out(pending_, size);
    if (c == '\\') {
      pending_[0] = c;
      pending_size_ = 1;
      return;
    }
    out(&c, 1);
  }

  template <typename Out>
  void flush_high(Out& out) {
    if (high_ == 0) return;
    high_ = 0;
    emit_code_point(0xfffd, out);
  }

  template <typename Out>
  static void emit_code_point(uint32_t cp, Out& out) {
    uint8_t bytes[4];
    out(bytes, encode_utf8(cp, bytes));
  }

  static constexpr uint8_t short_escape(uint8_t c) {
    switch (c) {
      case '"':
        return '"';
      case '\\':
        return '\\';
      case '/':
        return '/';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      default:
        return 0;
    }
  }

  static constexpr int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  uint16_t high_ = 0;        // a high surrogate read, its low half not yet; 0: none
  uint8_t pending_[6] = {};  // an escape being read: `\`, `\u`, `\uX` ... `\uXXX`
  uint8_t pending_size_ = 0;
};

static_assert(sizeof(JsonStringUnescaper) <= JsonStringUnescaper::kStateBytes);
static_assert(std::is_trivially_copyable_v<JsonStringUnescaper>);

}  // namespace sluice
