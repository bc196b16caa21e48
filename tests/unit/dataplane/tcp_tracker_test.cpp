#include "sluice/tcp_tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace sluice {
namespace {

// Records what the tracker hands to the L7 stage, per flow and direction.
class RecordingConsumer final : public StreamConsumer {
 public:
  void on_open(uint32_t, const FlowEndpoints&) override { ++opened; }
  StreamVerdict on_data(uint32_t, Direction d, std::span<const uint8_t> bytes, uint64_t) override {
    stream[static_cast<int>(d)].append(bytes.begin(), bytes.end());
    ++pieces;
    if (!discard_marker.empty() &&
        std::string(bytes.begin(), bytes.end()).find(discard_marker) != std::string::npos) {
      return StreamVerdict::kDiscard;
    }
    if (kill_marker.empty() || stream[static_cast<int>(d)].find(kill_marker) == std::string::npos) {
      return StreamVerdict::kContinue;
    }
    return deny ? StreamVerdict::kDeny : StreamVerdict::kKill;
  }
  void on_end(uint32_t, Direction d) override { ended[static_cast<int>(d)] = true; }
  void on_close(uint32_t) override { ++closed; }

  std::string stream[2];
  bool ended[2] = {false, false};
  int opened = 0;
  int closed = 0;
  int pieces = 0;
  std::string kill_marker;
  std::string discard_marker;  // a piece holding it is answered kDiscard
  bool deny = false;
};

constexpr uint32_t kClientIsn = 1000;
constexpr uint32_t kServerIsn = 900000;

class TcpTrackerTest : public ::testing::Test {
 protected:
  explicit TcpTrackerTest(TcpConfig config = {16384, 8, 12})
      : table_(16, 1, FlowTimeouts{}), tracker_(config, table_, consumer_, counters_) {
    FlowKey key;
    key.port_low = 1;
    flow_ = table_.insert(key, table_.hash(key), 0);
    tracker_.open(*flow_);
  }

  TcpResult send(bool from_client, uint8_t flags, uint32_t seq, uint32_t ack,
                 const std::string& data) {
    PacketInfo info;
    info.l4 = L4::kTcp;
    info.tcp_flags = flags;
    info.seq = seq;
    info.ack = ack;
    const std::optional<uint32_t>& tsval = from_client ? client_tsval_ : server_tsval_;
    info.tcp_timestamp = tsval.has_value();
    info.tcp_tsval = tsval.value_or(0);
    info.tcp_signature = signature_;
    const std::span<const uint8_t> payload{reinterpret_cast<const uint8_t*>(data.data()),
                                           data.size()};
    return tracker_.on_packet(*flow_, info, payload, from_client, ++now_);
  }
  // Client bytes at offset `offset` of its stream (offset 0 is the first byte after the SYN).
  TcpResult client_data(uint32_t offset, const std::string& data, uint8_t extra_flags = 0) {
    return send(true, tcp_flag::kAck | tcp_flag::kPsh | extra_flags, client_isn_ + 1 + offset,
                server_isn_ + 1, data);
  }
  TcpResult server_data(uint32_t offset, const std::string& data, uint8_t extra_flags = 0) {
    return send(false, tcp_flag::kAck | extra_flags, server_isn_ + 1 + offset, client_isn_ + 1,
                data);
  }
  void handshake() {
    ASSERT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
    ASSERT_EQ(
        send(false, tcp_flag::kSyn | tcp_flag::kAck, server_isn_, client_isn_ + 1, "").verdict,
        TcpVerdict::kForward);
    ASSERT_EQ(send(true, tcp_flag::kAck, client_isn_ + 1, server_isn_ + 1, "").verdict,
              TcpVerdict::kForward);
  }
  // Sends `count` pieces of `size` bytes ('a', 'b', … by piece) from the client or the server,
  // in order; returns the stream they make.
  std::string send_pieces(bool from_client, int count, std::size_t size) {
    std::string stream;
    for (int i = 0; i < count; ++i) {
      const std::string piece(size, static_cast<char>('a' + i % 26));
      const auto offset = static_cast<uint32_t>(stream.size());
      from_client ? client_data(offset, piece) : server_data(offset, piece);
      stream += piece;
    }
    return stream;
  }
  // The server acknowledges client bytes up to `offset`.
  void server_acks(uint32_t offset) {
    send(false, tcp_flag::kAck, server_isn_ + 1, client_isn_ + 1 + offset, "");
  }
  uint64_t count(Counter c) const { return counters_.get(c); }

