// The enforce stage alone: what answering a refused request costs a worker once the decision is
// made — the OpenAI-shaped HTTP answer (denial.hpp) and the TCP frames that carry it and reset
// the server side (packet_builder.hpp).
//   build/perf/enforce_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <array>
#include <vector>

#include "sluice/classify.hpp"
#include "sluice/denial.hpp"
#include "sluice/packet_builder.hpp"

namespace sluice {
namespace {

// A client's data segment (Ethernet/IPv4/TCP, 300 bytes of payload), as the pipeline holds it
// when it refuses the request that segment ends.
std::vector<uint8_t> client_segment() {
  std::vector<uint8_t> f = {
      0x02, 0,    0,    0, 0,  0x02, 0x02, 0, 0,   0,  0,    0x01, 0x08, 0x00, 0x45, 0, 0x01, 0x54,
      0,    1,    0x40, 0, 64, 6,    0,    0, 198, 18, 0,    7,    198,  19,   0,    1, 0x9c, 0x40,
      0x1f, 0x40, 0,    0, 0,  1,    0,    0, 0,   1,  0x50, 0x18, 0xff, 0xff, 0,    0, 0,    0};
  f.resize(f.size() + 300, 'x');
  return f;
}

void BM_WriteDenial(benchmark::State& state) {
  Refusal refusal;
  refusal.reason = static_cast<RequestReason>(state.range(0));
  refusal.bucket = LimitKind::kRequests;
  refusal.limit = 3;
  refusal.reset_after_ns = 2'500'000'000;
  refusal.retry_after_ns = 1'500'000'000;
  std::array<char, kMaxDenialBytes> out{};
  for (auto _ : state) benchmark::DoNotOptimize(write_denial(refusal, out));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WriteDenial)
    ->Arg(static_cast<int>(RequestReason::invalid_api_key))
    ->Arg(static_cast<int>(RequestReason::rate_limited_requests))
    ->ArgName("reason");

// The denial's frame toward the client (FIN, the answer as payload) or the RST toward the server.
void BM_BuildSegment(benchmark::State& state) {
  const std::vector<uint8_t> frame = client_segment();
  const Classification c = classify(frame);
  std::array<char, kMaxDenialBytes> answer{};
  Refusal refusal;
  refusal.reason = RequestReason::invalid_api_key;
  const std::size_t length = state.range(0) != 0 ? write_denial(refusal, answer) : 0;
  const std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(answer.data()), length);
  std::array<uint8_t, kMaxRstFrame + kMaxDenialBytes> out{};
  for (auto _ : state) {
    benchmark::DoNotOptimize(build_tcp_segment(frame, c.info, true, 1000, 2000,
                                               tcp_flag::kFin | tcp_flag::kAck, payload, out));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BuildSegment)->Arg(0)->Arg(1)->ArgName("with_answer");

}  // namespace
}  // namespace sluice
BENCHMARK_MAIN();
