#include "sluice/pipeline.hpp"

#include <rte_cycles.h>
#include <rte_prefetch.h>

#include "sluice/classify.hpp"
#include "sluice/packet_builder.hpp"
#include "sluice/stage_clock.hpp"

namespace sluice {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000;
constexpr uint16_t kPrefetchAhead = 3;

FlowTimeouts timeouts_of(const InspectConfig& inspect) {
  const auto ns = [](double seconds) { return static_cast<uint64_t>(seconds * kNsPerSecond); };
  return {ns(inspect.half_open_timeout_s), ns(inspect.established_timeout_s),
          ns(inspect.closing_timeout_s)};
}

TcpConfig tcp_config_of(const InspectConfig& inspect) {
  return {inspect.reassembly_bytes, inspect.reassembly_segments, inspect.reassembly_slots};
}

// URG (RFC 9293 §3.1): not in tcp_flag because nothing else reads it.
constexpr uint8_t kTcpUrg = 0x20;

uint16_t load16(const uint8_t* at) {
  return static_cast<uint16_t>(at[0] << 8 | at[1]);
}
void store16(uint8_t* at, uint16_t value) {
  at[0] = static_cast<uint8_t>(value >> 8);
  at[1] = static_cast<uint8_t>(value);
}

// RFC 1624 eqn. 3: the checksum after one 16-bit word of the summed data changes from `old` to
// `now`, HC' = ~(~HC + ~m + m'), in ones' complement arithmetic.
uint16_t checksum_update(uint16_t checksum, uint16_t old, uint16_t now) {
  uint32_t sum =
      static_cast<uint16_t>(~checksum) + static_cast<uint32_t>(static_cast<uint16_t>(~old)) + now;
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Clears URG and the urgent pointer of the TCP header at `tcp`, checksum fixed in place.
void clear_urgent(uint8_t* tcp) {
  constexpr std::size_t kFlagsWord = 12;  // data offset, reserved bits, flags
  constexpr std::size_t kChecksum = 16;
  constexpr std::size_t kUrgentPointer = 18;
  uint16_t checksum = load16(tcp + kChecksum);
  const uint16_t flags_word = load16(tcp + kFlagsWord);
  const auto cleared = static_cast<uint16_t>(flags_word & ~uint16_t{kTcpUrg});
  checksum = checksum_update(checksum, flags_word, cleared);
  checksum = checksum_update(checksum, load16(tcp + kUrgentPointer), 0);
  store16(tcp + kFlagsWord, cleared);
  store16(tcp + kUrgentPointer, 0);
  store16(tcp + kChecksum, checksum);
}

Counter rx_packets(Side side) {
  return side == Side::kClient ? Counter::rx_client_packets : Counter::rx_server_packets;
}
Counter rx_bytes(Side side) {
  return side == Side::kClient ? Counter::rx_client_bytes : Counter::rx_server_bytes;
}

}  // namespace

HttpStageConfig http_stage_config(const Config& config) {
  HttpStageConfig stage;
  const HttpConfig& http = config.http;
  stage.limits.max_header_bytes = http.max_header_bytes;
  stage.limits.max_headers = http.max_headers;
  stage.limits.max_body_bytes = http.max_body_bytes;
  stage.limits.methods = {};
  for (std::size_t i = 0; i < http.methods.size() && i < stage.limits.methods.size(); ++i) {
    stage.limits.methods[i] = http.methods[i];
  }
  stage.decode.max_output_bytes = http.max_decoded_bytes;
  stage.decode.max_ratio = http.max_decode_ratio;
  stage.json.max_depth = http.json_max_depth;
  return stage;
}

uint64_t tsc_now_ns() {
  static const double ns_per_cycle = 1e9 / static_cast<double>(rte_get_tsc_hz());
  return static_cast<uint64_t>(static_cast<double>(rte_rdtsc()) * ns_per_cycle);
}

Pipeline::Pipeline(const Config& config, uint64_t hash_seed, rte_mempool* pool, PacketSink& sink,
                   StreamConsumer& consumer, Counters& counters)
    : inspect_(config.inspect),
      pool_(pool),
      sink_(sink),
      consumer_(consumer),
      counters_(counters),
      table_(config.dataplane.flow_capacity, hash_seed, timeouts_of(config.inspect)),
      tracker_(tcp_config_of(config.inspect), table_, consumer, counters) {}

void Pipeline::process_burst(Side arrived_on, rte_mbuf* const* mbufs, uint16_t count,
                             uint64_t now_ns) {
  for (uint16_t i = 0; i < count && i < kPrefetchAhead; ++i) {
    rte_prefetch0(rte_pktmbuf_mtod(mbufs[i], void*));
  }
  for (uint16_t i = 0; i < count; ++i) {
    if (i + kPrefetchAhead < count)
      rte_prefetch0(rte_pktmbuf_mtod(mbufs[i + kPrefetchAhead], void*));
    process(arrived_on, mbufs[i], now_ns);
  }
}

void Pipeline::process(Side arrived_on, rte_mbuf* mbuf, uint64_t now_ns) {
  counters_.add(rx_packets(arrived_on));
  counters_.add(rx_bytes(arrived_on), rte_pktmbuf_pkt_len(mbuf));
  if (mbuf->nb_segs > 1 && rte_pktmbuf_linearize(mbuf) != 0) {
    counters_.add(Counter::drop_multi_segment);
    return drop(mbuf);
  }
  const std::span<const uint8_t> frame{rte_pktmbuf_mtod(mbuf, const uint8_t*),
                                       rte_pktmbuf_data_len(mbuf)};
  const Classification c = [&] {
    SLUICE_STAGE(kClassify);
    return classify(frame);
  }();
  if (c.malformed) {
    counters_.add(c.reason);
    return drop(mbuf);
  }
  const PacketInfo& info = c.info;
  if (info.fragment) {
    if (!passes(inspect_.fragments, Counter::fragments_passed, Counter::drop_fragment))
      return drop(mbuf);
    return sink_.send(opposite(arrived_on), mbuf);
  }
  if (!info.is_tcp() ||
      !(inspect_.is_inspected_port(info.dst_port) || inspect_.is_inspected_port(info.src_port))) {
    if (!passes(inspect_.other_traffic, Counter::other_traffic_passed,
                Counter::drop_other_traffic)) {
      return drop(mbuf);
    }
    return sink_.send(opposite(arrived_on), mbuf);
  }
  process_inspected(arrived_on, mbuf, info, frame, now_ns);
}

void Pipeline::process_inspected(Side arrived_on, rte_mbuf* mbuf, const PacketInfo& info,
                                 std::span<const uint8_t> frame, uint64_t now_ns) {
  // A segment the receiver will discard must not be read as if it had arrived (the classic
  // bad-checksum evasion): dropped by default.
  const auto [ip_ok, both_ok] = [&] {
    SLUICE_STAGE(kClassify);
    const bool ip = ipv4_header_checksum_ok(frame, info);
    return std::pair{ip, ip && l4_checksum_ok(frame, info)};
  }();
  if (!both_ok) {
    const Counter reason = ip_ok ? Counter::drop_bad_l4_checksum : Counter::drop_bad_ipv4_checksum;
    if (!passes(inspect_.bad_checksum, Counter::bad_checksum_passed, reason)) return drop(mbuf);
  }

  KeyedPacket keyed;
  uint64_t hash = 0;
  Flow* flow = nullptr;
  {
    SLUICE_STAGE(kFlow);
    keyed = make_flow_key(info);
    hash = table_.hash(keyed.key);
    flow = table_.find(keyed.key, hash);
  }
  if (flow == nullptr) {
    if (!TcpTracker::opens_flow(info)) {
      if (!passes(inspect_.midstream, Counter::midstream_passed, Counter::drop_midstream)) {
        return drop(mbuf);
      }
      return sink_.send(opposite(arrived_on), mbuf);
    }
    if (draining_) return refuse_syn(arrived_on, mbuf, info, frame);
    flow = open_flow(arrived_on, keyed, hash, now_ns);
    if (flow == nullptr) {
      if (!passes(inspect_.on_flow_table_full, Counter::flow_table_full_passed,
                  Counter::drop_flow_table_full)) {
        return drop(mbuf);
      }
      return sink_.send(opposite(arrived_on), mbuf);
    }
  } else {
    SLUICE_STAGE(kFlow);
    // The direction is the port the frame arrived on; addresses that claim the other one are a
    // forgery (or a loop), never read: a "server" ACK from the client port would let the
    // tracker drop bytes the server never got from its comparisons.
    if ((keyed.source_is_low == flow->client_is_low) != (arrived_on == flow->client_side)) {
      counters_.add(Counter::drop_tcp_wrong_side);
      return drop(mbuf);
    }
    table_.touch(*flow, now_ns);
  }
  const bool from_client = arrived_on == flow->client_side;

  // Urgent data: Linux (SO_OOBINLINE off, the default) takes the byte before the urgent pointer
  // out of the stream, Sluice reads it in-stream. One reading: URG cleared, or the segment
  // dropped (inspect.urgent_data).
  if (info.tcp_flags & kTcpUrg) {
    if (inspect_.urgent_data == UrgentPolicy::kDrop) {
      counters_.add(Counter::drop_tcp_urgent);
      return drop(mbuf);
    }
    clear_urgent(rte_pktmbuf_mtod(mbuf, uint8_t*) + info.l4_offset);
    counters_.add(Counter::tcp_urgent_cleared);
  }

  const std::span<const uint8_t> payload = frame.subspan(info.payload_offset, info.payload_length);
  const TcpResult result = tracker_.on_packet(*flow, info, payload, from_client, now_ns);
  SLUICE_STAGE(kEnforce);
  switch (result.verdict) {
    case TcpVerdict::kForward:
      return sink_.send(opposite(arrived_on), mbuf);
    case TcpVerdict::kDrop:
      return drop(mbuf);
    case TcpVerdict::kKill:
      end_flow(arrived_on, *flow, info, frame, from_client, result, {});
      return drop(mbuf);
    case TcpVerdict::kDeny:
      end_flow(arrived_on, *flow, info, frame, from_client, result,
               consumer_.denial(table_.index_of(*flow)));
      return drop(mbuf);
    case TcpVerdict::kAnswer:
      // RFC 9293 §3.10.7.4: the FIN takes one sequence number past the segment's payload.
      send_segment(arrived_on, frame, info, true, info.ack, info.seq + info.payload_length + 1,
                   tcp_flag::kAck, {}, Counter::tcp_killed_flow_answered);
      return drop(mbuf);
  }
}

bool Pipeline::passes(Policy policy, Counter passed, Counter dropped) {
  counters_.add(policy == Policy::kPass ? passed : dropped);
  return policy == Policy::kPass;
}

Flow* Pipeline::open_flow(Side arrived_on, const KeyedPacket& keyed, uint64_t hash,
                          uint64_t now_ns) {
  SLUICE_STAGE(kFlow);
  Flow* flow = table_.insert(keyed.key, hash, now_ns);
  if (flow == nullptr) {
    // Full: an idle flow that has timed out goes first, then the oldest half-open one (a SYN
    // flood fills the table with those, and they are the cheapest to lose).
    Flow* victim = table_.next_expired(now_ns);
    Counter reason = Counter::flows_expired;
    if (victim == nullptr) {
      victim = table_.oldest_half_open();
      reason = Counter::flows_evicted;
    }
    if (victim == nullptr) return nullptr;
    remove_flow(*victim);
    counters_.add(reason);
    flow = table_.insert(keyed.key, hash, now_ns);
  }
  flow->client_is_low = keyed.source_is_low;
  flow->client_side = arrived_on;
  counters_.add(Counter::flows_created);
  tracker_.open(*flow);
  return flow;
}

// RFC 9293 §3.10.7.1: the answer to a SYN nobody will accept is <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
// <CTL=RST,ACK>, SEG.LEN counting the SYN itself; the sender reports "connection refused".
void Pipeline::refuse_syn(Side arrived_on, rte_mbuf* mbuf, const PacketInfo& info,
                          std::span<const uint8_t> frame) {
  counters_.add(Counter::syns_refused_draining);
  const uint32_t ack = info.seq + 1 + info.payload_length;
  send_segment(arrived_on, frame, info, true, 0, ack, tcp_flag::kRst | tcp_flag::kAck, {},
               Counter::rst_sent);
  drop(mbuf);
}

void Pipeline::remove_flow(Flow& flow) {
  SLUICE_STAGE(kFlow);
  tracker_.release(flow);
  table_.remove(flow);
}

void Pipeline::expire_flows(uint64_t now_ns, uint32_t budget) {
  SLUICE_STAGE(kFlow);
  for (; budget > 0; --budget) {
    Flow* flow = table_.next_expired(now_ns);
    if (flow == nullptr) return;
    remove_flow(*flow);
    counters_.add(Counter::flows_expired);
  }
}

void Pipeline::close_all() {
  for (uint32_t i = 0; i < table_.capacity(); ++i) {
    if (table_.at(i).in_use) remove_flow(table_.at(i));
  }
}

// Ends a flow from the middle: a RST to the server as if from the client, and to the client
// either a RST as if from the server or, for a denial, the consumer's HTTP response with FIN.
// Sequence numbers: each side is sent the sequence number it waits at — for the direction of a
// packet the consumer refused, the start of what that packet brought (not forwarded); the
// acknowledgements cover everything read, so the client does not retransmit into a dead flow.
void Pipeline::end_flow(Side arrived_on, const Flow& flow, const PacketInfo& info,
                        std::span<const uint8_t> frame, bool from_client, const TcpResult& result,
                        std::span<const uint8_t> denial) {
  const uint32_t client_next = flow.tcp.of(Direction::kToServer).next_seq;
  const uint32_t server_next = flow.tcp.of(Direction::kToClient).next_seq;
  const bool resume = result.resume_known;
  const uint32_t client_waits_for = resume && !from_client ? result.resume_seq : server_next;
  const uint32_t server_waits_for = resume && from_client ? result.resume_seq : client_next;
  const Side server_side = from_client ? opposite(arrived_on) : arrived_on;
  const uint8_t client_flags = denial.empty() ? tcp_flag::kRst | tcp_flag::kAck
                                              : tcp_flag::kFin | tcp_flag::kPsh | tcp_flag::kAck;
  // `reply`: the frame goes back to the offending packet's sender.
  send_segment(server_side, frame, info, !from_client, server_waits_for, server_next,
               tcp_flag::kRst | tcp_flag::kAck, {}, Counter::rst_sent);
  send_segment(opposite(server_side), frame, info, from_client, client_waits_for, client_next,
               client_flags, denial, denial.empty() ? Counter::rst_sent : Counter::denials_sent);
}

void Pipeline::send_segment(Side toward, std::span<const uint8_t> frame, const PacketInfo& info,
                            bool reply, uint32_t seq, uint32_t ack, uint8_t flags,
                            std::span<const uint8_t> payload, Counter sent) {
  rte_mbuf* mbuf = rte_pktmbuf_alloc(pool_);
  if (mbuf == nullptr) {
    counters_.add(Counter::drop_mbuf_alloc_failed);
    return;
  }
  const std::size_t room = kMaxRstFrame + payload.size();
  auto* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(mbuf, static_cast<uint16_t>(room)));
  const std::size_t length =
      out == nullptr ? 0
                     : build_tcp_segment(frame, info, reply, seq, ack, flags, payload, {out, room});
  if (length == 0) {
    rte_pktmbuf_free(mbuf);
    counters_.add(Counter::drop_mbuf_alloc_failed);
    return;
  }
  rte_pktmbuf_trim(mbuf, static_cast<uint16_t>(room - length));
  counters_.add(sent);
  sink_.send(toward, mbuf);
}

}  // namespace sluice