  uint32_t client_isn_ = kClientIsn;
  uint32_t server_isn_ = kServerIsn;
  // The timestamp option each side's segments carry (none when empty), and whether they carry a
  // TCP-MD5/AO signature option.
  std::optional<uint32_t> client_tsval_;
  std::optional<uint32_t> server_tsval_;
  bool signature_ = false;
  uint64_t now_ = 0;
  FlowTable table_;
  RecordingConsumer consumer_;
  Counters counters_;
  TcpTracker tracker_;
  Flow* flow_ = nullptr;
};

TEST_F(TcpTrackerTest, DeliversPayloadInOrderInBothDirections) {
  handshake();
  EXPECT_EQ(flow_->state, FlowState::kEstablished);
  EXPECT_EQ(client_data(0, "POST / HTTP/1.1\r\n").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(17, "\r\n").verdict, TcpVerdict::kForward);
  EXPECT_EQ(server_data(0, "HTTP/1.1 200 OK\r\n").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "POST / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(consumer_.stream[1], "HTTP/1.1 200 OK\r\n");
  EXPECT_EQ(count(Counter::tcp_payload_bytes_delivered), 36u);
}

TEST_F(TcpTrackerTest, HoldsOutOfOrderSegmentsAndDeliversThemWhenTheHoleFills) {
  handshake();
  EXPECT_EQ(client_data(10, "klmno").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(5, "fghij").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "");
  EXPECT_EQ(tracker_.slots_in_use(), 2u);
  EXPECT_EQ(client_data(0, "abcde").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abcdefghijklmno");
  EXPECT_EQ(count(Counter::tcp_out_of_order_held), 2u);
  EXPECT_EQ(tracker_.slots_in_use(), 3u);  // now kept as delivered, until acknowledged
  server_acks(15);
  EXPECT_EQ(tracker_.slots_in_use(), 0u);
}

TEST_F(TcpTrackerTest, DropsOutOfOrderSegmentsBeyondTheReassemblyWindow) {
  handshake();
  const TcpResult result = client_data(16384, "x");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_tcp_out_of_order_overflow);
  EXPECT_EQ(client_data(16383, "x").verdict, TcpVerdict::kForward);  // last byte of the window fits
}

TEST_F(TcpTrackerTest, DropsOutOfOrderSegmentsBeyondTheSegmentBound) {
  handshake();
  for (uint32_t i = 0; i < 8; ++i)
    EXPECT_EQ(client_data(10 + 2 * i, "y").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(100, "z").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(count(Counter::drop_tcp_out_of_order_overflow), 1u);
}

TEST_F(TcpTrackerTest, DropsOutOfOrderSegmentsWhenThePoolIsExhausted) {
  // The fixture's pool has 12 slots: this flow takes 10, two more flows one each.
  handshake();
  for (uint32_t i = 0; i < 8; ++i)
    ASSERT_EQ(client_data(10 + 2 * i, "a").verdict, TcpVerdict::kForward);
  for (uint32_t i = 0; i < 2; ++i)
    ASSERT_EQ(server_data(10 + 2 * i, "a").verdict, TcpVerdict::kForward);
  for (uint16_t port = 2; port < 5; ++port) {
    FlowKey key;
    key.port_low = port;
    Flow* other = table_.insert(key, table_.hash(key), 0);
    tracker_.open(*other);
    PacketInfo info;
    info.l4 = L4::kTcp;
    info.tcp_flags = tcp_flag::kSyn;
    info.seq = 0;
    tracker_.on_packet(*other, info, {}, true, 1);
    info.tcp_flags = tcp_flag::kSyn | tcp_flag::kAck;  // the client's bytes wait for it
    info.seq = 500;
    info.ack = 1;
    tracker_.on_packet(*other, info, {}, false, 1);
    info.tcp_flags = tcp_flag::kAck;
    info.seq = 10;
    info.ack = 501;
    const uint8_t byte = 'q';
    const TcpResult result = tracker_.on_packet(*other, info, {&byte, 1}, true, 2);
    EXPECT_EQ(result.verdict, port < 4 ? TcpVerdict::kForward : TcpVerdict::kDrop)
        << "port " << port;
  }
  EXPECT_EQ(tracker_.slots_in_use(), 12u);
  EXPECT_EQ(count(Counter::drop_tcp_out_of_order_overflow), 1u);
}

TEST_F(TcpTrackerTest, HoldsSegmentsLargerThanASlotAsSeveralPieces) {
  handshake();
  std::string big(5000, 'b');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  EXPECT_EQ(client_data(3, big).verdict, TcpVerdict::kForward);
  EXPECT_EQ(tracker_.slots_in_use(), 3u);                        // 2048 + 2048 + 904
  EXPECT_EQ(client_data(3, big).verdict, TcpVerdict::kForward);  // identical: nothing new held
  EXPECT_EQ(tracker_.slots_in_use(), 3u);
  EXPECT_EQ(count(Counter::tcp_identical_retransmissions), 1u);
  EXPECT_EQ(client_data(0, "xyz").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "xyz" + big);
  EXPECT_EQ(tracker_.slots_in_use(), 4u);  // kept: "xyz" and the three pieces
  server_acks(5003);
  EXPECT_EQ(tracker_.slots_in_use(), 0u);
}

TEST_F(TcpTrackerTest, HoldsOnlyTheUncoveredPartsOfOverlappingSegments) {
  handshake();
  EXPECT_EQ(client_data(10, "klm").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(20, "uvw").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(8, "ijklmnopqrstuvwxy").verdict,
            TcpVerdict::kForward);         // fills around them
  EXPECT_EQ(tracker_.slots_in_use(), 5u);  // klm, uvw + ij, nopqrst, xy
  EXPECT_EQ(client_data(0, "abcdefgh").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abcdefghijklmnopqrstuvwxy");
}

TEST_F(TcpTrackerTest, ForwardsIdenticalRetransmissions) {
  handshake();
  client_data(0, "hello ");
  client_data(6, "world");
  EXPECT_EQ(client_data(0, "hello ").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(0, "hello world").verdict, TcpVerdict::kForward);  // coalesced resend
  EXPECT_EQ(client_data(6, "world!!").verdict, TcpVerdict::kForward);      // overlap + new bytes
  EXPECT_EQ(consumer_.stream[0], "hello world!!");
  EXPECT_EQ(count(Counter::tcp_identical_retransmissions), 2u);
}

TEST_F(TcpTrackerTest, KillsTheFlowOnARetransmissionWithDifferentBytes) {
  handshake();
  client_data(0, "benign request");
  const TcpResult result = client_data(0, "EVIL!! request");
  EXPECT_EQ(result.verdict, TcpVerdict::kKill);
  EXPECT_EQ(result.reason, Counter::drop_tcp_conflicting_retransmission);
  EXPECT_EQ(flow_->state, FlowState::kKilled);
  EXPECT_EQ(count(Counter::tcp_flows_killed), 1u);
  // Everything after that is dropped, in both directions.
  EXPECT_EQ(client_data(14, "more").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(server_data(0, "HTTP/1.1 200 OK").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(consumer_.stream[0], "benign request");
}

TEST_F(TcpTrackerTest, KillsTheFlowWhenAPartialOverlapDiffers) {
  handshake();
  client_data(0, "abcdef");
  EXPECT_EQ(client_data(3, "dXf and more").verdict, TcpVerdict::kKill);
}

TEST_F(TcpTrackerTest, KillsTheFlowWhenTwoHeldSegmentsDisagree) {
  handshake();
  EXPECT_EQ(client_data(10, "abcdef").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(12, "cdef").verdict, TcpVerdict::kForward);  // same bytes
  EXPECT_EQ(client_data(12, "cXef").verdict, TcpVerdict::kKill);
}

TEST_F(TcpTrackerTest, KillsTheFlowWhenAHeldSegmentDisagreesWithTheHoleFiller) {
  handshake();
  EXPECT_EQ(client_data(4, "EFGH").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(0, "abcdefgh").verdict, TcpVerdict::kKill);
}

TEST_F(TcpTrackerTest, PassesRetransmissionsOfAcknowledgedBytesOlderThanTheHistory) {
  handshake();
  const std::string stream = send_pieces(true, 40, 10);
  server_acks(static_cast<uint32_t>(stream.size()));
  // The receiver already holds these bytes; it will discard whatever they are.
  EXPECT_EQ(client_data(0, stream.substr(0, 10)).verdict, TcpVerdict::kForward);
}

TEST_F(TcpTrackerTest, ComparesOldUnacknowledgedRetransmissionsWithTheKeptBytes) {
  handshake();
  const std::string stream = send_pieces(true, 40, 10);
  // Older than the 16 digests, but kept whole: compared byte for byte, whatever the cut.
  EXPECT_EQ(client_data(0, stream.substr(0, 10)).verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(5, stream.substr(5, 23)).verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(5, "aaaaabbbbbXbbbbcccccccc").verdict, TcpVerdict::kKill);
}

TEST_F(TcpTrackerTest, VerifiesAResegmentedRetransmissionAgainstTheKeptBytes) {
  handshake();
  const std::string a(1000, 'a'), b(1000, 'b'), c(1000, 'c');
  client_data(0, a);
  client_data(1000, b);
  client_data(2000, c);
  server_acks(1000);
  EXPECT_EQ(client_data(1000, b.substr(0, 500)).verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(1500, b.substr(500) + c.substr(0, 200)).verdict, TcpVerdict::kForward);
  EXPECT_EQ(count(Counter::tcp_identical_retransmissions), 2u);
}

TEST_F(TcpTrackerTest, KillsOnUnacknowledgedRetransmissionsItCannotVerify) {
  handshake();
  // 80 pieces of 500 bytes: the fixture's 12-slot pool keeps the first 12, the last 16 have
  // digests, pieces 12..63 have neither.
  const std::string stream = send_pieces(true, 80, 500);
  EXPECT_EQ(count(Counter::tcp_bytes_not_retained), 68u * 500u);
  EXPECT_EQ(client_data(0, stream.substr(0, 500)).verdict, TcpVerdict::kForward);  // kept
  EXPECT_EQ(client_data(79 * 500, stream.substr(79 * 500)).verdict,
            TcpVerdict::kForward);  // digest
  const TcpResult result = client_data(40 * 500, stream.substr(40 * 500, 500));
  EXPECT_EQ(result.verdict, TcpVerdict::kKill);
  EXPECT_EQ(result.reason, Counter::drop_tcp_unverifiable_retransmission);
}

TEST_F(TcpTrackerTest, PassesUnverifiableRetransmissionsFromTheServerCounted) {
  handshake();
  const std::string stream = send_pieces(false, 40, 10);
  EXPECT_EQ(server_data(0, stream.substr(0, 10)).verdict, TcpVerdict::kForward);
  EXPECT_EQ(count(Counter::tcp_unverified_retransmissions_passed), 1u);
  EXPECT_EQ(server_data(390, "XXXXXXXXXX").verdict,
            TcpVerdict::kKill);  // still compared when it can be
}

TEST_F(TcpTrackerTest, HandlesSequenceWrapAround) {
  client_isn_ = UINT32_MAX - 5;
  server_isn_ = UINT32_MAX;
  handshake();
  EXPECT_EQ(client_data(8, "ijkl").verdict, TcpVerdict::kForward);  // beyond the wrap, held
  EXPECT_EQ(client_data(0, "abcdefgh").verdict, TcpVerdict::kForward);
  EXPECT_EQ(server_data(0, "response").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abcdefghijkl");
  EXPECT_EQ(consumer_.stream[1], "response");
  EXPECT_EQ(client_data(0, "abcdefgh").verdict, TcpVerdict::kForward);
  EXPECT_EQ(client_data(0, "abcdXfgh").verdict, TcpVerdict::kKill);
}

// The client's delivered bytes are kept until acknowledged, so a retransmission cut anywhere
// inside a delivered piece is still compared.
TEST_F(TcpTrackerTest, ComparesARetransmissionCutInsideADeliveredPiece) {
  handshake();
  client_data(0, "abcdefgh");
  EXPECT_EQ(client_data(2, "cdef").verdict, TcpVerdict::kForward);
  const TcpResult result = client_data(2, "cdXf");
  EXPECT_EQ(result.verdict, TcpVerdict::kKill);
  EXPECT_EQ(result.reason, Counter::drop_tcp_conflicting_retransmission);
}

TEST_F(TcpTrackerTest, VerifiesARetransmissionFromTheAcknowledgementPoint) {
  handshake();
  client_data(0, "abcd");
  client_data(4, "efgh");
  server_acks(4);
  EXPECT_EQ(client_data(2, "cdefgh").verdict, TcpVerdict::kForward);  // "cd" acked, "efgh" checked
  EXPECT_EQ(client_data(2, "cdefXh").verdict, TcpVerdict::kKill);
}

TEST_F(TcpTrackerTest, FinEndsTheDirectionAndLaterDataIsDropped) {
  handshake();
  client_data(0, "bye", tcp_flag::kFin);
  EXPECT_TRUE(consumer_.ended[0]);
  EXPECT_EQ(flow_->state, FlowState::kClosing);
  EXPECT_EQ(client_data(3, "more").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(client_data(0, "bye", tcp_flag::kFin).verdict, TcpVerdict::kForward);  // FIN resent
}

TEST_F(TcpTrackerTest, FinHeldOutOfOrderIsDeliveredAfterTheHole) {
  handshake();
  client_data(3, "def", tcp_flag::kFin);
  EXPECT_FALSE(consumer_.ended[0]);
  client_data(0, "abc");
  EXPECT_EQ(consumer_.stream[0], "abcdef");
  EXPECT_TRUE(consumer_.ended[0]);
}

TEST_F(TcpTrackerTest, DropsServerDataBeforeTheSynAck) {
  ASSERT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
  const TcpResult result = server_data(0, "early");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_tcp_unexpected);
}

TEST_F(TcpTrackerTest, DropsASynAckFromTheClientSide) {
  ASSERT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
  EXPECT_EQ(send(true, tcp_flag::kSyn | tcp_flag::kAck, 5, client_isn_ + 1, "").verdict,
            TcpVerdict::kDrop);
}

TEST_F(TcpTrackerTest, ANewSynRestartsAKilledFlow) {
  handshake();
  client_data(0, "abc");
  ASSERT_EQ(client_data(0, "xyz").verdict, TcpVerdict::kKill);
  client_isn_ = 777;
  server_isn_ = 555;
  handshake();
  EXPECT_EQ(flow_->state, FlowState::kEstablished);
  EXPECT_EQ(consumer_.closed, 1);
  EXPECT_EQ(consumer_.opened, 2);
  EXPECT_EQ(client_data(0, "fresh").verdict, TcpVerdict::kForward);
}

TEST_F(TcpTrackerTest, ARetransmittedSynIsForwarded) {
  ASSERT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
  EXPECT_EQ(count(Counter::tcp_identical_retransmissions), 1u);
}

TEST_F(TcpTrackerTest, AConsumerVerdictKillsTheFlow) {
  consumer_.kill_marker = "FORBIDDEN";
  handshake();
  EXPECT_EQ(client_data(0, "fine, ").verdict, TcpVerdict::kForward);
  const TcpResult result = client_data(6, "FORBIDDEN");
  EXPECT_EQ(result.verdict, TcpVerdict::kKill);
  EXPECT_EQ(result.reason, Counter::drop_request_refused);
}

TEST_F(TcpTrackerTest, AConsumerDenialEndsTheFlowWithADenyVerdict) {
  consumer_.kill_marker = "FORBIDDEN";
  consumer_.deny = true;
  handshake();
  const TcpResult result = client_data(0, "FORBIDDEN");
  EXPECT_EQ(result.verdict, TcpVerdict::kDeny);
  EXPECT_EQ(result.reason, Counter::drop_request_refused);
  EXPECT_EQ(flow_->state, FlowState::kKilled);
  EXPECT_EQ(client_data(9, "more").verdict, TcpVerdict::kDrop);
}

TEST_F(TcpTrackerTest, ReleaseReturnsHeldBlocksAndClosesTheConsumer) {
  handshake();
  client_data(10, "held");
  server_data(10, "held");
  EXPECT_EQ(tracker_.slots_in_use(), 2u);
  tracker_.release(*flow_);
  EXPECT_EQ(tracker_.slots_in_use(), 0u);
  EXPECT_EQ(consumer_.closed, 1);
}

// --- Sluice's stream stays the host's (docs/normalisation.md, "TCP") ---

TEST_F(TcpTrackerTest, DropsASecondSynWithAnotherIsnWhileHalfOpen) {
  ASSERT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
  const TcpResult result = send(true, tcp_flag::kSyn, client_isn_ + 70000, 0, "");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_tcp_unacceptable_syn);
  // The first ISN stands, as at the host (SYN-RECEIVED keeps it).
  ASSERT_EQ(send(false, tcp_flag::kSyn | tcp_flag::kAck, server_isn_, client_isn_ + 1, "").verdict,
            TcpVerdict::kForward);
  EXPECT_EQ(client_data(0, "abc").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abc");
  EXPECT_EQ(consumer_.opened, 1);
}

TEST_F(TcpTrackerTest, DropsASynWithAnotherIsnOnAnEstablishedFlow) {
  handshake();
  client_data(0, "abc");
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_ + 5, 0, "").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(count(Counter::drop_tcp_unacceptable_syn), 2u);
  EXPECT_EQ(client_data(3, "def").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abcdef");
}

TEST_F(TcpTrackerTest, DropsASynWhileOnlyTheClientHasClosed) {
  handshake();
  client_data(0, "bye", tcp_flag::kFin);
  server_acks(4);  // the FIN acknowledged: the server is in CLOSE-WAIT
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_ + 100000, 0, "").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(server_data(0, "still answering").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.opened, 1);
}

TEST_F(TcpTrackerTest, AfterTheServerClosedFirstTakesOnlyAHigherIsn) {
  handshake();
  client_data(0, "req");
  server_data(0, "resp", tcp_flag::kFin);  // the server closes first: it ends in TIME-WAIT
  send(true, tcp_flag::kAck | tcp_flag::kFin, client_isn_ + 4, server_isn_ + 6, "");
  // The client's FIN is not acknowledged yet (the server is in CLOSING): no new connection.
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_ + 100000, 0, "").verdict, TcpVerdict::kDrop);
  send(false, tcp_flag::kAck, server_isn_ + 6, client_isn_ + 5, "");
  // TIME-WAIT: a lower ISN is no new connection, a higher one is.
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_ - 100000, 0, "").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_ + 4, 0, "").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(consumer_.opened, 1);
  client_isn_ += 100000;
  server_isn_ = 4242;
  handshake();
  EXPECT_EQ(consumer_.opened, 2);
  EXPECT_EQ(consumer_.closed, 1);
  EXPECT_EQ(count(Counter::drop_tcp_unacceptable_syn), 3u);
}

TEST_F(TcpTrackerTest, AfterTheClientClosedFirstTakesAnyIsnOnceBothFinsAreAcknowledged) {
  handshake();
  client_data(0, "req", tcp_flag::kFin);  // the client closes first: the server ends CLOSED
  send(false, tcp_flag::kAck | tcp_flag::kFin, server_isn_ + 1, client_isn_ + 5, "resp");
  // The server's FIN is not acknowledged yet (it is in LAST-ACK): no new connection.
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_ - 100000, 0, "").verdict, TcpVerdict::kDrop);
  send(true, tcp_flag::kAck, client_isn_ + 5, server_isn_ + 6, "");
  client_isn_ -= 100000;
  server_isn_ = 4242;
  handshake();
  EXPECT_EQ(consumer_.opened, 2);
  EXPECT_EQ(client_data(0, "new").verdict, TcpVerdict::kForward);
}

