#include "sluice/tcp_tracker.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace sluice {
namespace {

// Sequence arithmetic modulo 2^32 (RFC 9293 §3.4): the signed distance from b to a.
int32_t seq_diff(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b);
}

Direction other(Direction d) {
  return d == Direction::kToServer ? Direction::kToClient : Direction::kToServer;
}

constexpr TcpResult kForward{};

}  // namespace

TcpTracker::TcpTracker(const TcpConfig& config, FlowTable& table, StreamConsumer& consumer,
                       Counters& counters)
    : config_(config), table_(table), consumer_(consumer), counters_(counters) {
  config_.reassembly_segments = std::min<uint32_t>(config_.reassembly_segments, 32);
  blocks_.resize(config_.reassembly_blocks);
  block_bytes_.resize(std::size_t{config_.reassembly_blocks} * config_.reassembly_bytes);
  for (uint32_t i = config_.reassembly_blocks; i-- > 0;) free_block(i);
  blocks_in_use_ = 0;
}

bool TcpTracker::opens_flow(const PacketInfo& info) {
  return (info.tcp_flags & (tcp_flag::kSyn | tcp_flag::kAck | tcp_flag::kRst)) == tcp_flag::kSyn;
}

void TcpTracker::open(Flow& flow) {
  consumer_.on_open(flow_id(flow));
}

TcpResult TcpTracker::on_packet(Flow& flow, const PacketInfo& info,
                                std::span<const uint8_t> payload, bool from_client,
                                uint64_t now_ns) {
  if (flow.state == FlowState::kKilled) {
    if (from_client && opens_flow(info)) return on_syn(flow, info, payload, from_client, now_ns);
    counters_.add(Counter::drop_tcp_killed_flow);
    return {TcpVerdict::kDrop, Counter::drop_tcp_killed_flow};
  }
  if (info.tcp_flags & tcp_flag::kSyn) return on_syn(flow, info, payload, from_client, now_ns);

  const Direction direction = from_client ? Direction::kToServer : Direction::kToClient;
  TcpDirectionState& state = flow.tcp.of(direction);
  if (!state.initialized) {
    counters_.add(Counter::drop_tcp_unexpected);
    return {TcpVerdict::kDrop, Counter::drop_tcp_unexpected};
  }
  // The acknowledgement tells what the receiver of the reverse direction holds; bytes it has
  // acknowledged cannot be replaced at the receiver any more.
  TcpDirectionState& reverse = flow.tcp.of(other(direction));
  if ((info.tcp_flags & tcp_flag::kAck) && reverse.initialized &&
      seq_diff(info.ack, reverse.next_seq) <= 0 &&
      (!reverse.acked_valid || seq_diff(info.ack, reverse.acked) > 0)) {
    reverse.acked = info.ack;
    reverse.acked_valid = true;
  }
  if (info.tcp_flags & tcp_flag::kRst) {
    if (flow.state != FlowState::kClosing) table_.set_state(flow, FlowState::kClosing, now_ns);
    return kForward;
  }
  const bool fin = info.tcp_flags & tcp_flag::kFin;
  if (payload.empty() && !fin) return kForward;
  return on_data(flow, direction, info.seq, payload, fin, now_ns);
}

TcpResult TcpTracker::on_syn(Flow& flow, const PacketInfo& info, std::span<const uint8_t> payload,
                             bool from_client, uint64_t now_ns) {
  const bool ack = info.tcp_flags & tcp_flag::kAck;
  if (from_client && !ack) {
    TcpDirectionState& client = flow.tcp.of(Direction::kToServer);
    if (client.initialized) {
      if (flow.state == FlowState::kHalfOpen && info.seq + 1 == client.next_seq) {
        counters_.add(Counter::tcp_identical_retransmissions);
        return kForward;
      }
      // A SYN inside an established connection is the receiver's to answer (RFC 5961 §4).
      if (flow.state == FlowState::kEstablished) return kForward;
      reset_tracking(flow, now_ns);  // the 5-tuple is being reused by a new connection
    }
    client.initialized = true;
    client.next_seq = info.seq + 1;
    if (!payload.empty())
      return on_data(flow, Direction::kToServer, info.seq + 1, payload, false, now_ns);
    return kForward;
  }
  if (!from_client && ack && flow.tcp.of(Direction::kToServer).initialized) {
    TcpDirectionState& server = flow.tcp.of(Direction::kToClient);
    if (server.initialized) {
      if (info.seq + 1 == server.next_seq) {
        counters_.add(Counter::tcp_identical_retransmissions);
        return kForward;
      }
      counters_.add(Counter::drop_tcp_unexpected);
      return {TcpVerdict::kDrop, Counter::drop_tcp_unexpected};
    }
    server.initialized = true;
    server.next_seq = info.seq + 1;
    table_.set_state(flow, FlowState::kEstablished, now_ns);
    return kForward;
  }
  // Simultaneous open, a SYN-ACK before any SYN, a server-sent SYN: none of these start a flow
  // this tracker can attribute.
  counters_.add(Counter::drop_tcp_unexpected);
  return {TcpVerdict::kDrop, Counter::drop_tcp_unexpected};
}

