#include "sluice/tcp_tracker.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "sluice/stage_clock.hpp"

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

// RFC 7323 §5.3 as Linux applies it (tcp_paws_check): a segment passes when TS.Recent - SEG.TSval
// is at most this (signed), so one tick older still passes.
constexpr int32_t kPawsWindow = 1;

// The segment's TSval against what the receiver's TS.Recent may be, L in [ts_floor, ts_max].
// Linux discards a non-RST segment when (s32)(L - TSval) > 1 and sets L to the TSval of segments
// it takes (tcp_replace_ts_recent: those that pass and start at or before the last ACK it sent;
// the SYN's at the handshake). Sluice forwards a segment only when it passes for every L in the
// range — u = TSval - ts_floor with ts_max - ts_floor - 1 <= u <= 2^31 - 1 — and then raises
// ts_max to it, whether or not Linux takes it: every TSval Linux can hold was forwarded, so it
// stays in the range, and the range never spans 2^31, where the signed comparison would turn.
// Sluice therefore drops every segment Linux discards (and a few it would take: reordering by
// more than one tick, pure ACKs Linux lets through as disordered, flows older than 24 days).
bool paws_rejects(TcpDirectionState& state, const PacketInfo& info) {
  if (state.timestamps == TcpDirectionState::Timestamps::kOff || !info.tcp_timestamp) return false;
  const uint32_t u = info.tcp_tsval - state.ts_floor;
  const uint32_t m = state.ts_max - state.ts_floor;
  if (u > static_cast<uint32_t>(INT32_MAX) || int64_t{u} + kPawsWindow < int64_t{m}) {
    return true;
  }
  if (u > m) state.ts_max = info.tcp_tsval;
  return false;
}

}  // namespace

TcpTracker::TcpTracker(const TcpConfig& config, FlowTable& table, StreamConsumer& consumer,
                       Counters& counters)
    : config_(config), table_(table), consumer_(consumer), counters_(counters) {
  slots_.resize(config_.reassembly_slots);
  slot_bytes_.resize(std::size_t{config_.reassembly_slots} * kSlotBytes);
  for (uint32_t i = config_.reassembly_slots; i-- > 0;) {
    slots_[i].next = free_slots_;
    free_slots_ = i;
  }
}

bool TcpTracker::opens_flow(const PacketInfo& info) {
  return (info.tcp_flags & (tcp_flag::kSyn | tcp_flag::kAck | tcp_flag::kRst)) == tcp_flag::kSyn;
}

void TcpTracker::open(Flow& flow) {
  const FlowKey& key = flow.key;
  const Endpoint low{key.address_low, key.port_low, key.family};
  const Endpoint high{key.address_high, key.port_high, key.family};
  consumer_.on_open(flow_id(flow),
                    flow.client_is_low ? FlowEndpoints{low, high} : FlowEndpoints{high, low});
}

