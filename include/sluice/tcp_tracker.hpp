// TCP tracking for flows on inspected ports: who is the client (the SYN sender), the next
// expected sequence number of each direction, and in-order delivery of payload to the stream
// consumer. Segments that arrive ahead of a hole are copied into a bounded per-worker
// reassembly pool of 2 KiB slots and forwarded (they cannot complete anything at the receiver
// before the hole is filled, and the segment that fills it passes the consumer first).
// Retransmissions are compared with what was delivered: identical ones pass, differing ones kill
// the flow.
//
// Sluice's view of each stream must stay the host's (docs/normalisation.md, "TCP"): a segment
// that could change the state of the connection differently at Sluice and at a Linux host is
// dropped, never forwarded — a SYN the host would ignore, a RST not exactly at the next expected
// sequence number (RFC 5961 §3.2), a FIN out of sequence or bytes beyond a held FIN. So is a
// segment the host would discard: one with a TCP-MD5/AO option, one PAWS rejects (RFC 7323 §5),
// one without ACK, SYN+FIN/RST; and client bytes before the server's SYN-ACK, so a SYN the host
// ignored never opens a stream Sluice reads. A dropped segment cannot desynchronise anything:
// the host never sees it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "sluice/classify.hpp"
#include "sluice/counters.hpp"
#include "sluice/flow_table.hpp"
#include "sluice/stream_consumer.hpp"

namespace sluice {

struct TcpConfig {
  // How far ahead of the next expected byte a held segment may reach, and how many delivered
  // but unacknowledged client bytes are kept, per direction. The default covers a 256 KiB
  // window, so one lost segment does not turn every later one in flight into a drop, and a
  // retransmission from anywhere in the window can be compared byte for byte.
  uint32_t reassembly_bytes = 262144;
  uint32_t reassembly_segments = 256;  // pieces (≤ 2 KiB each) held per direction
  uint32_t reassembly_slots = 8192;    // pieces held per worker: 8192 × 2 KiB = 16 MiB
};

enum class TcpVerdict : uint8_t {
  kForward,
  kDrop,  // drop this packet, keep the flow
  kKill,  // drop this packet, reset both sides, drop the flow's later packets
  kDeny,  // drop this packet, answer the client with the consumer's denial, reset the server
  // Drop this packet (a FIN from the client of a flow Sluice ended) and acknowledge it toward
  // its sender, <SEQ=SEG.ACK><ACK=SEG.SEQ+SEG.LEN><CTL=ACK>, so that its socket, in LAST-ACK,
  // closes at once instead of retransmitting into a dead flow.
  kAnswer,
};

struct TcpResult {
  TcpVerdict verdict = TcpVerdict::kForward;
  Counter reason = Counter::drop_tcp_unexpected;  // why, when not forwarded
  // When the consumer ended the flow (kDeny, or kKill from the consumer): the first sequence
  // number of this packet's direction that its receiver was not sent — the start of the bytes
  // the dropped packet (or the hole it filled) carried. The receiver waits exactly there, so
  // the RST to it (and an answer in that direction) must carry it: RFC 5961 §3.2 makes a
  // receiver ignore a RST at any other sequence number.
  bool resume_known = false;
  uint32_t resume_seq = 0;
};

class TcpTracker {
 public:
  TcpTracker(const TcpConfig& config, FlowTable& table, StreamConsumer& consumer,
             Counters& counters);

  // True when this packet may start tracking a new flow (a SYN without ACK).
  static bool opens_flow(const PacketInfo& info);

  // A flow was just inserted for its SYN: tells the consumer.
  void open(Flow& flow);

  // A packet of a flow already in the table, or of one just inserted for its SYN.
  TcpResult on_packet(Flow& flow, const PacketInfo& info, std::span<const uint8_t> payload,
                      bool from_client, uint64_t now_ns);

  // Called before the flow leaves the table: gives back its reassembly slots, tells the
  // consumer.
  void release(Flow& flow);