TcpResult TcpTracker::on_data(Flow& flow, Direction direction, uint32_t seq,
                              std::span<const uint8_t> payload, bool fin, uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  const auto length = static_cast<uint32_t>(payload.size());
  // After a FIN, nothing may occupy its sequence number or anything beyond it.
  if (state.fin_received && seq_diff(seq + length, state.next_seq - 1) > 0) {
    counters_.add(Counter::drop_tcp_out_of_window);
    return {TcpVerdict::kDrop, Counter::drop_tcp_out_of_window};
  }
  const int32_t ahead = seq_diff(seq, state.next_seq);
  if (ahead > 0) return hold(flow, direction, seq, payload, fin, now_ns);
  // Bytes before next_seq were delivered already: they must be the same bytes.
  const uint32_t old_bytes = std::min<uint32_t>(length, static_cast<uint32_t>(-int64_t{ahead}));
  if (old_bytes > 0) {
    switch (check_delivered(state, seq, payload.first(old_bytes))) {
      case Check::kDiffers:
        return kill(flow, Counter::drop_tcp_conflicting_retransmission, now_ns);
      case Check::kUnverifiable:
        return kill(flow, Counter::drop_tcp_unverifiable_retransmission, now_ns);
      case Check::kIdentical:
        break;
    }
  }
  const std::span<const uint8_t> fresh = payload.subspan(old_bytes);
  if (fresh.empty() && !(fin && !state.fin_received && seq + length == state.next_seq)) {
    counters_.add(Counter::tcp_identical_retransmissions);
    return kForward;
  }
  if (!fresh.empty() && deliver(flow, direction, fresh, now_ns) == StreamVerdict::kKill) {
    return kill(flow, Counter::drop_consumer, now_ns);
  }
  if (fin && !state.fin_received && seq + length == state.next_seq)
    deliver_fin(flow, direction, now_ns);
  return drain_held(flow, direction, now_ns);
}

TcpTracker::Check TcpTracker::check_delivered(const TcpDirectionState& state, uint32_t seq,
                                              std::span<const uint8_t> bytes) const {
  const auto length = static_cast<uint32_t>(bytes.size());
  // Bytes the receiver has acknowledged need no check: it discards any copy of them.
  uint32_t unacked_from = 0;
  if (state.acked_valid) {
    unacked_from =
        static_cast<uint32_t>(std::clamp<int64_t>(seq_diff(state.acked, seq), 0, length));
  }
  uint32_t verified = 0;
  for (std::size_t i = 0; i < state.history_count; ++i) {
    const SegmentDigest& digest = state.history[i];
    const int32_t offset = seq_diff(digest.seq, seq);
    if (offset < 0 || static_cast<uint32_t>(offset) + digest.length > length) continue;
    if (XXH3_64bits(bytes.data() + offset, digest.length) != digest.hash) return Check::kDiffers;
    // Deliveries never overlap, so the pieces' parts beyond unacked_from add up without double
    // counting.
    const uint32_t begin = std::max<uint32_t>(static_cast<uint32_t>(offset), unacked_from);
    const uint32_t end = static_cast<uint32_t>(offset) + digest.length;
    if (end > begin) verified += end - begin;
  }
  return verified == length - unacked_from ? Check::kIdentical : Check::kUnverifiable;
}

StreamVerdict TcpTracker::deliver(Flow& flow, Direction direction, std::span<const uint8_t> bytes,
                                  uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  SegmentDigest& digest = state.history[state.history_next];
  digest.seq = state.next_seq;
  digest.length = static_cast<uint32_t>(bytes.size());
  digest.hash = XXH3_64bits(bytes.data(), bytes.size());
  state.history_next = static_cast<uint8_t>((state.history_next + 1) % kDigestHistory);
  state.history_count =
      static_cast<uint8_t>(std::min<std::size_t>(state.history_count + 1, kDigestHistory));
  state.next_seq += digest.length;
  counters_.add(Counter::tcp_payload_bytes_delivered, bytes.size());
  return consumer_.on_data(flow_id(flow), direction, bytes, now_ns);
}

void TcpTracker::deliver_fin(Flow& flow, Direction direction, uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  state.fin_received = true;
  state.next_seq += 1;  // the FIN occupies one sequence number
  consumer_.on_end(flow_id(flow), direction);
  if (flow.state != FlowState::kClosing) table_.set_state(flow, FlowState::kClosing, now_ns);
}