TcpResult TcpTracker::on_packet(Flow& flow, const PacketInfo& info,
                                std::span<const uint8_t> payload, bool from_client,
                                uint64_t now_ns) {
  SLUICE_STAGE(kTcp);
  // Linux drops a segment carrying TCP-MD5 or TCP-AO when the socket has no key
  // (tcp_inbound_hash: TCP_MD5UNEXPECTED, TCP_AOUNEXPECTED), and hosts behind Sluice use none.
  if (info.tcp_signature) return drop(Counter::drop_tcp_signature_option);
  // A SYN with FIN or RST: Linux discards SYN+FIN in LISTEN and takes SYN+RST as a RST in a
  // synchronised state; no stack sends either. Neither may start or end anything here.
  if ((info.tcp_flags & tcp_flag::kSyn) && (info.tcp_flags & (tcp_flag::kFin | tcp_flag::kRst)))
    return drop(Counter::drop_tcp_bad_flags);
  if (flow.state == FlowState::kKilled) {
    if (from_client && opens_flow(info)) return on_syn(flow, info, payload, from_client, now_ns);
    return on_killed(info, payload, from_client);
  }
  if (info.tcp_flags & tcp_flag::kSyn) return on_syn(flow, info, payload, from_client, now_ns);

  const Direction direction = from_client ? Direction::kToServer : Direction::kToClient;
  TcpDirectionState& state = flow.tcp.of(direction);
  TcpDirectionState& reverse = flow.tcp.of(other(direction));
  // Both ends dropped the connection at the RST: only a new SYN may follow on the tuple.
  if (state.rst_received || reverse.rst_received) return drop(Counter::drop_tcp_after_rst);
  if (!state.initialized) {
    // The server refuses the SYN (its port is closed): in SYN-SENT a RST is acceptable when it
    // acknowledges the SYN (RFC 9293 §3.10.7.3), whatever its sequence number.
    constexpr uint8_t kRstAck = tcp_flag::kRst | tcp_flag::kAck;
    if (!from_client && (info.tcp_flags & kRstAck) == kRstAck && reverse.initialized &&
        info.ack == reverse.next_seq) {
      return on_rst(flow, direction, info, now_ns);
    }
    return drop(Counter::drop_tcp_unexpected);
  }
  if (info.tcp_flags & tcp_flag::kRst) return on_rst(flow, direction, info, now_ns);
  // Linux discards a segment without ACK once the SYN is answered (tcp_rcv_established,
  // tcp_check_req, tcp_rcv_state_process): its bytes and FIN never reach the stream.
  if (!(info.tcp_flags & tcp_flag::kAck)) return drop(Counter::drop_tcp_no_ack);
  // RFC 7323 §5.3: a segment older than TS.Recent is discarded (RSTs are not checked).
  if (paws_rejects(state, info)) return drop(Counter::drop_tcp_paws);
  const bool fin = info.tcp_flags & tcp_flag::kFin;
  // The client's bytes wait for the server's SYN-ACK: before it, the host has at most a
  // SYN-RECEIVED socket, which takes nothing until the client acknowledges the SYN-ACK (and none
  // at all when it ignored the SYN). A SYN the host never answered opens no stream Sluice reads.
  if (!reverse.initialized && (!payload.empty() || fin))
    return drop(Counter::drop_tcp_data_before_handshake);
  // The acknowledgement tells what the receiver of the reverse direction holds; bytes it has
  // acknowledged cannot be replaced at the receiver any more.
  if ((info.tcp_flags & tcp_flag::kAck) && reverse.initialized &&
      seq_diff(info.ack, reverse.next_seq) <= 0 &&
      (!reverse.acked_valid || seq_diff(info.ack, reverse.acked) > 0)) {
    reverse.acked = info.ack;
    reverse.acked_valid = true;
    release_acknowledged(reverse);
  }
  if (payload.empty() && !fin) return kForward;
  return on_data(flow, direction, info.seq, payload, fin, now_ns);
}

