// Micro benchmarks of the DPDK-free dataplane stages, per packet:
//   build/perf/micro_dataplane --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "sluice/classify.hpp"
#include "sluice/flow_table.hpp"
#include "sluice/stream_consumer.hpp"
#include "sluice/tcp_tracker.hpp"

namespace sluice {
namespace {

std::vector<uint8_t> tcp_frame(uint32_t client, uint16_t port, std::size_t payload) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00};
  const auto total = static_cast<uint16_t>(40 + payload);
  f.insert(f.end(), {0x45,
                     0,
                     static_cast<uint8_t>(total >> 8),
                     static_cast<uint8_t>(total),
                     0,
                     1,
                     0x40,
                     0,
                     64,
                     6,
                     0,
                     0,
                     198,
                     18,
                     static_cast<uint8_t>(client >> 8),
                     static_cast<uint8_t>(client),
                     198,
                     19,
                     0,
                     2});
  f.insert(f.end(), {static_cast<uint8_t>(port >> 8),
                     static_cast<uint8_t>(port),
                     0x1f,
                     0x40,
                     0,
                     0,
                     0,
                     1,
                     0,
                     0,
                     0,
                     1,
                     0x50,
                     0x18,
                     0xff,
                     0xff,
                     0,
                     0,
                     0,
                     0});
  f.resize(f.size() + payload, 'x');
  return f;
}

void BM_Classify(benchmark::State& state) {
  const std::vector<uint8_t> frame = tcp_frame(1, 40000, static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(classify(frame));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Classify)->Arg(0)->Arg(1400);

void BM_L4Checksum(benchmark::State& state) {
  const std::vector<uint8_t> frame = tcp_frame(1, 40000, static_cast<std::size_t>(state.range(0)));
  const Classification c = classify(frame);
  for (auto _ : state) benchmark::DoNotOptimize(l4_checksum_ok(frame, c.info));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_L4Checksum)->Arg(64)->Arg(1400);

// Lookup of an existing flow among `range(0)` live flows, keys visited in random order.
void BM_FlowLookup(benchmark::State& state) {
  const auto flows = static_cast<uint32_t>(state.range(0));
  FlowTable table(flows, 7, FlowTimeouts{});
  std::vector<FlowKey> keys;
  for (uint32_t i = 0; i < flows; ++i) {
    const Classification c = classify(tcp_frame(i, static_cast<uint16_t>(1024 + i % 60000), 0));
    keys.push_back(make_flow_key(c.info).key);
    table.insert(keys.back(), table.hash(keys.back()), 0);
  }
  std::mt19937 random(1);
  std::shuffle(keys.begin(), keys.end(), random);
  std::size_t i = 0;
  for (auto _ : state) {
    const FlowKey& key = keys[i++ % keys.size()];
    benchmark::DoNotOptimize(table.find(key, table.hash(key)));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FlowLookup)->Arg(1024)->Arg(65536)->Arg(1 << 20);

// In-order delivery of 1400-byte client segments through the tracker (digest, keeping the
// bytes until acknowledged, consumer call), with the server acknowledging every 10th segment.
void BM_TcpInOrderSegment(benchmark::State& state) {
  FlowTable table(4, 1, FlowTimeouts{});
  NullConsumer consumer;
  Counters counters;
  TcpTracker tracker(TcpConfig{}, table, consumer, counters);
  FlowKey key;
  Flow* flow = table.insert(key, table.hash(key), 0);
  PacketInfo info;
  info.l4 = L4::kTcp;
  info.tcp_flags = tcp_flag::kSyn;
  tracker.on_packet(*flow, info, {}, true, 0);
  info.tcp_flags = tcp_flag::kSyn | tcp_flag::kAck;
  tracker.on_packet(*flow, info, {}, false, 0);
  const std::string payload(1400, 'p');
  const std::span<const uint8_t> bytes{reinterpret_cast<const uint8_t*>(payload.data()),
                                       payload.size()};
  info.tcp_flags = tcp_flag::kAck;
  info.seq = 1;
  PacketInfo ack;
  ack.l4 = L4::kTcp;
  ack.tcp_flags = tcp_flag::kAck;
  ack.seq = 1;
  uint32_t segments = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(tracker.on_packet(*flow, info, bytes, true, 0));
    info.seq += 1400;
    if (++segments % 10 == 0) {
      ack.ack = info.seq;
      tracker.on_packet(*flow, ack, {}, false, 0);
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 1400);
}
BENCHMARK(BM_TcpInOrderSegment);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
