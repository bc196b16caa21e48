// Per-flow TCP tracking state, embedded in each flow table entry.
#pragma once

#include <array>
#include <cstdint>

namespace sluice {

enum class Direction : uint8_t { kToServer = 0, kToClient = 1 };

// What was delivered: one entry per delivered piece, so a retransmission of those bytes can be
// compared without keeping the bytes themselves (16 bytes per piece instead of up to 1460). The
// client's bytes are also kept whole until acknowledged (see TcpTracker); digests cover what
// those do not.
struct SegmentDigest {
  uint32_t seq = 0;
  uint32_t length = 0;
  uint64_t hash = 0;  // XXH3-64 of the bytes
};

// 16 pieces cover a typical HTTP request (≈ 23 KB at a 1448-byte MSS) while unacknowledged;
// older bytes that the receiver has acknowledged no longer need checking (it discards them).
inline constexpr std::size_t kDigestHistory = 16;
inline constexpr uint32_t kNoSlot = UINT32_MAX;

struct TcpDirectionState {
  bool initialized = false;  // its SYN has been seen
  bool fin_received = false;
  bool acked_valid = false;
  bool fin_held = false;  // a FIN arrived ahead of a hole, at fin_held_seq
  uint32_t next_seq = 0;  // the next byte to deliver
  uint32_t acked = 0;     // highest acknowledgement the receiver has sent for these bytes
  uint32_t fin_held_seq = 0;
  uint32_t held_head = kNoSlot;  // out-of-order pieces held, sorted by seq, disjoint
  uint16_t held_count = 0;
  bool rst_received = false;  // an in-sequence RST from this direction's sender ended the flow
  // The consumer answered kDiscard: every payload byte at or after discard_from is dropped (the
  // receiver waits there and must never be sent what lies beyond). 8 bytes with the padding.
  bool discarding = false;
  uint32_t discard_from = 0;
  // Delivered but not yet acknowledged bytes kept for comparison with retransmissions (client
  // to server only): contiguous pieces in sequence order, released as acknowledgements arrive.
  uint32_t retained_head = kNoSlot;
  uint32_t retained_tail = kNoSlot;
  uint32_t retained_bytes = 0;
  uint8_t history_next = 0;
  uint8_t history_count = 0;
  bool fin_first = false;  // this direction's FIN came before the other's (its sender closed first)
  // PAWS (RFC 7323 §5), kept as the receiver's TS.Recent may be: see TcpTracker::paws_rejects.
  // kOffered: this direction's SYN carried a timestamp (held in ts_floor/ts_max) and the SYN-ACK
  // is not there yet; kOn: both SYNs carried one, so the receiver checks every segment.
  enum class Timestamps : uint8_t { kOff, kOffered, kOn };
  Timestamps timestamps = Timestamps::kOff;
  // The receiver's TS.Recent lies in [ts_floor, ts_max] (forward, modulo 2^32, span < 2^31):
  // the SYN's TSval, and the highest TSval forwarded since on a segment it may have taken it from.
  uint32_t ts_floor = 0;
  uint32_t ts_max = 0;
  std::array<SegmentDigest, kDigestHistory> history{};
};

// The per-direction budget: 56 bytes of sequence state and 256 of digests. Issue 12's state
// took 16 of the 56: discard_from and its padding (rst_received, discarding and fin_first fill
// what was padding before), then PAWS's 9 (timestamps fills padding, the two TSvals take 8).
static_assert(sizeof(TcpDirectionState) == 312, "a new per-direction field states its bytes");

struct TcpFlowState {
  std::array<TcpDirectionState, 2> direction{};  // indexed by Direction
  TcpDirectionState& of(Direction d) { return direction[static_cast<std::size_t>(d)]; }
  const TcpDirectionState& of(Direction d) const { return direction[static_cast<std::size_t>(d)]; }
};

}  // namespace sluice