TcpResult TcpTracker::on_syn(Flow& flow, const PacketInfo& info, std::span<const uint8_t> payload,
                             bool from_client, uint64_t now_ns) {
  const bool ack = info.tcp_flags & tcp_flag::kAck;
  if (from_client && !ack && !(info.tcp_flags & tcp_flag::kRst)) {
    TcpDirectionState& client = flow.tcp.of(Direction::kToServer);
    // Data on a SYN (TCP Fast Open, RFC 7413) is taken only by a listener with TFO enabled and a
    // valid cookie; others drop it and the client sends it again after the handshake. Sluice
    // cannot know which: the SYN is dropped, and a TFO client retries with a plain SYN.
    if (!payload.empty()) return drop(Counter::drop_tcp_data_before_handshake);
    if (client.initialized) {
      if (flow.state == FlowState::kKilled || host_accepts_new_syn(flow, info.seq)) {
        reset_tracking(flow, now_ns);  // the 5-tuple is reused by a new connection
      } else if (flow.state != FlowState::kClosing && info.seq + 1 == client.next_seq) {
        // The same SYN again, nothing delivered since: SYN-RECEIVED answers it with its SYN-ACK,
        // ESTABLISHED with a challenge ACK (RFC 5961 §4); neither moves the host's stream.
        // SYN-RECEIVED checks and takes its timestamp (tcp_check_req).
        if (paws_rejects(client, info)) return drop(Counter::drop_tcp_paws);
        counters_.add(Counter::tcp_identical_retransmissions);
        return kForward;
      } else {
        // Any other SYN leaves the host's connection as it is: Linux in SYN-RECEIVED keeps the
        // first ISN (an out-of-window SYN is answered with an ACK), ESTABLISHED answers with a
        // challenge ACK, a closing socket and TIME-WAIT take only what host_accepts_new_syn
        // says. Re-seeding Sluice on it would read a stream the host never reads: dropped.
        return drop(Counter::drop_tcp_unacceptable_syn);
      }
    }
    client.initialized = true;
    client.next_seq = info.seq + 1;
    if (info.tcp_timestamp) {
      client.timestamps = TcpDirectionState::Timestamps::kOffered;
      client.ts_floor = client.ts_max = info.tcp_tsval;  // the listener's first TS.Recent
    }
    return kForward;
  }
  if (!from_client && ack && flow.tcp.of(Direction::kToServer).initialized) {
    TcpDirectionState& client = flow.tcp.of(Direction::kToServer);
    TcpDirectionState& server = flow.tcp.of(Direction::kToClient);
    if (server.initialized) {
      if (info.seq + 1 == server.next_seq) {
        counters_.add(Counter::tcp_identical_retransmissions);
        return kForward;
      }
      return drop(Counter::drop_tcp_unexpected);
    }
    // Only a SYN-ACK acknowledging the client's SYN answers it (RFC 9293 §3.10.7.3): the
    // client's bytes wait for it (on_packet).
    if (info.ack != client.next_seq) return drop(Counter::drop_tcp_unexpected);
    server.initialized = true;
    server.next_seq = info.seq + 1;
    // Timestamps are in use when both SYNs carried one (RFC 7323 §3.2).
    if (client.timestamps == TcpDirectionState::Timestamps::kOffered && info.tcp_timestamp) {
      client.timestamps = TcpDirectionState::Timestamps::kOn;
      server.timestamps = TcpDirectionState::Timestamps::kOn;
      server.ts_floor = server.ts_max = info.tcp_tsval;
    } else {
      client.timestamps = TcpDirectionState::Timestamps::kOff;
    }
    table_.set_state(flow, FlowState::kEstablished, now_ns);
    return kForward;
  }
  // Simultaneous open, a SYN-ACK before any SYN, a server-sent SYN: none of these start a flow
  // this tracker can attribute.
  return drop(Counter::drop_tcp_unexpected);
}

// The host takes a SYN on a tuple it still knows only when its connection there is over:
// - after a RST in sequence (both ends dropped it; the listener takes any SYN);
// - after both FINs, each acknowledged. When the client closed first, the server socket went
//   LAST-ACK → CLOSED and the listener takes any SYN. When the server closed first it is in
//   TIME-WAIT, which takes a SYN only above everything it received from the client (RFC 9293
//   §3.6.1; Linux tcp_timewait_state_process: after(seq, tw_rcv_nxt)). Linux also takes a lower
//   ISN with a newer timestamp (RFC 6191); Sluice keeps no timestamps and drops that SYN: the
//   client's retries pass once the flow expires. Linux ISNs grow with a clock, so a reused
//   tuple normally gets a higher one.
bool TcpTracker::host_accepts_new_syn(const Flow& flow, uint32_t isn) const {
  const TcpDirectionState& client = flow.tcp.of(Direction::kToServer);
  const TcpDirectionState& server = flow.tcp.of(Direction::kToClient);
  if (client.rst_received || server.rst_received) return true;
  const auto closed = [](const TcpDirectionState& d) {
    return d.fin_received && d.acked_valid && d.acked == d.next_seq;
  };
  if (!closed(client) || !closed(server)) return false;
  return client.fin_first || seq_diff(isn, client.next_seq) > 0;
}

