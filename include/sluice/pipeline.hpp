// One worker's packet pipeline, in data-path order:
//   classify → policy for non-inspected traffic → checksum → flow table → TCP tracker
//   (→ stream consumer) → forward / drop / kill.
// The live bridge and the offline replay both drive exactly this class; they differ only in
// where packets come from, where `PacketSink` sends them and where `now` comes from.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>

#include "sluice/config.hpp"
#include "sluice/counters.hpp"
#include "sluice/flow_table.hpp"
#include "sluice/http_stage.hpp"
#include "sluice/stream_consumer.hpp"
#include "sluice/tcp_tracker.hpp"

namespace sluice {

class PacketSink {
 public:
  virtual ~PacketSink() = default;
  // Takes ownership of the mbuf: sends it toward `toward` (or frees it when it cannot).
  virtual void send(Side toward, rte_mbuf* mbuf) = 0;
};

class Pipeline {
 public:
  Pipeline(const Config& config, uint64_t hash_seed, rte_mempool* pool, PacketSink& sink,
           StreamConsumer& consumer, Counters& counters);

  // Every mbuf handed in is forwarded, freed or kept by the consumer: none is lost.
  void process_burst(Side arrived_on, rte_mbuf* const* mbufs, uint16_t count, uint64_t now_ns);

  // Incremental housekeeping: expires at most `budget` idle flows.
  void expire_flows(uint64_t now_ns, uint32_t budget);

  // Removes every flow (at shutdown), so consumers see every close.
  void close_all();

  // Draining (`sluicectl drain`): a SYN that would open a new inspected flow is answered with a
  // RST|ACK toward its sender and dropped (counted as syns_refused_draining); flows already in
  // the table carry on. Set by the worker once per loop from the shared flag.
  void set_draining(bool draining) { draining_ = draining; }

  uint32_t active_flows() const { return table_.size(); }
  uint32_t open_flows() const { return table_.open_flows(); }
  const FlowTable& flows() const { return table_; }

 private:
  void process(Side arrived_on, rte_mbuf* mbuf, uint64_t now_ns);
  void process_inspected(Side arrived_on, rte_mbuf* mbuf, const PacketInfo& info,
                         std::span<const uint8_t> frame, uint64_t now_ns);
  bool passes(Policy policy, Counter passed, Counter dropped);
  Flow* open_flow(Side arrived_on, const KeyedPacket& keyed, uint64_t hash, uint64_t now_ns);
  void remove_flow(Flow& flow);
  void end_flow(Side arrived_on, const Flow& flow, const PacketInfo& info,
                std::span<const uint8_t> frame, bool from_client, const TcpResult& result,
                std::span<const uint8_t> denial);
  void send_segment(Side toward, std::span<const uint8_t> frame, const PacketInfo& info, bool reply,
                    uint32_t seq, uint32_t ack, uint8_t flags, std::span<const uint8_t> payload,
                    Counter sent);
  void drop(rte_mbuf* mbuf) { rte_pktmbuf_free(mbuf); }
  void refuse_syn(Side arrived_on, rte_mbuf* mbuf, const PacketInfo& info,
                  std::span<const uint8_t> frame);

  const InspectConfig& inspect_;
  rte_mempool* pool_;
  PacketSink& sink_;
  StreamConsumer& consumer_;
  Counters& counters_;
  FlowTable table_;
  TcpTracker tracker_;
  bool draining_ = false;
};

// The L7 stage's settings from the config (views into `config`, which outlives the stage).
HttpStageConfig http_stage_config(const Config& config);

// Nanosecond clock for the live data path: the TSC, read once per burst.
uint64_t tsc_now_ns();

}  // namespace sluice