  uint32_t slots_in_use() const { return slots_in_use_; }

  static constexpr uint32_t kSlotBytes = 2048;

 private:
  // One held piece of out-of-order bytes; the direction's pieces form a list sorted by seq.
  struct Slot {
    uint32_t seq = 0;
    uint32_t length = 0;
    uint32_t next = kNoSlot;
  };

  TcpResult on_syn(Flow& flow, const PacketInfo& info, std::span<const uint8_t> payload,
                   bool from_client, uint64_t now_ns);
  // A packet of a flow Sluice ended (kKilled) that does not open a new connection.
  TcpResult on_killed(const PacketInfo& info, std::span<const uint8_t> payload, bool from_client);
  TcpResult on_rst(Flow& flow, Direction direction, const PacketInfo& info, uint64_t now_ns);
  // Whether the host would take a client SYN with this ISN as a new connection on the tuple.
  bool host_accepts_new_syn(const Flow& flow, uint32_t isn) const;
  // The consumer answered kDiscard for bytes from `from` on: drops the packet.
  TcpResult discard(TcpDirectionState& state, uint32_t from);
  TcpResult drop(Counter reason);
  TcpResult on_data(Flow& flow, Direction direction, uint32_t seq, std::span<const uint8_t> payload,
                    bool fin, uint64_t now_ns);
  // Compares bytes [seq, seq + bytes.size()) that lie before next_seq with what was delivered.
  enum class Check : uint8_t { kIdentical, kDiffers, kUnverifiable };
  Check check_delivered(const TcpDirectionState& state, uint32_t seq,
                        std::span<const uint8_t> bytes) const;
  StreamVerdict deliver(Flow& flow, Direction direction, std::span<const uint8_t> bytes,
                        uint64_t now_ns);
  void deliver_fin(Flow& flow, Direction direction, uint64_t now_ns);
  TcpResult hold(Flow& flow, Direction direction, uint32_t seq, std::span<const uint8_t> bytes,
                 bool fin, uint64_t now_ns);
  TcpResult drain_held(Flow& flow, Direction direction, uint64_t now_ns, uint32_t unsent_from);
  TcpResult kill(Flow& flow, Counter reason, uint64_t now_ns);
  // The consumer ended the flow (kKill or kDeny).
  TcpResult end_by_consumer(Flow& flow, StreamVerdict verdict, uint64_t now_ns,
                            uint32_t unsent_from);
  void reset_tracking(Flow& flow, uint64_t now_ns);
  uint32_t flow_id(const Flow& flow) const { return table_.index_of(flow); }

  void free_held(TcpDirectionState& state);
  void retain(TcpDirectionState& state, uint32_t seq, std::span<const uint8_t> bytes);
  void release_acknowledged(TcpDirectionState& state);
  void free_retained(TcpDirectionState& state);
  uint32_t allocate_slot();
  void free_slot(uint32_t index);
  // Compares bytes[x, y) (offsets into a retransmission starting at seq) with the digests of
  // delivered pieces that lie wholly inside the retransmission; returns the bytes of [x, y)
  // covered, or nullopt when a digest differs.
  std::optional<uint32_t> digest_coverage(const TcpDirectionState& state, uint32_t seq,
                                          std::span<const uint8_t> bytes, uint32_t x,
                                          uint32_t y) const;
  uint8_t* slot_bytes(uint32_t index) {
    return slot_bytes_.data() + std::size_t{index} * kSlotBytes;
  }
  const uint8_t* slot_bytes(uint32_t index) const {
    return slot_bytes_.data() + std::size_t{index} * kSlotBytes;
  }

  TcpConfig config_;
  FlowTable& table_;
  StreamConsumer& consumer_;
  Counters& counters_;
  std::vector<Slot> slots_;
  std::vector<uint8_t> slot_bytes_;
  uint32_t free_slots_ = kNoSlot;
  uint32_t slots_in_use_ = 0;
};

}  // namespace sluice
