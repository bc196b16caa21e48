// libFuzzer harness for the streaming token-usage scanner.
//
// Any input is read twice: as a plain JSON body and as an event stream. Each reading is fed whole,
// in two and in three pieces cut at points derived from the input, and (when short) byte by byte;
// every way must give the same TokenUsage, and that must equal what a whole-input reference
// written separately here says (recursive descent over the JSON text; the event stream split
// into lines and events as the WHATWG algorithm describes it). Besides: a reported number is at
// most 2^53 and stands in the input as a whole run of digits; a plain body that reports is
// braced; a scanner reused after begin() reads like a fresh one; an input without line breaks
// sent as one `data:` line reads like the plain body. Build with -fsanitize=fuzzer,address,
// undefined; seeds are in tests/fuzz/corpus/usage_scanner/.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/usage_scanner.hpp"

namespace sluice {
namespace {

constexpr uint64_t kMaxTokens = uint64_t{1} << 53;

// Each message names its invariant, so the message alone says which one failed.
void require(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "usage_scanner_fuzz: invariant violated: %s\n", what);
  std::abort();
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// The scanner's rules as a recursive descent over a whole JSON text.
class ReferenceJson {
 public:
  static TokenUsage read(std::string_view text) {
    ReferenceJson reader(text);
    reader.skip_whitespace();
    if (!reader.at('{') || !reader.value(0, Context::kRoot)) return {};
    reader.skip_whitespace();
    return reader.pos_ == text.size() ? reader.found_ : TokenUsage{};
  }

 private:
  // What a value is, from where it stands.
  enum class Context { kOther, kRoot, kWrapper, kUsage, kPrompt, kCompletion, kTotal };

  explicit ReferenceJson(std::string_view text) : text_(text) {}

  bool at(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
  bool at_digit() const { return pos_ < text_.size() && is_digit(text_[pos_]); }
  void skip_whitespace() {
    while (pos_ < text_.size() &&
           std::string_view(" \t\r\n").find(text_[pos_]) != std::string_view::npos) {
      ++pos_;
    }
  }

  // `depth`: containers open around the value.
  bool value(int depth, Context context) {
    skip_whitespace();
    if (pos_ == text_.size()) return false;
    switch (text_[pos_]) {
      case '{':
        return object(depth + 1, context);
      case '[':
        return array(depth + 1);
      case '"': {
        std::string_view ignored;
        return string(ignored);
      }
      case 't':
        return word("true");
      case 'f':
        return word("false");
      case 'n':
        return word("null");
      default:
        return number(context);
    }
  }

  static Context member_context(Context object, std::string_view key) {
    switch (object) {
      case Context::kRoot:
        if (key == "usage") return Context::kUsage;
        if (key == "message" || key == "response") return Context::kWrapper;
        return Context::kOther;
      case Context::kWrapper:
        return key == "usage" ? Context::kUsage : Context::kOther;
      case Context::kUsage:
        if (key == "prompt_tokens" || key == "input_tokens") return Context::kPrompt;
        if (key == "completion_tokens" || key == "output_tokens") return Context::kCompletion;
        if (key == "total_tokens") return Context::kTotal;
        return Context::kOther;
      default:
        return Context::kOther;
    }
  }

  bool object(int depth, Context context) {
    if (depth > 64) return false;
    ++pos_;
    skip_whitespace();
    if (at('}')) {
      ++pos_;
      return true;
    }
    while (true) {
      skip_whitespace();
      std::string_view key;
      if (!at('"') || !string(key)) return false;
      skip_whitespace();
      if (!at(':')) return false;
      ++pos_;
      // A key written with an escape never matches.
      const Context member =
          key.find('\\') == std::string_view::npos ? member_context(context, key) : Context::kOther;
      if (!value(depth, member)) return false;
      skip_whitespace();
      if (at(',')) {
        ++pos_;
      } else if (at('}')) {
        ++pos_;
        return true;
      } else {
        return false;
      }
    }
  }

  bool array(int depth) {
    if (depth > 64) return false;
    ++pos_;
    skip_whitespace();
    if (at(']')) {
      ++pos_;
      return true;
    }
    while (true) {
      if (!value(depth, Context::kOther)) return false;
      skip_whitespace();
      if (at(',')) {
        ++pos_;
      } else if (at(']')) {
        ++pos_;
        return true;
      } else {
        return false;
      }
    }
  }

  // At '"'; `raw` gets the text between the quotes, escapes as written.
  bool string(std::string_view& raw) {
    const std::size_t start = ++pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '"') {
        raw = text_.substr(start, pos_ - start);
        ++pos_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      ++pos_;
      if (c != '\\') continue;
      if (pos_ == text_.size()) return false;
      const char escape = text_[pos_++];
      if (escape == 'u') {
        for (int i = 0; i < 4; ++i, ++pos_) {
          if (pos_ == text_.size() || !std::isxdigit(static_cast<unsigned char>(text_[pos_]))) {
            return false;
          }
        }
      } else if (std::string_view("\"\\/bfnrt").find(escape) == std::string_view::npos) {
        return false;
      }
    }
    return false;
  }