// RFC 5961 §3.2 (Linux tcp_validate_incoming): a RST resets the connection only when its
// sequence number is exactly RCV.NXT; one elsewhere in the window is answered with a challenge
// ACK, one outside it is ignored. Either way the host keeps its connection, so Sluice must too:
// the RST is dropped and nothing changes.
TcpResult TcpTracker::on_rst(Flow& flow, Direction direction, const PacketInfo& info,
                             uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  if (state.initialized && info.seq != state.next_seq) return drop(Counter::drop_tcp_rst_not_exact);
  state.rst_received = true;
  for (TcpDirectionState& d : flow.tcp.direction) {
    free_held(d);
    free_retained(d);
  }
  if (flow.state != FlowState::kClosing) table_.set_state(flow, FlowState::kClosing, now_ns);
  return kForward;
}

// Sluice answered the client itself (a denial and its FIN, or a RST), so the client's socket
// closes with Sluice: its ACK of the answer is taken in silence, its FIN acknowledged. Neither
// is packet loss, so neither is a drop counter. Anything else (payload, server packets) is.
TcpResult TcpTracker::on_killed(const PacketInfo& info, std::span<const uint8_t> payload,
                                bool from_client) {
  if (from_client) {
    constexpr uint8_t kFinAck = tcp_flag::kFin | tcp_flag::kAck;
    if ((info.tcp_flags & (kFinAck | tcp_flag::kRst)) == kFinAck) {
      return {TcpVerdict::kAnswer, Counter::tcp_killed_flow_answered};
    }
    if (payload.empty() && !(info.tcp_flags & (tcp_flag::kFin | tcp_flag::kSyn))) {
      counters_.add(Counter::tcp_killed_flow_absorbed);
      return {TcpVerdict::kDrop, Counter::tcp_killed_flow_absorbed};
    }
  }
  return drop(Counter::drop_tcp_killed_flow);
}

TcpResult TcpTracker::drop(Counter reason) {
  counters_.add(reason);
  return {TcpVerdict::kDrop, reason};
}

TcpResult TcpTracker::discard(TcpDirectionState& state, uint32_t from) {
  state.discarding = true;
  state.discard_from = from;
  free_held(state);  // forwarded, but beyond the receiver's wait: it can never read them
  return drop(Counter::drop_data_after_close);
}