TcpResult TcpTracker::hold(Flow& flow, Direction direction, uint32_t seq,
                           std::span<const uint8_t> bytes, bool fin, uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  const auto length = static_cast<uint32_t>(bytes.size());
  const auto overflow = [this] {
    counters_.add(Counter::drop_tcp_out_of_order_overflow);
    return TcpResult{TcpVerdict::kDrop, Counter::drop_tcp_out_of_order_overflow};
  };
  const auto ahead = static_cast<uint64_t>(seq_diff(seq, state.next_seq));
  if (ahead + length > config_.reassembly_bytes) return overflow();

  if (state.reassembly_block != kNoBlock) {
    const Block& block = blocks_[state.reassembly_block];
    const uint8_t* held_bytes = block_bytes(state.reassembly_block);
    for (uint32_t i = 0; i < block.segment_count; ++i) {
      const HeldSegment& held = block.segments[i];
      const int32_t begin = std::max(0, seq_diff(held.seq, seq));
      const int32_t end =
          std::min<int32_t>(static_cast<int32_t>(length), seq_diff(held.seq + held.length, seq));
      if (end > begin && std::memcmp(bytes.data() + begin,
                                     held_bytes + held.offset + seq_diff(seq + begin, held.seq),
                                     static_cast<std::size_t>(end - begin)) != 0) {
        return kill(flow, Counter::drop_tcp_conflicting_retransmission, now_ns);
      }
      if (held.seq == seq && held.length == length && held.fin == fin) {
        counters_.add(Counter::tcp_identical_retransmissions);
        return kForward;
      }
    }
  } else {
    state.reassembly_block = allocate_block();
    if (state.reassembly_block == kNoBlock) return overflow();
  }
  Block& block = blocks_[state.reassembly_block];
  if (block.segment_count == config_.reassembly_segments ||
      block.used_bytes + length > config_.reassembly_bytes) {
    if (block.segment_count == 0) {
      free_block(state.reassembly_block);
      state.reassembly_block = kNoBlock;
    }
    return overflow();
  }
  std::memcpy(block_bytes(state.reassembly_block) + block.used_bytes, bytes.data(), length);
  block.segments[block.segment_count++] = HeldSegment{seq, length, block.used_bytes, fin};
  block.used_bytes += length;
  counters_.add(Counter::tcp_out_of_order_held);
  return kForward;
}

TcpResult TcpTracker::drain_held(Flow& flow, Direction direction, uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  bool progress = true;
  while (progress && state.reassembly_block != kNoBlock) {
    progress = false;
    Block& block = blocks_[state.reassembly_block];
    for (uint32_t i = 0; i < block.segment_count; ++i) {
      const HeldSegment held = block.segments[i];
      const int32_t ahead = seq_diff(held.seq, state.next_seq);
      if (ahead > 0) continue;
      const std::span<const uint8_t> bytes{block_bytes(state.reassembly_block) + held.offset,
                                           held.length};
      const uint32_t old_bytes =
          std::min<uint32_t>(held.length, static_cast<uint32_t>(-int64_t{ahead}));
      if (old_bytes > 0 &&
          check_delivered(state, held.seq, bytes.first(old_bytes)) != Check::kIdentical) {
        return kill(flow, Counter::drop_tcp_conflicting_retransmission, now_ns);
      }
      block.segments[i] = block.segments[--block.segment_count];
      progress = true;
      if (old_bytes < held.length && !state.fin_received &&
          deliver(flow, direction, bytes.subspan(old_bytes), now_ns) == StreamVerdict::kKill) {
        return kill(flow, Counter::drop_consumer, now_ns);
      }
      if (held.fin && !state.fin_received && held.seq + held.length == state.next_seq) {
        deliver_fin(flow, direction, now_ns);
      }
      if (block.segment_count == 0) {
        free_block(state.reassembly_block);
        state.reassembly_block = kNoBlock;
      }
      break;
    }
  }
  return kForward;
}

TcpResult TcpTracker::kill(Flow& flow, Counter reason, uint64_t now_ns) {
  counters_.add(reason);
  counters_.add(Counter::tcp_flows_killed);
  for (TcpDirectionState& state : flow.tcp.direction) {
    if (state.reassembly_block != kNoBlock) free_block(state.reassembly_block);
    state.reassembly_block = kNoBlock;
  }
  table_.set_state(flow, FlowState::kKilled, now_ns);
  return {TcpVerdict::kKill, reason};
}

void TcpTracker::release(Flow& flow) {
  for (TcpDirectionState& state : flow.tcp.direction) {
    if (state.reassembly_block != kNoBlock) free_block(state.reassembly_block);
    state.reassembly_block = kNoBlock;
  }
  consumer_.on_close(flow_id(flow));
}

void TcpTracker::reset_tracking(Flow& flow, uint64_t now_ns) {
  release(flow);
  flow.tcp = TcpFlowState{};
  consumer_.on_open(flow_id(flow));
  table_.set_state(flow, FlowState::kHalfOpen, now_ns);
}

uint32_t TcpTracker::allocate_block() {
  const uint32_t index = free_blocks_;
  if (index == kNoBlock) return kNoBlock;
  free_blocks_ = blocks_[index].next_free;
  blocks_[index].used_bytes = 0;
  blocks_[index].segment_count = 0;
  ++blocks_in_use_;
  return index;
}

void TcpTracker::free_block(uint32_t index) {
  blocks_[index].next_free = free_blocks_;
  free_blocks_ = index;
  --blocks_in_use_;
}

}  // namespace sluice