  bool word(std::string_view literal) {
    if (text_.substr(pos_, literal.size()) != literal) return false;
    pos_ += literal.size();
    return true;
  }

  bool number(Context context) {
    const std::size_t start = pos_;
    const bool negative = at('-');
    if (negative) ++pos_;
    if (at('0')) {
      ++pos_;
    } else if (at_digit()) {
      while (at_digit()) ++pos_;
    } else {
      return false;
    }
    bool integer = true;
    if (at('.')) {
      ++pos_;
      if (!at_digit()) return false;
      while (at_digit()) ++pos_;
      integer = false;
    }
    if (at('e') || at('E')) {
      ++pos_;
      if (at('+') || at('-')) ++pos_;
      if (!at_digit()) return false;
      while (at_digit()) ++pos_;
      integer = false;
    }
    uint64_t count = 0;
    if (!integer || negative) return true;
    const auto [end, error] = std::from_chars(text_.data() + start, text_.data() + pos_, count);
    if (error != std::errc() || count > kMaxTokens) return true;
    const auto value = static_cast<int64_t>(count);
    if (context == Context::kPrompt) found_.prompt_tokens = value;
    if (context == Context::kCompletion) found_.completion_tokens = value;
    if (context == Context::kTotal) found_.total_tokens = value;
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  TokenUsage found_;
};

void merge(TokenUsage& into, const TokenUsage& from) {
  if (from.prompt_tokens != TokenUsage::kAbsent) into.prompt_tokens = from.prompt_tokens;
  if (from.completion_tokens != TokenUsage::kAbsent) {
    into.completion_tokens = from.completion_tokens;
  }
  if (from.total_tokens != TokenUsage::kAbsent) into.total_tokens = from.total_tokens;
}

// WHATWG "Interpreting an event stream" over the whole input, with one difference the scanner
// documents: at the end, a pending event is dispatched rather than discarded.
TokenUsage reference_event_stream(std::string_view input) {
  if (input.starts_with("\xEF\xBB\xBF")) input.remove_prefix(3);
  TokenUsage result;
  std::string data;
  auto dispatch = [&] {
    if (data.empty()) return;
    data.pop_back();  // the "\n" after the last data line
    merge(result, ReferenceJson::read(data));
    data.clear();
  };
  std::size_t pos = 0;
  while (pos < input.size()) {
    const std::size_t line_end = std::min(input.find_first_of("\r\n", pos), input.size());
    const std::string_view line = input.substr(pos, line_end - pos);
    pos = line_end;
    if (pos < input.size()) pos += input.substr(pos, 2) == "\r\n" ? 2 : 1;
    if (line.empty()) {
      dispatch();
      continue;
    }
    const std::size_t colon = line.find(':');
    if (colon == 0) continue;  // a comment
    const std::string_view field = line.substr(0, colon);
    std::string_view value =
        colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    if (value.starts_with(' ')) value.remove_prefix(1);
    if (field == "data") {
      data += value;
      data += '\n';
    }
  }
  dispatch();
  return result;
}

TokenUsage run(UsageScanner& scanner, bool event_stream, std::span<const uint8_t> input,
               std::span<const std::size_t> cuts) {
  scanner.begin(event_stream);
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    scanner.feed(input.subspan(from, cut - from));
    from = cut;
  }
  scanner.feed(input.subspan(from));
  return scanner.finish();
}

// `value` is absent, or at most 2^53 and written in the input as a whole run of digits.
bool stands_in_input(int64_t value, std::string_view input) {
  if (value == TokenUsage::kAbsent) return true;
  if (value < 0 || static_cast<uint64_t>(value) > kMaxTokens) return false;
  const std::string digits = std::to_string(value);
  for (std::size_t at = input.find(digits); at != std::string_view::npos;
       at = input.find(digits, at + 1)) {
    const bool starts = at == 0 || !is_digit(input[at - 1]);
    const bool ends = at + digits.size() == input.size() || !is_digit(input[at + digits.size()]);
    if (starts && ends) return true;
  }
  return false;
}

TokenUsage check(std::span<const uint8_t> input, bool event_stream) {
  const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
  UsageScanner scanner;
  const TokenUsage whole = run(scanner, event_stream, input, {});
  require(whole == (event_stream ? reference_event_stream(text) : ReferenceJson::read(text)),
          "the scanner agrees with the whole-input reference");

  require(stands_in_input(whole.prompt_tokens, text) &&
              stands_in_input(whole.completion_tokens, text) &&
              stands_in_input(whole.total_tokens, text),
          "reported numbers are at most 2^53 and stand in the input");
  const uint64_t parts = static_cast<uint64_t>(std::max<int64_t>(whole.prompt_tokens, 0)) +
                         static_cast<uint64_t>(std::max<int64_t>(whole.completion_tokens, 0));
  require(whole.used() == (whole.total_tokens != TokenUsage::kAbsent
                               ? static_cast<uint64_t>(whole.total_tokens)
                               : parts),
          "used() is total_tokens, else the sum of the parts present");
  if (!event_stream && whole.reported()) {
    const std::size_t first = text.find_first_not_of(" \t\r\n");
    const std::size_t last = text.find_last_not_of(" \t\r\n");
    require(first != std::string_view::npos && text[first] == '{' && text[last] == '}',
            "a plain body that reports is one object");
  }

  // Cut points that depend on the content, so the fuzzer can steer them.
  uint32_t hash = 2166136261u;
  for (uint8_t byte : input) hash = (hash ^ byte) * 16777619u;
  const std::size_t a = hash % (input.size() + 1);
  const std::size_t b = (hash >> 13) % (input.size() + 1);
  const std::size_t one_cut[] = {a};
  const std::size_t two_cuts[] = {std::min(a, b), std::max(a, b)};
  require(run(scanner, event_stream, input, one_cut) == whole,
          "two pieces give what the whole input gives");
  require(run(scanner, event_stream, input, two_cuts) == whole,
          "three pieces give what the whole input gives");
  if (input.size() <= 512) {
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < input.size(); ++i) every.push_back(i);
    require(run(scanner, event_stream, input, every) == whole,
            "byte by byte gives what the whole input gives");
  }

  // Left in the middle of the other reading, then begun again.
  UsageScanner reused;
  reused.begin(!event_stream);
  reused.feed(input.subspan(0, a));
  require(run(reused, event_stream, input, {}) == whole, "begin() forgets the previous body");
  return whole;
}

}  // namespace
}  // namespace sluice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace sluice;
  const std::span<const uint8_t> input(data, size);
  const TokenUsage plain = check(input, false);
  check(input, true);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (text.find_first_of("\r\n") == std::string_view::npos) {
    std::vector<uint8_t> event(size + 7);
    const std::string_view prefix = "data:";
    std::copy(prefix.begin(), prefix.end(), event.begin());
    std::copy(data, data + size, event.begin() + prefix.size());
    event[size + 5] = '\n';
    event[size + 6] = '\n';
    require(check(event, true) == plain, "one data line reads like the plain body");
  }
  return 0;
}
