// libFuzzer harness for the streaming prompt extractor.
//
// Any input is a request body. It is fed whole, in two pieces cut at a point derived from the
// input, and (when short) byte by byte, under the default limits and under tight ones. Every way
// must give the same reason and, when accepted, the same texts and fields. On the way the sink
// contract is checked: no empty piece, every piece whole UTF-8 characters, pieces of one string
// all of one field, nothing emitted after a rejection, a rejection that sticks, part bounds
// between strings and balanced. An accepted body
// must be valid UTF-8 as a whole and start (after whitespace) with '{'. Build with
// -fsanitize=fuzzer,address,undefined; seeds are in tests/fuzz/corpus/prompt_extractor/.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/prompt_extractor.hpp"

namespace sluice {
namespace {

// Each message names its invariant, so the message alone says which one failed.
void require(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "prompt_extractor_fuzz: invariant violated: %s\n", what);
  std::abort();
}

// RFC 3629, written independently of the extractor's table.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = (c & 0xe0) == 0xc0   ? 1
                          : (c & 0xf0) == 0xe0 ? 2
                          : (c & 0xf8) == 0xf0 ? 3
                                               : 0;
    if (n == 0 || i + n >= s.size()) return false;
    uint32_t cp = c & (0x3f >> n);
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    constexpr uint32_t kMinimum[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinimum[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

struct Text {
  PromptField field;
  std::string text;
  bool operator==(const Text&) const = default;
};

class Recorder : public PromptSink {
 public:
  void on_text(PromptField field, std::string_view utf8) override {
    require(!closed, "nothing is emitted after a rejection");
    require(!utf8.empty(), "no empty piece");
    require(valid_utf8(utf8), "every piece is whole UTF-8 characters");
    if (!open_) texts.push_back({field, ""});
    require(texts.back().field == field, "pieces of one string name one field");
    open_ = true;
    texts.back().text.append(utf8);
  }
  void on_field_end(PromptField field) override {
    require(!closed, "nothing is emitted after a rejection");
    if (!open_) texts.push_back({field, ""});
    require(texts.back().field == field, "on_field_end names the string's field");
    open_ = false;
  }
  void on_parts_begin() override {
    require(!closed, "nothing is emitted after a rejection");
    require(!open_, "parts begin between strings");
    ++parts_open;
    texts.push_back({PromptField::kOther, "[\x01"});  // compared like a text: same place every way
  }
  void on_parts_end() override {
    require(!closed, "nothing is emitted after a rejection");
    require(!open_, "parts end between strings");
    require(parts_open > 0, "parts end only after they begin");
    --parts_open;
    texts.push_back({PromptField::kOther, "]\x01"});
  }

  std::vector<Text> texts;
  bool closed = false;
  int parts_open = 0;

 private:
  bool open_ = false;
};

struct Outcome {
  RequestReason reason;
  std::vector<Text> texts;
  RequestFields fields;
};

Outcome run(std::span<const uint8_t> body, std::span<const std::size_t> cuts, JsonLimits limits) {
  PromptExtractor extractor(limits);
  Recorder recorder;
  RequestReason reason = RequestReason::ok;
  std::size_t from = 0;
  auto feed = [&](std::size_t to) {
    const RequestReason now = extractor.feed(body.subspan(from, to - from), recorder);
    from = to;
    if (reason != RequestReason::ok) require(now == reason, "a rejection sticks");
    reason = now;
    if (reason != RequestReason::ok) recorder.closed = true;
  };
  for (std::size_t cut : cuts) feed(cut);
  feed(body.size());
  const RequestReason finished = extractor.finish(recorder);
  if (reason != RequestReason::ok) require(finished == reason, "finish keeps the rejection");
  if (finished == RequestReason::ok) require(recorder.parts_open == 0, "every parts begin ends");
  return {finished, recorder.texts, extractor.fields()};
}

bool same(const Outcome& a, const Outcome& b) {
  if (a.reason != b.reason) return false;
  if (a.reason != RequestReason::ok) return true;
  const RequestFields& x = a.fields;
  const RequestFields& y = b.fields;
  return a.texts == b.texts && x.model == y.model && x.stream == y.stream &&
         x.max_tokens == y.max_tokens && x.max_completion_tokens == y.max_completion_tokens &&
         x.max_output_tokens == y.max_output_tokens && x.prompt_token_ids == y.prompt_token_ids;
}

void check(std::span<const uint8_t> body, JsonLimits limits) {
  const Outcome whole = run(body, {}, limits);
  if (whole.reason == RequestReason::ok) {
    const std::string_view text(reinterpret_cast<const char*>(body.data()), body.size());
    require(valid_utf8(text), "an accepted body is valid UTF-8");
    const std::size_t first = text.find_first_not_of(" \t\r\n");
    require(first != std::string_view::npos && text[first] == '{', "an accepted body is an object");
    require(whole.fields.model.size() <= limits.max_scalar_bytes, "model within its limit");
  }
  // A cut point that depends on the content, so the fuzzer can steer it.
  uint32_t hash = 2166136261u;
  for (uint8_t byte : body) hash = (hash ^ byte) * 16777619u;
  const std::size_t cut[] = {hash % (body.size() + 1)};
  require(same(run(body, cut, limits), whole), "two pieces give what the whole body gives");
  if (body.size() <= 512) {
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < body.size(); ++i) every.push_back(i);
    require(same(run(body, every, limits), whole), "byte by byte gives what the whole body gives");
  }
}

}  // namespace
}  // namespace sluice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace sluice;
  const std::span<const uint8_t> body(data, size);
  check(body, JsonLimits{});
  check(body, JsonLimits{4, 8});
  return 0;
}