TcpResult TcpTracker::on_data(Flow& flow, Direction direction, uint32_t seq,
                              std::span<const uint8_t> payload, bool fin, uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  const auto length = static_cast<uint32_t>(payload.size());
  // After kDiscard the receiver waits at discard_from for ever: no byte from there on is sent.
  if (state.discarding && length > 0 && seq_diff(seq + length, state.discard_from) > 0)
    return drop(Counter::drop_data_after_close);
  // After a FIN, nothing may occupy its sequence number or anything beyond it.
  if (state.fin_received && seq_diff(seq + length, state.next_seq - 1) > 0) {
    counters_.add(Counter::drop_tcp_out_of_window);
    return {TcpVerdict::kDrop, Counter::drop_tcp_out_of_window};
  }
  // Nor beyond a FIN held ahead of a hole: Linux stops reading at a FIN (tcp_ofo_queue ends at
  // it, and a segment over it is trimmed or dropped), so such bytes would be Sluice's alone.
  if (state.fin_held && seq_diff(seq + length, state.fin_held_seq) > 0)
    return drop(Counter::drop_tcp_beyond_fin);
  const int32_t ahead = seq_diff(seq, state.next_seq);
  if (ahead > 0) return hold(flow, direction, seq, payload, fin, now_ns);
  // Bytes before next_seq were delivered already: they must be the same bytes.
  const uint32_t old_bytes = std::min<uint32_t>(length, static_cast<uint32_t>(-int64_t{ahead}));
  if (old_bytes > 0) {
    switch (check_delivered(state, seq, payload.first(old_bytes))) {
      case Check::kDiffers:
        return kill(flow, Counter::drop_tcp_conflicting_retransmission, now_ns);
      case Check::kUnverifiable:
        // The client is who may try to slip bytes past the filter; a retransmission it sends
        // that cannot be compared fails closed. The inference host is the protected side:
        // its unverifiable retransmissions pass, counted.
        if (direction == Direction::kToServer) {
          return kill(flow, Counter::drop_tcp_unverifiable_retransmission, now_ns);
        }
        counters_.add(Counter::tcp_unverified_retransmissions_passed);
        break;
      case Check::kIdentical:
        break;
    }
  }
  const std::span<const uint8_t> fresh = payload.subspan(old_bytes);
  if (fresh.empty() && !(fin && !state.fin_received && seq + length == state.next_seq)) {
    counters_.add(Counter::tcp_identical_retransmissions);
    return kForward;
  }
  // What this packet brings is not forwarded if the consumer ends the flow on it (or on held
  // bytes it makes contiguous): the receiver then still waits at this sequence number.
  const uint32_t unsent_from = state.next_seq;
  if (!fresh.empty()) {
    const StreamVerdict verdict = deliver(flow, direction, fresh, now_ns);
    if (verdict == StreamVerdict::kDiscard) return discard(state, unsent_from);
    if (verdict != StreamVerdict::kContinue)
      return end_by_consumer(flow, verdict, now_ns, unsent_from);
  }
  if (fin && !state.fin_received && seq + length == state.next_seq)
    deliver_fin(flow, direction, now_ns);
  return drain_held(flow, direction, now_ns, unsent_from);
}

TcpTracker::Check TcpTracker::check_delivered(const TcpDirectionState& state, uint32_t seq,
                                              std::span<const uint8_t> bytes) const {
  const auto length = static_cast<uint32_t>(bytes.size());
  // Bytes the receiver has acknowledged need no check: it discards any copy of them.
  uint32_t from = 0;
  if (state.acked_valid) {
    from = static_cast<uint32_t>(std::clamp<int64_t>(seq_diff(state.acked, seq), 0, length));
  }
  // Kept bytes are compared as they are: [kept_from, kept_to) of the retransmission.
  uint32_t kept_from = length;
  uint32_t kept_to = length;
  if (state.retained_head != kNoSlot) {
    const Slot& tail = slots_[state.retained_tail];
    const auto clamp = [&](uint32_t at) {
      return static_cast<uint32_t>(std::clamp<int64_t>(seq_diff(at, seq), from, length));
    };
    kept_from = clamp(slots_[state.retained_head].seq);
    kept_to = clamp(tail.seq + tail.length);
    for (uint32_t i = state.retained_head; i != kNoSlot; i = slots_[i].next) {
      const Slot& kept = slots_[i];
      const uint32_t begin = std::max(clamp(kept.seq), kept_from);
      const uint32_t end = std::min(clamp(kept.seq + kept.length), kept_to);
      if (end > begin && std::memcmp(bytes.data() + begin,
                                     slot_bytes(i) + static_cast<uint32_t>(seq + begin - kept.seq),
                                     end - begin) != 0) {
        return Check::kDiffers;
      }
    }
    if (kept_from == kept_to) kept_from = kept_to = length;
  }
  // What the kept bytes do not cover, digests must: before them and after them.
  const uint32_t before_end = std::min(kept_from, length);
  const std::optional<uint32_t> before = digest_coverage(state, seq, bytes, from, before_end);
  const std::optional<uint32_t> after = digest_coverage(state, seq, bytes, kept_to, length);
  if (!before || !after) return Check::kDiffers;
  const bool covered =
      *before == before_end - std::min(from, before_end) && *after == length - kept_to;
  return covered ? Check::kIdentical : Check::kUnverifiable;
}

