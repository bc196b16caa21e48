// Cost of reading answers in the data path: one admitted chat request, then its response fed to
// the HTTP stage in 1460-byte segments, as a worker sees them, with the shipped rules (rules/,
// compiled once) behind Admission — so the completion-scope rules (sec.private-key.completion,
// spx.leak-in-completion) apply and every answer is extracted, canonicalised and scanned:
//   BM_Answer/stream:{0,1}/scan:{0,1}
//       stream 1: a chunked text/event-stream answer, one OpenAI chat.completion.chunk event per
//       delta of ≈ 4 characters (the SDKs' usual stream); stream 0: the same text as one JSON
//       body. scan 0: the same, with a rule database without completion rules (usage is still
//       read): the difference is what the completion scope costs. Bytes/s of response bytes;
//       counter: ns per delta (per token of the answer).
// The answer is benign English prose (≈ 2 KB of text: ≈ 500 deltas, ≈ 160 KB of events).
//   build/perf/completion_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// Measured: perf/README.md, "Completions (perf/completion_bench.cpp)".
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "sluice/admission.hpp"
#include "sluice/http_stage.hpp"
#include "sluice/identity.hpp"
#include "sluice/rules_loader.hpp"

#ifndef SLUICE_RULES_DIR
#error "SLUICE_RULES_DIR must name the rules directory (set in perf/meson.build)"
#endif

namespace sluice {
namespace {

constexpr std::size_t kSegment = 1460;

std::shared_ptr<const RuleDatabase> compile(bool with_completion_rules) {
  std::vector<Rule> rules = load_rule_files({SLUICE_RULES_DIR});
  if (!with_completion_rules)
    std::erase_if(rules, [](const Rule& r) { return r.scope == RuleScope::kCompletion; });
  RuleCompileOptions options;
  options.check_examples = false;
  return compile_rules(rules, options).database;
}

const std::shared_ptr<const RuleDatabase>& database(bool with_completion_rules) {
  static const std::shared_ptr<const RuleDatabase> with = compile(true);
  static const std::shared_ptr<const RuleDatabase> without = compile(false);
  return with_completion_rules ? with : without;
}

std::string prose() {
  const std::string sentence =
      "The farmer sells eggs at the market every morning, and the money pays for feed, "
      "repairs to the barn and a little saved for winter. ";
  std::string text;
  while (text.size() < 2000) text += sentence;
  return text;
}

std::string chunk(std::string_view data) {
  char size[24];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + std::string(data) + "\r\n";
}

// The answer, whole, and how many deltas it has.
std::pair<std::string, std::size_t> answer(bool stream) {
  const std::string text = prose();
  if (!stream) {
    const std::string body = R"({"id":"c","object":"chat.completion","model":"m","choices":[{)"
                             R"("index":0,"message":{"role":"assistant","content":")" +
                             text + R"("},"finish_reason":"stop"}],"usage":{"total_tokens":600}})";
    return {"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body,
            text.size() / 4};
  }
  std::string bytes =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::size_t deltas = 0;
  for (std::size_t at = 0; at < text.size(); at += 4, ++deltas) {
    bytes += chunk(R"(data: {"id":"c","object":"chat.completion.chunk","created":1795909195,)"
                   R"("model":"m","choices":[{"index":0,"delta":{"content":")" +
                   text.substr(at, 4) + R"("},"finish_reason":null}]})" + "\n\n");
  }
  bytes += chunk("data: [DONE]\n\n") + "0\r\n\r\n";
  return {bytes, deltas};
}

void BM_Answer(benchmark::State& state) {
  const bool stream = state.range(0) != 0;
  const bool scan = state.range(1) != 0;
  const Config config = load_config_text(
      "identities: i.yaml\ntiers:\n  verified: { requests_per_second: 100000000, burst: "
      "100000000, tokens_per_minute: 1000000000, token_burst: 100000000, max_concurrent: "
      "1000000, max_body_bytes: 100000, max_output_tokens: 1000 }\n",
      "bench.yaml");
  LimiterStore store;
  std::vector<Identity> identities{Identity{"acme", "verified", {sha256_of("k-acme")}, {}, {}}};
  PolicySource source(build_policy(
      config, std::make_shared<const IdentityTable>(std::move(identities)), store, database(scan)));
  Admission admission(source, nullptr, 0, 0);
  const HttpStageConfig stage_config;
  HttpStage stage(&stage_config, admission);
  const std::string body =
      R"({"model":"m","messages":[{"role":"user","content":"Tell me about farming."}]})";
  const std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nAuthorization: "
      "Bearer k-acme\r\nContent-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  const auto [response, deltas] = answer(stream);
  const auto feed = [&](Direction direction, std::string_view bytes, uint64_t now) {
    for (std::size_t at = 0; at < bytes.size(); at += kSegment) {
      const std::string_view segment = bytes.substr(at, kSegment);
      if (stage.on_data(0, direction,
                        {reinterpret_cast<const uint8_t*>(segment.data()), segment.size()},
                        now) != StreamVerdict::kContinue) {
        const auto denial = stage.denial(0);
        std::fprintf(stderr, "refused (%s): %.*s\n",
                     direction == Direction::kToServer ? "request" : "answer",
                     static_cast<int>(denial.size()), reinterpret_cast<const char*>(denial.data()));
        state.SkipWithError("a benign answer was refused");
        return false;
      }
    }
    return true;
  };
  stage.on_open(0, {});
  uint64_t now = 1'000'000'000;
  for (auto _ : state) {
    now += 1'000'000;  // 1 ms apart: the token bucket never runs dry
    if (!feed(Direction::kToServer, request, now) || !feed(Direction::kToClient, response, now))
      break;
  }
  stage.on_close(0);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * response.size()));
  state.counters["ns_per_delta"] =
      benchmark::Counter(static_cast<double>(state.iterations() * deltas),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["response_bytes"] = static_cast<double>(response.size());
}
BENCHMARK(BM_Answer)->ArgsProduct({{1, 0}, {1, 0}})->ArgNames({"stream", "scan"});

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