TEST_F(TcpTrackerTest, TakesAnyIsnAfterAnExactRst) {
  handshake();
  client_data(0, "abc");
  EXPECT_EQ(send(true, tcp_flag::kRst, client_isn_ + 4, 0, "").verdict, TcpVerdict::kForward);
  client_isn_ = 7;  // lower than before
  handshake();
  EXPECT_EQ(consumer_.opened, 2);
  EXPECT_EQ(client_data(0, "new").verdict, TcpVerdict::kForward);
}

TEST_F(TcpTrackerTest, DropsARstNotAtTheNextSequenceNumberAndKeepsTheFlow) {
  handshake();
  client_data(0, "abc");
  for (const uint32_t offset : {5u, 3u, 1000u, 1u << 30}) {  // +1, -1, in window, outside
    const TcpResult result =
        send(true, tcp_flag::kRst | tcp_flag::kAck, client_isn_ + offset, server_isn_ + 1, "");
    EXPECT_EQ(result.verdict, TcpVerdict::kDrop) << offset;
    EXPECT_EQ(result.reason, Counter::drop_tcp_rst_not_exact);
  }
  EXPECT_EQ(send(false, tcp_flag::kRst, server_isn_ + 2, 0, "").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(count(Counter::drop_tcp_rst_not_exact), 5u);
  EXPECT_EQ(flow_->state, FlowState::kEstablished);
  EXPECT_EQ(client_data(3, "def").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abcdef");
}

TEST_F(TcpTrackerTest, AnExactRstEndsTheFlowAndLaterPacketsAreDropped) {
  handshake();
  client_data(0, "abc");
  client_data(10, "held");
  EXPECT_EQ(send(false, tcp_flag::kRst, server_isn_ + 1, 0, "").verdict, TcpVerdict::kForward);
  EXPECT_EQ(flow_->state, FlowState::kClosing);
  EXPECT_EQ(tracker_.slots_in_use(), 0u);  // held and kept bytes given back
  const TcpResult result = client_data(3, "def");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_tcp_after_rst);
  EXPECT_EQ(consumer_.stream[0], "abc");
}

TEST_F(TcpTrackerTest, ForwardsTheServersRstRefusingTheSyn) {
  ASSERT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
  EXPECT_EQ(send(false, tcp_flag::kRst | tcp_flag::kAck, 0, client_isn_ + 2, "").verdict,
            TcpVerdict::kDrop);  // does not acknowledge the SYN
  EXPECT_EQ(send(false, tcp_flag::kRst | tcp_flag::kAck, 0, client_isn_ + 1, "").verdict,
            TcpVerdict::kForward);
  EXPECT_EQ(flow_->state, FlowState::kClosing);
}

// The hold-and-forward invariant: bytes held ahead of a hole reach the consumer, in order, when
// the hole is filled, whatever was dropped in between (a RST or SYN the host ignores).
TEST_F(TcpTrackerTest, HeldBytesStillPassTheConsumerAfterAnIgnoredRstOrSyn) {
  consumer_.kill_marker = "EVIL";
  handshake();
  client_data(0, "abc");
  EXPECT_EQ(client_data(6, "EVIL").verdict, TcpVerdict::kForward);  // held
  EXPECT_EQ(send(true, tcp_flag::kRst, client_isn_ + 5, 0, "").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(send(true, tcp_flag::kSyn, client_isn_ + 9, 0, "").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(client_data(3, "def").verdict, TcpVerdict::kKill);  // the filler is not forwarded
  EXPECT_EQ(consumer_.stream[0], "abcdefEVIL");
}

TEST_F(TcpTrackerTest, DropsBytesBeyondAHeldFin) {
  handshake();
  EXPECT_EQ(client_data(3, "def", tcp_flag::kFin).verdict, TcpVerdict::kForward);  // held
  TcpResult result = client_data(6, "xyz");  // over the FIN's own sequence number
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_tcp_beyond_fin);
  EXPECT_EQ(client_data(0, "abcdefgh").verdict, TcpVerdict::kDrop);  // in order, but over it
  EXPECT_EQ(client_data(0, "abc").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abcdef");
  EXPECT_TRUE(consumer_.ended[0]);
}

TEST_F(TcpTrackerTest, DropsAFinBeforeBytesAlreadyHeld) {
  handshake();
  client_data(6, "ghi");
  const TcpResult result = client_data(3, "def", tcp_flag::kFin);
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_tcp_beyond_fin);
  client_data(0, "abc");
  client_data(3, "def");
  EXPECT_EQ(consumer_.stream[0], "abcdefghi");
  EXPECT_FALSE(consumer_.ended[0]);
}

TEST_F(TcpTrackerTest, AcknowledgesTheClientsFinOnAFlowItEnded) {
  consumer_.kill_marker = "FORBIDDEN";
  consumer_.deny = true;
  handshake();
  ASSERT_EQ(client_data(0, "FORBIDDEN").verdict, TcpVerdict::kDeny);
  // The client acknowledges the answer, then closes: answered, not dropped.
  TcpResult result = send(true, tcp_flag::kAck, client_isn_ + 10, server_isn_ + 50, "");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::tcp_killed_flow_absorbed);
  result = send(true, tcp_flag::kFin | tcp_flag::kAck, client_isn_ + 10, server_isn_ + 50, "");
  EXPECT_EQ(result.verdict, TcpVerdict::kAnswer);
  EXPECT_EQ(count(Counter::tcp_killed_flow_absorbed), 1u);
  EXPECT_EQ(count(Counter::drop_tcp_killed_flow), 0u);
  // Data from the client and anything from the server are real drops.
  EXPECT_EQ(client_data(9, "more").reason, Counter::drop_tcp_killed_flow);
  EXPECT_EQ(server_data(0, "late").reason, Counter::drop_tcp_killed_flow);
  EXPECT_EQ(count(Counter::drop_tcp_killed_flow), 2u);
}

TEST_F(TcpTrackerTest, DiscardDropsThePacketKeepsTheFlowAndDropsLaterPayload) {
  consumer_.discard_marker = "JUNK";
  handshake();
  EXPECT_EQ(client_data(0, "GET / HTTP/1.1\r\n").verdict, TcpVerdict::kForward);
  TcpResult result = client_data(16, "JUNK");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_data_after_close);
  EXPECT_EQ(flow_->state, FlowState::kEstablished);
  // The discarded bytes again, differing or not, and anything after them: dropped, not read.
  EXPECT_EQ(client_data(16, "JUNK").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(client_data(16, "XXXX").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(client_data(14, "\r\nJU").verdict, TcpVerdict::kDrop);  // reaches into them
  EXPECT_EQ(client_data(20, "more").verdict, TcpVerdict::kDrop);
  EXPECT_EQ(count(Counter::drop_data_after_close), 5u);
  EXPECT_EQ(consumer_.stream[0], "GET / HTTP/1.1\r\nJUNK");
  // Bytes before them, pure ACKs and the FIN pass; the other direction is untouched.
  EXPECT_EQ(client_data(0, "GET / HTTP/1.1\r\n").verdict, TcpVerdict::kForward);
  EXPECT_EQ(server_data(0, "HTTP/1.1 200 OK\r\n").verdict, TcpVerdict::kForward);
  EXPECT_EQ(send(true, tcp_flag::kAck, client_isn_ + 25, server_isn_ + 18, "").verdict,
            TcpVerdict::kForward);
  EXPECT_EQ(
      send(true, tcp_flag::kFin | tcp_flag::kAck, client_isn_ + 25, server_isn_ + 18, "").verdict,
      TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[1], "HTTP/1.1 200 OK\r\n");
  EXPECT_EQ(count(Counter::tcp_flows_killed), 0u);
}

TEST_F(TcpTrackerTest, DiscardOfAHeldPieceDropsTheHoleFillerAndFreesTheRest) {
  consumer_.discard_marker = "JUNK";
  handshake();
  client_data(6, "JUNK");
  client_data(12, "tail");
  EXPECT_EQ(tracker_.slots_in_use(), 2u);
  const TcpResult result = client_data(0, "abcdef");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_data_after_close);
  // "tail" (held beyond) given back; what remains is kept unacknowledged bytes: the filler's and
  // the discarded piece's.
  EXPECT_EQ(tracker_.slots_in_use(), 2u);
  // The receiver waits at the filler's first byte: the filler itself can never pass now.
  EXPECT_EQ(client_data(0, "abcdef").verdict, TcpVerdict::kDrop);
}

// Property: however the stream is cut, reordered (within the reassembly window) and duplicated,
// the consumer receives exactly the original bytes, and nothing is killed.
TEST_F(TcpTrackerTest, ReassemblesAnySegmentationOrderAndDuplication) {
  std::mt19937 random(42);
  for (int round = 0; round < 300; ++round) {
    consumer_.stream[0].clear();
    client_isn_ = static_cast<uint32_t>(random());
    server_isn_ = static_cast<uint32_t>(random());
    tracker_.release(*flow_);
    flow_->tcp = TcpFlowState{};
    table_.set_state(*flow_, FlowState::kHalfOpen, now_);
    handshake();

    std::string original(1 + random() % 3000, '\0');
    for (char& c : original) c = static_cast<char>('a' + random() % 26);
    std::vector<std::pair<uint32_t, uint32_t>> segments;  // offset, length
    for (uint32_t offset = 0; offset < original.size();) {
      const uint32_t length =
          std::min<uint32_t>(1 + random() % 200, static_cast<uint32_t>(original.size()) - offset);
      segments.emplace_back(offset, length);
      offset += length;
    }
    // Swap neighbours to reorder locally, duplicate a few.
    for (std::size_t i = 0; i + 1 < segments.size(); ++i) {
      if (random() % 3 == 0) std::swap(segments[i], segments[i + 1]);
    }
    std::vector<std::pair<uint32_t, uint32_t>> sent;
    for (const auto& segment : segments) {
      sent.push_back(segment);
      if (random() % 5 == 0) sent.push_back(segment);
    }
    for (const auto& [offset, length] : sent) {
      ASSERT_NE(client_data(offset, original.substr(offset, length)).verdict, TcpVerdict::kKill);
    }
    // Anything dropped for exceeding the bounds is resent, as TCP would.
    for (const auto& [offset, length] : segments) {
      server_acks(static_cast<uint32_t>(consumer_.stream[0].size()));
      ASSERT_NE(client_data(offset, original.substr(offset, length)).verdict, TcpVerdict::kKill);
    }
    ASSERT_EQ(consumer_.stream[0], original) << "round " << round;
  }
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// --- Segments the host drops are dropped here too (docs/normalisation.md, "TCP") ---

TEST_F(TcpTrackerTest, DropsEverySegmentCarryingATcpSignatureOption) {
  handshake();
  client_data(0, "abc");
  signature_ = true;
  for (const TcpResult result :
       {send(true, tcp_flag::kRst, client_isn_ + 4, 0, ""), client_data(3, "def"),
        server_data(0, "x"), send(true, tcp_flag::kSyn, client_isn_ + 3, 0, "")}) {
    EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
    EXPECT_EQ(result.reason, Counter::drop_tcp_signature_option);
  }
  signature_ = false;
  EXPECT_EQ(flow_->state, FlowState::kEstablished);
  EXPECT_EQ(client_data(3, "def").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abcdef");
  EXPECT_EQ(count(Counter::drop_tcp_signature_option), 4u);
}

TEST_F(TcpTrackerTest, DropsASegmentOlderThanTheReceiversTsRecent) {
  client_tsval_ = 1000;
  server_tsval_ = 50000;
  handshake();
  client_tsval_ = 1010;
  EXPECT_EQ(client_data(0, "abc").verdict, TcpVerdict::kForward);
  client_tsval_ = 1008;  // two ticks older: Linux's tcp_paws_discard
  TcpResult result = client_data(3, "X");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_tcp_paws);
  client_tsval_ = 1009;  // one tick older passes, as at Linux (TCP_PAWS_WINDOW)
  EXPECT_EQ(client_data(3, "d").verdict, TcpVerdict::kForward);
  client_tsval_.reset();  // Linux does not check a segment without the option
  EXPECT_EQ(client_data(4, "e").verdict, TcpVerdict::kForward);
  server_tsval_ = 49000;  // both directions
  result = server_data(0, "old");
  EXPECT_EQ(result.reason, Counter::drop_tcp_paws);
  client_tsval_ = 1;  // a RST is not checked (RFC 7323 §5.3 R1)
  EXPECT_EQ(send(true, tcp_flag::kRst, client_isn_ + 6, 0, "").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "abcde");
  EXPECT_EQ(count(Counter::drop_tcp_paws), 2u);
}

TEST_F(TcpTrackerTest, ChecksTimestampsOnlyWhenBothSynsCarriedThem) {
  client_tsval_ = 1000;
  handshake();  // the SYN-ACK has none: the host does not use timestamps
  client_tsval_ = 1;
  EXPECT_EQ(client_data(0, "abc").verdict, TcpVerdict::kForward);
}

// The range TS.Recent may hold never spans half the sequence space: past it, Linux's signed
// comparison would call the segment older while Sluice's called it newer.
TEST_F(TcpTrackerTest, KeepsThePawsRangeWithinHalfTheTimestampSpace) {
  client_tsval_ = 1000;
  server_tsval_ = 1;
  handshake();
  client_tsval_ = 1000u + 0x80000000u;  // half the space ahead of the SYN's: older to Linux
  EXPECT_EQ(client_data(0, "a").reason, Counter::drop_tcp_paws);
  client_tsval_ = 1000u + 0x7fffffffu;  // just inside: taken, and TS.Recent may now be that
  EXPECT_EQ(client_data(0, "a").verdict, TcpVerdict::kForward);
  client_tsval_ = 1000u + 0x80000005u;  // newer than that, but older than the SYN's to Linux
  EXPECT_EQ(client_data(1, "b").reason, Counter::drop_tcp_paws);
  client_tsval_ = 1000;  // far older than the newest forwarded
  EXPECT_EQ(client_data(1, "b").reason, Counter::drop_tcp_paws);
  EXPECT_EQ(consumer_.stream[0], "a");
}

TEST_F(TcpTrackerTest, DropsClientBytesBeforeTheSynAck) {
  ASSERT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
  for (const TcpResult result : {client_data(0, "early"), client_data(0, "", tcp_flag::kFin)}) {
    EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
    EXPECT_EQ(result.reason, Counter::drop_tcp_data_before_handshake);
  }
  ASSERT_EQ(send(false, tcp_flag::kSyn | tcp_flag::kAck, server_isn_, client_isn_ + 1, "").verdict,
            TcpVerdict::kForward);
  EXPECT_EQ(client_data(0, "late").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "late");
}

TEST_F(TcpTrackerTest, DropsASynCarryingData) {
  const TcpResult result = send(true, tcp_flag::kSyn, client_isn_, 0, "GET");
  EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
  EXPECT_EQ(result.reason, Counter::drop_tcp_data_before_handshake);
  handshake();  // the TFO client's plain SYN
  EXPECT_EQ(client_data(0, "GET").verdict, TcpVerdict::kForward);
  EXPECT_EQ(consumer_.stream[0], "GET");
}

TEST_F(TcpTrackerTest, DropsASynAckThatDoesNotAcknowledgeTheSyn) {
  ASSERT_EQ(send(true, tcp_flag::kSyn, client_isn_, 0, "").verdict, TcpVerdict::kForward);
  EXPECT_EQ(send(false, tcp_flag::kSyn | tcp_flag::kAck, server_isn_, client_isn_ + 2, "").verdict,
            TcpVerdict::kDrop);
  EXPECT_EQ(client_data(0, "early").reason, Counter::drop_tcp_data_before_handshake);
}

TEST_F(TcpTrackerTest, DropsSegmentsWithoutAck) {
  handshake();
  for (const uint8_t flags : {uint8_t{tcp_flag::kPsh}, uint8_t{0}, uint8_t{tcp_flag::kFin}}) {
    const TcpResult result = send(true, flags, client_isn_ + 1, 0, "abc");
    EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
    EXPECT_EQ(result.reason, Counter::drop_tcp_no_ack);
  }
  EXPECT_EQ(send(false, tcp_flag::kPsh, server_isn_ + 1, 0, "abc").reason,
            Counter::drop_tcp_no_ack);
  EXPECT_EQ(consumer_.stream[0], "");
  EXPECT_FALSE(consumer_.ended[0]);
}

TEST_F(TcpTrackerTest, DropsASynWithFinOrRst) {
  for (const uint8_t extra : {tcp_flag::kFin, tcp_flag::kRst}) {
    const TcpResult result = send(true, tcp_flag::kSyn | extra, client_isn_, 0, "");
    EXPECT_EQ(result.verdict, TcpVerdict::kDrop);
    EXPECT_EQ(result.reason, Counter::drop_tcp_bad_flags);
  }
  handshake();
  client_data(0, "abc");
  EXPECT_EQ(send(true, tcp_flag::kSyn | tcp_flag::kRst, client_isn_ + 4, 0, "").reason,
            Counter::drop_tcp_bad_flags);
  EXPECT_EQ(flow_->state, FlowState::kEstablished);
  EXPECT_EQ(consumer_.opened, 1);
}

// The red team's resynchronisation (golden tcp_rst_resync_*): a byte or a RST the host drops
// must not move Sluice, so the SYN that follows is refused and the request's last bytes reach the
// same stream, where the request completes and is decided.
class TcpResyncTest : public TcpTrackerTest {
 protected:
  void expect_no_resync(bool stale_byte) {
    client_tsval_ = 1000;
    server_tsval_ = 5000;
    handshake();
    client_tsval_ = 1001;
    ASSERT_EQ(client_data(0, "body-").verdict, TcpVerdict::kForward);
    if (stale_byte) {  // dropped by the host's PAWS: the RST one above it is not exact
      client_tsval_ = 1;
      EXPECT_EQ(client_data(5, "\r").reason, Counter::drop_tcp_paws);
      client_tsval_ = 1001;
      EXPECT_EQ(send(true, tcp_flag::kRst, client_isn_ + 7, 0, "").reason,
                Counter::drop_tcp_rst_not_exact);
    } else {  // an exact RST the host drops for its MD5 option
      signature_ = true;
      EXPECT_EQ(send(true, tcp_flag::kRst, client_isn_ + 6, 0, "").reason,
                Counter::drop_tcp_signature_option);
      signature_ = false;
    }
    send(true, tcp_flag::kSyn, client_isn_ + 5, 0, "");  // at RCV.NXT - 1: a challenge ACK
    EXPECT_EQ(consumer_.opened, 1);                      // no new stream
    EXPECT_EQ(client_data(5, "\r\n").verdict, TcpVerdict::kForward);
    EXPECT_EQ(consumer_.stream[0], "body-\r\n");
    EXPECT_EQ(consumer_.opened, 1);
  }
};

TEST_F(TcpResyncTest, AByteDroppedByPawsCannotMakeALaterRstExact) {
  expect_no_resync(true);
}

TEST_F(TcpResyncTest, AnMd5SignedRstCannotEndTheStream) {
  expect_no_resync(false);
}

}  // namespace
}  // namespace sluice