std::optional<uint32_t> TcpTracker::digest_coverage(const TcpDirectionState& state, uint32_t seq,
                                                    std::span<const uint8_t> bytes, uint32_t x,
                                                    uint32_t y) const {
  if (x >= y) return 0;
  const auto length = static_cast<uint32_t>(bytes.size());
  uint32_t covered = 0;
  for (std::size_t i = 0; i < state.history_count; ++i) {
    const SegmentDigest& digest = state.history[i];
    const int32_t offset = seq_diff(digest.seq, seq);
    if (offset < 0 || static_cast<uint32_t>(offset) + digest.length > length) continue;
    const uint32_t begin = std::max<uint32_t>(static_cast<uint32_t>(offset), x);
    const uint32_t end = std::min<uint32_t>(static_cast<uint32_t>(offset) + digest.length, y);
    if (end <= begin) continue;
    if (XXH3_64bits(bytes.data() + offset, digest.length) != digest.hash) return std::nullopt;
    covered += end - begin;  // deliveries never overlap: no double counting
  }
  return covered;
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
  if (direction == Direction::kToServer) retain(state, state.next_seq, bytes);
  state.next_seq += digest.length;
  counters_.add(Counter::tcp_payload_bytes_delivered, bytes.size());
  return consumer_.on_data(flow_id(flow), direction, bytes, now_ns);
}

void TcpTracker::deliver_fin(Flow& flow, Direction direction, uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  state.fin_first = !flow.tcp.of(other(direction)).fin_received;
  state.fin_received = true;
  state.next_seq += 1;  // the FIN occupies one sequence number
  consumer_.on_end(flow_id(flow), direction);
  if (flow.state != FlowState::kClosing) table_.set_state(flow, FlowState::kClosing, now_ns);
}

TcpResult TcpTracker::hold(Flow& flow, Direction direction, uint32_t seq,
                           std::span<const uint8_t> bytes, bool fin, uint64_t now_ns) {
  TcpDirectionState& state = flow.tcp.of(direction);
  const auto length = static_cast<uint32_t>(bytes.size());
  const uint32_t end = seq + length;
  const auto overflow = [this] {
    counters_.add(Counter::drop_tcp_out_of_order_overflow);
    return TcpResult{TcpVerdict::kDrop, Counter::drop_tcp_out_of_order_overflow};
  };
  const auto ahead = static_cast<uint64_t>(seq_diff(seq, state.next_seq));
  if (ahead + length > config_.reassembly_bytes) return overflow();
  if (fin && state.fin_held && state.fin_held_seq != end) {
    return kill(flow, Counter::drop_tcp_conflicting_retransmission, now_ns);
  }
  if (fin) {
    // A FIN before bytes already held: they would be Sluice's alone (see on_data).
    for (uint32_t i = state.held_head; i != kNoSlot; i = slots_[i].next) {
      if (seq_diff(slots_[i].seq + slots_[i].length, end) > 0)
        return drop(Counter::drop_tcp_beyond_fin);
    }
  }

  // Pass 1: bytes already held must match; count the pieces the uncovered gaps need.
  uint32_t cursor = seq;  // first byte not yet covered by a held piece
  uint32_t pieces = 0;
  const auto count_gap = [&](uint32_t gap_end) {
    const auto gap = static_cast<uint32_t>(seq_diff(gap_end, cursor));
    pieces += (gap + kSlotBytes - 1) / kSlotBytes;
  };
  for (uint32_t i = state.held_head; i != kNoSlot && seq_diff(slots_[i].seq, end) < 0;
       i = slots_[i].next) {
    const Slot& held = slots_[i];
    const uint32_t held_end = held.seq + held.length;
    if (seq_diff(held_end, cursor) <= 0) continue;
    const uint32_t overlap_begin = seq_diff(held.seq, cursor) > 0 ? held.seq : cursor;
    const uint32_t overlap_end = seq_diff(held_end, end) < 0 ? held_end : end;
    if (std::memcmp(bytes.data() + (overlap_begin - seq),
                    slot_bytes(i) + (overlap_begin - held.seq), overlap_end - overlap_begin) != 0) {
      return kill(flow, Counter::drop_tcp_conflicting_retransmission, now_ns);
    }
    if (seq_diff(held.seq, cursor) > 0) count_gap(held.seq);
    cursor = overlap_end;
  }
  if (seq_diff(end, cursor) > 0) count_gap(end);
  if (pieces == 0 && (!fin || state.fin_held)) {
    counters_.add(Counter::tcp_identical_retransmissions);
    return kForward;
  }
  if (state.held_count + pieces > config_.reassembly_segments ||
      slots_.size() - slots_in_use_ < pieces) {
    return overflow();
  }

  // Pass 2: copy the gaps into fresh pieces, keeping the list sorted and disjoint.
  uint32_t* link = &state.held_head;
  cursor = seq;
  const auto insert_gap = [&](uint32_t gap_end) {
    while (seq_diff(gap_end, cursor) > 0) {
      const uint32_t piece = std::min<uint32_t>(kSlotBytes, gap_end - cursor);
      const uint32_t index = allocate_slot();
      slots_[index] = Slot{cursor, piece, *link};
      std::memcpy(slot_bytes(index), bytes.data() + (cursor - seq), piece);
      *link = index;
      link = &slots_[index].next;
      ++state.held_count;
      cursor += piece;
    }
  };
  while (*link != kNoSlot && seq_diff(slots_[*link].seq, end) < 0) {
    const Slot& held = slots_[*link];
    const uint32_t held_end = held.seq + held.length;
    if (seq_diff(held_end, cursor) > 0) {
      if (seq_diff(held.seq, cursor) > 0) insert_gap(held.seq);
      cursor = seq_diff(held_end, end) < 0 ? held_end : end;
    }
    link = &slots_[*link].next;
  }
  if (seq_diff(end, cursor) > 0) insert_gap(end);
  if (fin) {
    state.fin_held = true;
    state.fin_held_seq = end;
  }
  counters_.add(Counter::tcp_out_of_order_held);
  return kForward;
}

