// AuditRecord → one JSON Lines record, the hash chain's link, and the prompt capture pool. Runs on
// the audit writer thread, never on a worker (but for the pool's constructor).
#include <arpa/inet.h>
#include <sys/socket.h>

#include <openssl/evp.h>

#include <cstdio>
#include <stdexcept>

#include "sluice/audit.hpp"

namespace sluice {
namespace {

// Appends to a bounded buffer; once anything fails to fit, every later append is a no-op and
// ok() stays false, so the formatter checks once at the end.
class LineWriter {
 public:
  explicit LineWriter(std::span<char> out) : out_(out) {}

  void put(char c) {
    if (used_ < out_.size()) {
      out_[used_++] = c;
    } else {
      ok_ = false;
    }
  }
  void put(std::string_view text) {
    if (out_.size() - used_ >= text.size()) {
      std::memcpy(out_.data() + used_, text.data(), text.size());
      used_ += text.size();
    } else {
      ok_ = false;
    }
  }
  void put_uint(uint64_t value) {
    char digits[20];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    while (n > 0) put(digits[--n]);
  }
  void put_int(int64_t value) {
    if (value < 0) {
      put('-');
      put_uint(~static_cast<uint64_t>(value) + 1);
    } else {
      put_uint(static_cast<uint64_t>(value));
    }
  }
  void put_padded(uint64_t value, int width) {
    char digits[20];
    for (int i = width - 1; i >= 0; --i) {
      digits[i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
    put(std::string_view(digits, static_cast<std::size_t>(width)));
  }

  // A JSON string (RFC 8259 §7): '"' and '\' escaped, every control character (and DEL) as
  // \u00XX, valid UTF-8 copied, each byte that does not start a valid sequence (RFC 3629 §4:
  // no overlongs, no surrogates, nothing above U+10FFFF) replaced by U+FFFD.
  void put_string(std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    put('"');
    const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
    const std::size_t size = text.size();
    std::size_t i = 0;
    while (i < size) {
      // A run that needs no escape is copied whole (most text is such runs).
      std::size_t run = i;
      while (run < size && bytes[run] >= 0x20 && bytes[run] < 0x7f && bytes[run] != '"' &&
             bytes[run] != '\\')
        ++run;
      if (run > i) {
        put(text.substr(i, run - i));
        i = run;
        continue;
      }
      const uint8_t c = bytes[i];
      if (c < 0x80) {
        if (c == '"' || c == '\\') {
          put('\\');
          put(static_cast<char>(c));
        } else if (c < 0x20 || c == 0x7f) {
          const char escape[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
          put(std::string_view(escape, 6));
        } else {
          put(static_cast<char>(c));
        }
        ++i;
        continue;
      }
      const std::size_t length = utf8_sequence_length(bytes + i, size - i);
      if (length == 0) {
        put("\xEF\xBF\xBD");  // U+FFFD
        ++i;
      } else {
        put(std::string_view(text.data() + i, length));
        i += length;
      }
    }
    put('"');
  }

  bool ok() const { return ok_; }
  std::size_t used() const { return used_; }

 private:
  // Length of the well-formed sequence starting at p (a byte >= 0x80), 0 if ill-formed
  // (Unicode Table 3-7).
  static std::size_t utf8_sequence_length(const uint8_t* p, std::size_t available) {
    const uint8_t c = p[0];
    auto continuation = [&](std::size_t k, uint8_t low, uint8_t high) {
      return k < available && p[k] >= low && p[k] <= high;
    };
    if (c >= 0xC2 && c <= 0xDF) return continuation(1, 0x80, 0xBF) ? 2 : 0;
    if (c == 0xE0) return continuation(1, 0xA0, 0xBF) && continuation(2, 0x80, 0xBF) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
      return continuation(1, 0x80, 0xBF) && continuation(2, 0x80, 0xBF) ? 3 : 0;
    if (c == 0xED) return continuation(1, 0x80, 0x9F) && continuation(2, 0x80, 0xBF) ? 3 : 0;
    if (c == 0xF0)
      return continuation(1, 0x90, 0xBF) && continuation(2, 0x80, 0xBF) &&
                     continuation(3, 0x80, 0xBF)
                 ? 4
                 : 0;
    if (c >= 0xF1 && c <= 0xF3)
      return continuation(1, 0x80, 0xBF) && continuation(2, 0x80, 0xBF) &&
                     continuation(3, 0x80, 0xBF)
                 ? 4
                 : 0;
    if (c == 0xF4)
      return continuation(1, 0x80, 0x8F) && continuation(2, 0x80, 0xBF) &&
                     continuation(3, 0x80, 0xBF)
                 ? 4
                 : 0;
    return 0;
  }

  std::span<char> out_;
  std::size_t used_ = 0;
  bool ok_ = true;
};

// Days since 1970-01-01 → civil date (H. Hinnant, "chrono-Compatible Low-Level Date
// Algorithms"), exact for the proleptic Gregorian calendar.
struct CivilDate {
  int64_t year;
  unsigned month;
  unsigned day;
};
CivilDate civil_from_days(int64_t days) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto day_of_era = static_cast<unsigned>(days - era * 146097);
  const unsigned year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const unsigned day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const unsigned mp = (5 * day_of_year + 2) / 153;
  const unsigned day = day_of_year - (153 * mp + 2) / 5 + 1;
  const unsigned month = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int64_t>(year_of_era) + era * 400 + (month <= 2), month, day};
}

// RFC 3339 UTC with milliseconds: 2026-11-28T19:30:00.123Z. Times before the epoch are written
// as the epoch (a wall clock that far off is a bug elsewhere, and RFC 3339 has no year < 0).
void put_timestamp(LineWriter& line, int64_t ts_ns) {
  const uint64_t ns = ts_ns < 0 ? 0 : static_cast<uint64_t>(ts_ns);
  const uint64_t ms_total = ns / 1'000'000;
  const uint64_t seconds_total = ms_total / 1000;
  const uint64_t seconds_of_day = seconds_total % 86400;
  const CivilDate date = civil_from_days(static_cast<int64_t>(seconds_total / 86400));
  line.put_padded(static_cast<uint64_t>(date.year), 4);
  line.put('-');
  line.put_padded(date.month, 2);
  line.put('-');
  line.put_padded(date.day, 2);
  line.put('T');
  line.put_padded(seconds_of_day / 3600, 2);
  line.put(':');
  line.put_padded(seconds_of_day / 60 % 60, 2);
  line.put(':');
  line.put_padded(seconds_of_day % 60, 2);
  line.put('.');
  line.put_padded(ms_total % 1000, 3);
  line.put('Z');
}

// "198.18.0.1:40000", "[2001:db8::1]:8000" (RFC 5952 text via inet_ntop), or null. IPv4 is
// written here: glibc's inet_ntop goes through sprintf, which was 40 % of a line's formatting.
void put_endpoint(LineWriter& line, const AuditEndpoint& endpoint) {
  char text[INET6_ADDRSTRLEN] = {};
  if (endpoint.family == 4) {
    line.put('"');
    for (int i = 0; i < 4; ++i) {
      if (i > 0) line.put('.');
      line.put_uint(endpoint.address[i]);
    }
  } else if (endpoint.family == 6) {
    if (inet_ntop(AF_INET6, endpoint.address.data(), text, sizeof text) == nullptr) {
      line.put("null");
      return;
    }
    line.put("\"[");
    line.put(std::string_view(text));
    line.put(']');
  } else {
    line.put("null");
    return;
  }
  line.put(':');
  line.put_uint(endpoint.port);
  line.put('"');
}

template <std::size_t N>
void put_text_or_null(LineWriter& line, const AuditText<N>& text) {
  if (text.empty()) {
    line.put("null");
  } else {
    line.put_string(text.view());
  }
}

}  // namespace

std::size_t format_json_line(const AuditRecord& record, std::span<char> out,
                             const AuditLineExtras& extras) {
  LineWriter line(out);
  line.put("{\"ts\":\"");
  put_timestamp(line, record.ts_ns);
  line.put("\",\"seq\":");
  line.put_uint(record.sequence);
  line.put(",\"worker\":");
  line.put_uint(record.worker);
  line.put(",\"flow\":{\"src\":");
  put_endpoint(line, record.src);
  line.put(",\"dst\":");
  put_endpoint(line, record.dst);
  line.put("},\"identity\":");
  put_text_or_null(line, record.identity);
  line.put(",\"key_id\":");
  if (record.has_key_id) {
    // Same text as format_key_id() in identity.hpp: 12 lowercase hex digits of the 48 bits.
    static constexpr char kHex[] = "0123456789abcdef";
    char text[14];
    text[0] = text[13] = '"';
    uint64_t value = record.key_id;
    for (int i = 12; i >= 1; --i) {
      text[i] = kHex[value & 0xf];
      value >>= 4;
    }
    line.put(std::string_view(text, sizeof text));
  } else {
    line.put("null");
  }
  line.put(",\"tier\":");
  put_text_or_null(line, record.tier);
  line.put(record.verdict == AuditVerdict::admit  ? ",\"verdict\":\"admit\""
           : record.verdict == AuditVerdict::deny ? ",\"verdict\":\"deny\""
                                                  : ",\"verdict\":\"escalate\"");
  line.put(",\"status\":");
  line.put_uint(record.status);
  line.put(",\"reason\":");
  put_text_or_null(line, record.reason);
  line.put(",\"rules\":[");
  std::string_view rules = record.rules.view();
  for (bool first = true; !rules.empty(); first = false) {
    const std::size_t end = std::min(rules.find('\n'), rules.size());
    if (!first) line.put(',');
    line.put_string(rules.substr(0, end));
    rules.remove_prefix(std::min(end + 1, rules.size()));
  }
  line.put("],\"method\":");
  put_text_or_null(line, record.method);
  line.put(",\"path\":");
  put_text_or_null(line, record.path);
  line.put(record.path_truncated ? ",\"path_truncated\":true" : ",\"path_truncated\":false");
  line.put(",\"model\":");
  put_text_or_null(line, record.model);
  line.put(record.model_truncated ? ",\"model_truncated\":true" : ",\"model_truncated\":false");
  line.put(",\"request_bytes\":");
  line.put_uint(record.request_bytes);
  line.put(",\"prompt_tokens_est\":");
  line.put_uint(record.prompt_tokens_est);
  line.put(",\"max_output_tokens\":");
  if (record.max_output_tokens < 0) {
    line.put("null");
  } else {
    line.put_int(record.max_output_tokens);
  }
  line.put(",\"tokens_reserved\":");
  line.put_uint(record.tokens_reserved);
  line.put(",\"usage\":");
  if (record.usage_reported) {
    const auto put_count = [&line](std::string_view name, int64_t value) {
      line.put(name);
      if (value < 0) {
        line.put("null");
      } else {
        line.put_int(value);
      }
    };
    put_count("{\"prompt_tokens\":", record.usage_prompt_tokens);
    put_count(",\"completion_tokens\":", record.usage_completion_tokens);
    put_count(",\"total_tokens\":", record.usage_total_tokens);
    line.put('}');
  } else {
    line.put("null");
  }
  line.put(",\"tokens_charged\":");
  line.put_uint(record.tokens_charged);
  if (record.verdict == AuditVerdict::escalate) {
    line.put(",\"until\":\"");
    put_timestamp(line, record.until_ns);
    line.put('"');
  }
  if (record.prompt == AuditPrompt::kCaptured) {
    line.put(",\"prompt\":");
    line.put_string(extras.prompt);
    line.put(extras.prompt_truncated ? ",\"prompt_truncated\":true"
                                     : ",\"prompt_truncated\":false");
  } else if (record.prompt == AuditPrompt::kDropped) {
    line.put(",\"prompt\":null,\"prompt_dropped\":true");
  }
  if (!extras.prev.empty()) {
    line.put(kAuditPrevKey);
    line.put(extras.prev);
    line.put('"');
  }
  line.put("}\n");
  return line.ok() ? line.used() : 0;
}

std::string_view audit_line_prev(std::string_view line) {
  if (line.size() < kAuditPrevSuffixBytes || !line.ends_with("\"}")) return {};
  const std::string_view suffix = line.substr(line.size() - kAuditPrevSuffixBytes);
  if (!suffix.starts_with(kAuditPrevKey)) return {};
  const std::string_view hex = suffix.substr(kAuditPrevKey.size(), kAuditDigestHexDigits);
  const bool all_hex = std::all_of(hex.begin(), hex.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
  return all_hex ? hex : std::string_view();
}

struct AuditChain::Context {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  // Fetched once: the implicit EVP_sha256() re-resolves the provider on every init.
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  ~Context() {
    EVP_MD_free(md);
    EVP_MD_CTX_free(ctx);
  }
};

AuditChain::AuditChain() : context_(std::make_unique<Context>()) {
  if (context_->ctx == nullptr || context_->md == nullptr)
    throw std::runtime_error("audit chain: OpenSSL has no SHA-256");
  std::copy(kAuditGenesis.begin(), kAuditGenesis.end(), hex_.begin());
}

AuditChain::~AuditChain() = default;

void AuditChain::advance(std::string_view line) {
  static constexpr char kHex[] = "0123456789abcdef";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_DigestInit_ex2(context_->ctx, context_->md, nullptr) != 1 ||
      EVP_DigestUpdate(context_->ctx, line.data(), line.size()) != 1 ||
      EVP_DigestFinal_ex(context_->ctx, digest, &length) != 1 || length != 32) {
    // Cannot happen with a working libcrypto; a link no line can match shows it in verify.
    hex_.fill('x');
    return;
  }
  for (unsigned i = 0; i < 32; ++i) {
    hex_[2 * i] = kHex[digest[i] >> 4];
    hex_[2 * i + 1] = kHex[digest[i] & 0xf];
  }
}

bool AuditChain::set_prev(std::string_view hex) {
  if (hex.size() != kAuditDigestHexDigits) return false;
  std::array<char, kAuditDigestHexDigits> lower{};
  for (std::size_t i = 0; i < hex.size(); ++i) {
    const char c = static_cast<char>(hex[i] | 0x20);
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    lower[i] = c;
  }
  hex_ = lower;
  return true;
}

AuditCapturePool::AuditCapturePool(AuditCapture mode, uint32_t slots, uint32_t slot_bytes)
    : mode_(mode),
      slots_(slots),
      slot_bytes_(slot_bytes),
      // new char[] leaves the bytes alone: a large block comes straight from mmap, and its pages
      // are committed only when a slot is first written.
      text_(new char[std::size_t{slots} * slot_bytes]),
      length_(new uint32_t[slots]()) {
  if (slots == 0 || slots > kMaxSlots || slot_bytes == 0 || slot_bytes >= kTruncated) {
    throw std::invalid_argument("audit capture: expected 1 to 65535 slots of 1 byte or more, got " +
                                std::to_string(slots) + " of " + std::to_string(slot_bytes));
  }
  free_.reserve(slots);
  for (uint32_t i = slots; i > 0; --i) free_.push_back(static_cast<uint16_t>(i - 1));
  std::size_t capacity = 2;
  while (capacity < slots) capacity *= 2;
  returned_.reset(new uint16_t[capacity]());
  returned_mask_ = capacity - 1;
}

}  // namespace sluice
