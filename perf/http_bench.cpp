// Throughput of the request path of the L7 stage on realistic chat requests of about 1 KB,
// 4 KB and 32 KB, fed in 1460-byte pieces (one TCP segment's payload each):
//   BM_HttpRequestParser — HTTP/1.1 framing alone (head parsing, body hand-off);
//   BM_HttpStage         — the whole stage: framing, JSON prompt extraction, canonicalisation.
// bytes/s counts request bytes (head + body).
//   build/perf/http_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <string>

#include "sluice/http_request.hpp"
#include "sluice/http_stage.hpp"

namespace sluice {
namespace {

constexpr std::size_t kSegmentPayload = 1460;

std::string chat_request(std::size_t body_target) {
  std::string body = R"({"model":"gpt-4o","stream":true,"max_tokens":512,"messages":[)"
                     R"({"role":"system","content":"You are a helpful assistant."})";
  for (int turn = 0; body.size() + 200 < body_target; ++turn) {
    body += turn % 2 ? R"(,{"role":"assistant","content":")" : R"(,{"role":"user","content":")";
    body +=
        "Could you look at the quarterly report and tell me which regions grew faster "
        "than last year?\\nI mainly care about \\\"EMEA\\\" and APAC. Turn " +
        std::to_string(turn) + "\"}";
  }
  body += "]}";
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: inference.example\r\n"
         "Authorization: Bearer sk-proj-0123456789abcdef0123456789abcdef\r\n"
         "Content-Type: application/json\r\nUser-Agent: OpenAI/Python 1.54.0\r\n"
         "Accept: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

struct Discard final : HttpRequestSink {
  std::size_t bytes = 0;
  void on_head(const RequestHead& head) override { bytes += head.target.size(); }
  void on_body(std::span<const uint8_t> piece) override { bytes += piece.size(); }
  void on_complete() override {}
};

struct Quiet final : RequestObserver {
  std::size_t text = 0;
  Refusal on_request_head(uint32_t, const RequestHead&, uint64_t) override { return {}; }
  void on_prompt_text(uint32_t, std::string_view canonical) override { text += canonical.size(); }
  Refusal on_request_end(uint32_t, const RequestOutcome&, uint64_t) override { return {}; }
  void on_response_end(uint32_t, const ResponseOutcome&, uint64_t) override {}
};

template <typename Feed>
void feed_in_segments(const std::string& request, Feed feed) {
  const auto* p = reinterpret_cast<const uint8_t*>(request.data());
  for (std::size_t at = 0; at < request.size(); at += kSegmentPayload) {
    feed(std::span<const uint8_t>(p + at, std::min(kSegmentPayload, request.size() - at)));
  }
}

void BM_HttpRequestParser(benchmark::State& state) {
  const std::string request = chat_request(static_cast<std::size_t>(state.range(0)));
  const HttpLimits limits;
  HttpRequestParser parser(&limits);
  Discard sink;
  for (auto _ : state) {
    feed_in_segments(request, [&](std::span<const uint8_t> piece) { parser.feed(piece, sink); });
  }
  benchmark::DoNotOptimize(sink.bytes);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * request.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HttpRequestParser)->Arg(1024)->Arg(4096)->Arg(32768);

void BM_HttpStage(benchmark::State& state) {
  const std::string request = chat_request(static_cast<std::size_t>(state.range(0)));
  const HttpStageConfig config;
  Quiet observer;
  HttpStage stage(&config, observer);
  for (auto _ : state) {
    feed_in_segments(request, [&](std::span<const uint8_t> piece) {
      stage.on_data(1, Direction::kToServer, piece, 0);
    });
  }
  benchmark::DoNotOptimize(observer.text);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * request.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HttpStage)->Arg(1024)->Arg(4096)->Arg(32768);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