TcpResult TcpTracker::drain_held(Flow& flow, Direction direction, uint64_t now_ns,
                                 uint32_t unsent_from) {
  TcpDirectionState& state = flow.tcp.of(direction);
  while (state.held_head != kNoSlot) {
    const uint32_t index = state.held_head;
    const Slot held = slots_[index];
    const int32_t ahead = seq_diff(held.seq, state.next_seq);
    if (ahead > 0) break;  // still a hole before it
    const std::span<const uint8_t> bytes{slot_bytes(index), held.length};
    const uint32_t old_bytes =
        std::min<uint32_t>(held.length, static_cast<uint32_t>(-int64_t{ahead}));
    if (old_bytes > 0 &&
        check_delivered(state, held.seq, bytes.first(old_bytes)) != Check::kIdentical) {
      return kill(flow, Counter::drop_tcp_conflicting_retransmission, now_ns);
    }
    const StreamVerdict verdict = old_bytes < held.length
                                      ? deliver(flow, direction, bytes.subspan(old_bytes), now_ns)
                                      : StreamVerdict::kContinue;
    state.held_head = held.next;
    --state.held_count;
    free_slot(index);
    if (verdict == StreamVerdict::kDiscard) return discard(state, unsent_from);
    if (verdict != StreamVerdict::kContinue)
      return end_by_consumer(flow, verdict, now_ns, unsent_from);
  }
  if (state.fin_held && !state.fin_received && state.fin_held_seq == state.next_seq) {
    state.fin_held = false;
    deliver_fin(flow, direction, now_ns);
  }
  return kForward;
}

TcpResult TcpTracker::kill(Flow& flow, Counter reason, uint64_t now_ns) {
  counters_.add(reason);
  counters_.add(Counter::tcp_flows_killed);
  for (TcpDirectionState& state : flow.tcp.direction) {
    free_held(state);
    free_retained(state);
  }
  table_.set_state(flow, FlowState::kKilled, now_ns);
  return {TcpVerdict::kKill, reason};
}

