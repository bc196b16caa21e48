// Throughput of the streaming prompt extractor on realistic chat-completions bodies of about
// 1 KB, 4 KB and 32 KB, fed in 1460-byte pieces (one TCP segment's payload each), as the data
// path feeds it; bytes/s counts body bytes. Variants: prose with the usual escapes (\n, \"),
// text that is mostly escapes (tool arguments holding JSON), and CJK text (3-byte UTF-8), each
// with a tool definition (its name and JSON Schema are prompt text too); and `plain`, the prose
// without tools, the shape of sluice-bench's chat-1k bodies (system + user turns, model,
// max_tokens, temperature), whose text is only the message contents.
//   build/perf/prompt_extractor_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "sluice/prompt_extractor.hpp"

namespace sluice {
namespace {

constexpr std::size_t kSegmentPayload = 1460;

// Counts what it receives, so that nothing is optimised away; costs a call per piece, as a real
// sink (the canonicaliser) would at least.
class CountingSink : public PromptSink {
 public:
  void on_text(PromptField, std::string_view utf8) override { bytes += utf8.size(); }
  void on_field_end(PromptField) override { ++fields; }
  std::size_t bytes = 0;
  std::size_t fields = 0;
};

enum class Flavour { kProse, kEscapes, kCjk, kPlain };

std::string turn_text(Flavour flavour, std::size_t turn) {
  switch (flavour) {
    case Flavour::kProse:
    case Flavour::kPlain:
      return "Could you look at the quarterly report and tell me which regions grew faster than "
             "last year? Please keep it short.\\nI mainly care about \\\"EMEA\\\" and APAC; turn " +
             std::to_string(turn) + " of the thread.";
    case Flavour::kEscapes:
      return R"({\"city\":\"Paris\",\"days\":[1,2,3],\"units\":\"metric\",\"note\":\"a\\nb\"})";
    case Flavour::kCjk:
      return "\xe8\xaf\xb7\xe5\xb8\xae\xe6\x88\x91\xe6\x80\xbb\xe7\xbb\x93\xe8\xbf\x99\xe4\xbb\xbd"
             "\xe5\xad\xa3\xe5\xba\xa6\xe6\x8a\xa5\xe5\x91\x8a\xef\xbc\x8c\xe5\x93\xaa\xe4\xba\x9b"
             "\xe5\x9c\xb0\xe5\x8c\xba\xe5\xa2\x9e\xe9\x95\xbf\xe6\x9c\x80\xe5\xbf\xab\xef\xbc\x9f"
             "\xe8\xb0\xa2\xe8\xb0\xa2\xe3\x80\x82";
  }
  return {};
}

// A chat-completions body of at least `target` bytes: model, a system prompt, alternating turns
// (tool calls carrying arguments in the escapes flavour), a tool definition (not in `plain`) and
// scalars.
std::string chat_body(std::size_t target, Flavour flavour) {
  std::string body =
      flavour == Flavour::kPlain
          ? R"({"model":"small-1","max_tokens":256,"temperature":0.7,"messages":[{"role":)"
            R"("system","content":"You are a helpful assistant. Answer precisely and cite the )"
            R"(sources you use."})"
          : R"({"model":"gpt-4o-2024-08-06","temperature":0.7,"stream":true,"max_tokens":1024,)"
            R"("tools":[{"type":"function","function":{"name":"get_weather","description":"Current )"
            R"(weather for a city","parameters":{"type":"object","properties":{"city":{"type":)"
            R"("string"}},"required":["city"]}}}],"messages":[{"role":"system","content":"You are a )"
            R"(helpful assistant. Answer precisely and cite the sources you use."})";
  for (std::size_t turn = 0; body.size() + 64 < target; ++turn) {
    if (flavour == Flavour::kEscapes && turn % 2 == 1) {
      body += R"(,{"role":"assistant","content":null,"tool_calls":[{"id":"call_)" +
              std::to_string(turn) +
              R"(","type":"function","function":{"name":"get_weather","arguments":")" +
              turn_text(flavour, turn) + R"("}}]})";
    } else {
      body += std::string(R"(,{"role":")") + (turn % 2 == 0 ? "user" : "assistant") +
              R"(","content":")" + turn_text(flavour, turn) + R"("})";
    }
  }
  body += "]}";
  return body;
}

void BM_Extract(benchmark::State& state, Flavour flavour) {
  const std::string body = chat_body(static_cast<std::size_t>(state.range(0)), flavour);
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  PromptExtractor extractor;
  CountingSink sink;
  for (auto _ : state) {
    extractor.reset();
    for (std::size_t at = 0; at < bytes.size(); at += kSegmentPayload) {
      extractor.feed(bytes.subspan(at, std::min(kSegmentPayload, bytes.size() - at)), sink);
    }
    if (extractor.finish(sink) != RequestReason::ok) state.SkipWithError("body rejected");
  }
  benchmark::DoNotOptimize(sink.bytes);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.counters["body_bytes"] = static_cast<double>(body.size());
  state.counters["text_share"] =
      static_cast<double>(sink.bytes) / static_cast<double>(state.iterations() * body.size());
}

BENCHMARK_CAPTURE(BM_Extract, prose, Flavour::kProse)->Arg(1024)->Arg(4096)->Arg(32768);
BENCHMARK_CAPTURE(BM_Extract, escapes, Flavour::kEscapes)->Arg(1024)->Arg(4096)->Arg(32768);
BENCHMARK_CAPTURE(BM_Extract, cjk, Flavour::kCjk)->Arg(1024)->Arg(4096)->Arg(32768);
BENCHMARK_CAPTURE(BM_Extract, plain, Flavour::kPlain)->Arg(1024)->Arg(4096)->Arg(32768);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
