// libFuzzer harness for the HTTP/1.1 request parser. Invariants: no crash or overread (ASan);
// the result of parsing the input whole equals the result of parsing it in two pieces at a
// point taken from the input, and byte by byte — but for one difference the contract makes: a
// request that closes the connection and is followed by bytes is refused when one piece holds
// both (http_data_after_close), and completed, with nothing read after it, when a piece ends
// with it; body bytes reported never exceed the limit.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sluice/http_request.hpp"

namespace sluice {
namespace {

void require(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "http_request_fuzz: invariant violated: %s\n", what);
  std::abort();
}

struct Trace final : HttpRequestSink {
  std::string events;
  uint64_t body = 0;
  void on_head(const RequestHead& head) override {
    events += "H" + std::string(head.method) + " " + std::string(head.target) + " " +
              std::to_string(static_cast<int>(head.framing)) + " " +
              std::to_string(head.content_length) + " k" +
              std::to_string(static_cast<int>(head.key_status)) +
              (head.keep_alive ? "" : " close") + "\n";
  }
  void on_body(std::span<const uint8_t> bytes) override {
    events.append(bytes.begin(), bytes.end());
    body += bytes.size();
  }
  void on_complete() override { events += "C\n"; }
};

std::string run(const uint8_t* data, std::size_t size, const std::vector<std::size_t>& cuts,
                const HttpLimits& limits, uint64_t* body) {
  Trace trace;
  HttpRequestParser parser(&limits);
  std::size_t at = 0;
  RequestReason reason = RequestReason::ok;
  for (std::size_t cut : cuts) {
    reason = parser.feed({data + at, cut - at}, trace);
    at = cut;
  }
  reason = parser.feed({data + at, size - at}, trace);
  *body = trace.body;
  return trace.events + (parser.closed() ? "X" : "") + "R" +
         std::to_string(static_cast<int>(reason));
}

// `split` parses like `whole`, or `whole` refused a closing request for the bytes after it and
// `split` completed that request at a piece's end and read nothing more.
bool parses_alike(const std::string& whole, const std::string& split) {
  if (split == whole) return true;
  const std::string refused =
      "R" + std::to_string(static_cast<int>(RequestReason::http_data_after_close));
  if (!whole.ends_with(refused)) return false;
  return split == whole.substr(0, whole.size() - refused.size()) + "C\nXR" +
                      std::to_string(static_cast<int>(RequestReason::ok));
}

}  // namespace
}  // namespace sluice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  HttpLimits limits;
  limits.max_body_bytes = 1 << 16;
  limits.max_header_bytes = 4096;
  uint64_t body_whole = 0, body_split = 0, body_bytes = 0;
  const std::string whole = run(data, size, {}, limits, &body_whole);
  const std::size_t cut = size == 0 ? 0 : (data[0] * 131u + size / 2) % size;
  require(parses_alike(whole, run(data, size, {cut}, limits, &body_split)),
          "two pieces parse like one");
  if (size <= 512) {
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < size; ++i) every.push_back(i);
    require(parses_alike(whole, run(data, size, every, limits, &body_bytes)),
            "byte by byte parses like one");
  }
  require(body_whole <= size, "no more body bytes than input bytes");
  return 0;
}