TcpResult TcpTracker::end_by_consumer(Flow& flow, StreamVerdict verdict, uint64_t now_ns,
                                      uint32_t unsent_from) {
  TcpResult result = kill(flow, Counter::drop_request_refused, now_ns);
  if (verdict == StreamVerdict::kDeny) result.verdict = TcpVerdict::kDeny;
  result.resume_known = true;
  result.resume_seq = unsent_from;
  return result;
}

void TcpTracker::release(Flow& flow) {
  for (TcpDirectionState& state : flow.tcp.direction) {
    free_held(state);
    free_retained(state);
  }
  consumer_.on_close(flow_id(flow));
}

void TcpTracker::reset_tracking(Flow& flow, uint64_t now_ns) {
  release(flow);
  flow.tcp = TcpFlowState{};
  open(flow);
  table_.set_state(flow, FlowState::kHalfOpen, now_ns);
}

void TcpTracker::free_held(TcpDirectionState& state) {
  while (state.held_head != kNoSlot) {
    const uint32_t index = state.held_head;
    state.held_head = slots_[index].next;
    free_slot(index);
  }
  state.held_count = 0;
  state.fin_held = false;
}

// Keeps a delivered piece until the receiver acknowledges it. The kept pieces stay contiguous:
// when one cannot be kept (the per-direction bound or the pool is full), nothing more is kept
// until the acknowledgements have emptied the list, and digests cover the gap meanwhile.
void TcpTracker::retain(TcpDirectionState& state, uint32_t seq, std::span<const uint8_t> bytes) {
  const auto length = static_cast<uint32_t>(bytes.size());
  const uint32_t pieces = (length + kSlotBytes - 1) / kSlotBytes;
  const bool contiguous =
      state.retained_head == kNoSlot ||
      slots_[state.retained_tail].seq + slots_[state.retained_tail].length == seq;
  if (!contiguous || state.retained_bytes + length > config_.reassembly_bytes ||
      slots_.size() - slots_in_use_ < pieces) {
    counters_.add(Counter::tcp_bytes_not_retained, length);
    return;
  }
  for (uint32_t offset = 0; offset < length; offset += kSlotBytes) {
    const uint32_t piece = std::min(kSlotBytes, length - offset);
    const uint32_t index = allocate_slot();
    slots_[index] = Slot{seq + offset, piece, kNoSlot};
    std::memcpy(slot_bytes(index), bytes.data() + offset, piece);
    if (state.retained_head == kNoSlot)
      state.retained_head = index;
    else
      slots_[state.retained_tail].next = index;
    state.retained_tail = index;
  }
  state.retained_bytes += length;
}

void TcpTracker::release_acknowledged(TcpDirectionState& state) {
  while (state.retained_head != kNoSlot) {
    const uint32_t index = state.retained_head;
    const Slot& kept = slots_[index];
    if (seq_diff(kept.seq + kept.length, state.acked) > 0) return;
    state.retained_head = kept.next;
    state.retained_bytes -= std::min(state.retained_bytes, kept.length);
    free_slot(index);
  }
  state.retained_tail = kNoSlot;
  state.retained_bytes = 0;
}

void TcpTracker::free_retained(TcpDirectionState& state) {
  while (state.retained_head != kNoSlot) {
    const uint32_t index = state.retained_head;
    state.retained_head = slots_[index].next;
    free_slot(index);
  }
  state.retained_tail = kNoSlot;
  state.retained_bytes = 0;
}

uint32_t TcpTracker::allocate_slot() {
  const uint32_t index = free_slots_;
  free_slots_ = slots_[index].next;
  ++slots_in_use_;
  return index;
}

void TcpTracker::free_slot(uint32_t index) {
  slots_[index].next = free_slots_;
  free_slots_ = index;
  --slots_in_use_;
}

}  // namespace sluice
