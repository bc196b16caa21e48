// libFuzzer harness for the frame classifier, the checksum helpers and flow keys.
//
// Any input is a frame. The classifier must either call it malformed, with a drop reason, or
// return offsets that stay inside the frame and agree with each other; the checksum helpers and
// make_flow_key must then run within those bounds, the checksums agreeing with a plain RFC 1071
// reference. Build with -fsanitize=fuzzer,address,undefined; seeds are in
// tests/fuzz/corpus/classify/.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <utility>
#include <vector>

#include "sluice/classify.hpp"
#include "sluice/counters.hpp"
#include "sluice/flow_table.hpp"

namespace sluice {
namespace {

// Each message names its invariant, so the message alone says which one failed.
void require(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "classify_fuzz: invariant violated: %s\n", what);
  std::abort();
}

// Results whose values depend on the input; stored so the calls cannot be optimised away.
volatile bool sink;

// RFC 1071 word by word: the plain reference the optimised sums must agree with.
uint16_t reference_checksum(std::span<const uint8_t> bytes) {
  uint64_t sum = 0;
  for (std::size_t i = 0; i < bytes.size(); i += 2) {
    sum += static_cast<uint64_t>(bytes[i]) << 8;
    if (i + 1 < bytes.size()) sum += bytes[i + 1];
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint16_t reference_l4_checksum(std::span<const uint8_t> frame, const PacketInfo& info) {
  const std::size_t address_bytes = info.is_ipv4() ? 4 : 16;
  const std::size_t length = info.l3_end - info.l4_offset;
  std::vector<uint8_t> covered(info.src.begin(), info.src.begin() + address_bytes);
  covered.insert(covered.end(), info.dst.begin(), info.dst.begin() + address_bytes);
  // The IPv6 pseudo-header's 32-bit length and the IPv4 one's 16-bit length sum the same here,
  // as do the protocol's positions: only the sum of 16-bit words matters.
  covered.insert(covered.end(), {0, info.l4_protocol, static_cast<uint8_t>(length >> 8),
                                 static_cast<uint8_t>(length)});
  covered.insert(covered.end(), frame.begin() + info.l4_offset, frame.begin() + info.l3_end);
  return reference_checksum(covered);
}

bool same_info(const PacketInfo& a, const PacketInfo& b) {
  return a.vlan_count == b.vlan_count && a.vlan_tpid == b.vlan_tpid && a.vlan_tci == b.vlan_tci &&
         a.ether_type == b.ether_type && a.l3_offset == b.l3_offset && a.l3 == b.l3 &&
         a.l4 == b.l4 && a.fragment == b.fragment && a.l4_protocol == b.l4_protocol &&
         a.l4_offset == b.l4_offset && a.l3_end == b.l3_end &&
         a.payload_offset == b.payload_offset && a.payload_length == b.payload_length &&
         a.src == b.src && a.dst == b.dst && a.src_port == b.src_port && a.dst_port == b.dst_port &&
         a.seq == b.seq && a.ack == b.ack && a.tcp_flags == b.tcp_flags &&
         a.tcp_window == b.tcp_window;
}

void check_ip(std::span<const uint8_t> frame, const PacketInfo& info) {
  const std::size_t fixed_header = info.is_ipv4() ? 20 : 40;
  require(info.l3_offset + fixed_header <= info.l3_end, "the IP header fits in the datagram");
  require(info.l3_end <= frame.size(), "l3_end <= frame size");
  require(info.l3_offset + fixed_header <= info.l4_offset, "l4 starts after the IP header");
  require(info.l4_offset <= info.l3_end, "l4_offset <= l3_end");
  if (info.fragment) require(info.l4 == L4::kOther, "a fragment's transport is not parsed");
  switch (info.l4) {
    case L4::kTcp:
      require(info.l4_offset + 20 <= info.payload_offset, "the TCP header is at least 20 bytes");
      require(info.payload_offset <= info.l4_offset + 60, "the TCP header is at most 60 bytes");
      require(std::size_t{info.payload_offset} + info.payload_length <= info.l3_end,
              "TCP payload_offset + payload_length <= l3_end");
      break;
    case L4::kUdp:
      require(info.payload_offset == info.l4_offset + 8, "the UDP header is 8 bytes");
      require(std::size_t{info.payload_offset} + info.payload_length <= info.l3_end,
              "UDP payload_offset + payload_length <= l3_end");
      break;
    case L4::kIcmp:
    case L4::kIcmpv6:
      require(info.l4_offset + 8 <= info.l3_end, "an ICMP message has at least 8 bytes");
      break;
    case L4::kNone:
    case L4::kOther:
      break;
  }
  // The checksum helpers stay in bounds and agree with the plain RFC 1071 reference.
  if (info.is_ipv4()) {
    const auto header =
        frame.subspan(info.l3_offset, std::size_t{frame[info.l3_offset] & 0x0fu} * 4);
    require(ipv4_header_checksum(header) == reference_checksum(header),
            "ipv4_header_checksum agrees with the reference");
    require(ipv4_header_checksum_ok(frame, info) == (reference_checksum(header) == 0),
            "ipv4_header_checksum_ok agrees with the reference");
  }
  if (info.l4 == L4::kTcp || info.l4 == L4::kUdp) {
    require(l4_checksum(frame, info) == reference_l4_checksum(frame, info),
            "l4_checksum agrees with the reference");
  }
  sink = l4_checksum_ok(frame, info);
}

void check_flow_key(const PacketInfo& info) {
  const KeyedPacket forward = make_flow_key(info);
  PacketInfo swapped = info;
  std::swap(swapped.src, swapped.dst);
  std::swap(swapped.src_port, swapped.dst_port);
  const KeyedPacket backward = make_flow_key(swapped);
  require(forward.key == backward.key, "both directions give the same key");
  const bool symmetric = info.src == info.dst && info.src_port == info.dst_port;
  if (!symmetric) {
    require(forward.source_is_low != backward.source_is_low, "exactly one direction is low");
  }
  for (uint8_t byte : forward.key.reserved) require(byte == 0, "reserved key bytes are zero");
}

}  // namespace
}  // namespace sluice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace sluice;
  const std::span<const uint8_t> frame(data, size);
  const Classification result = classify(frame);
  if (result.malformed) {
    require(kCounterKinds[static_cast<std::size_t>(result.reason)] == CounterKind::Drop,
            "a malformed frame is counted under a drop reason");
    return 0;
  }
  const PacketInfo& info = result.info;
  require(size >= 14, "a frame shorter than Ethernet is malformed");
  require(info.vlan_count <= 2, "at most two VLAN tags");
  require(info.l3_offset == 14 + 4 * info.vlan_count, "L3 follows the Ethernet header and tags");
  switch (info.l3) {
    case L3::kNone:
      require(info.l4 == L4::kNone, "no transport without a network layer");
      return 0;
    case L3::kArp:
      require(info.l3_offset + 8 <= info.l3_end && info.l3_end <= size, "ARP fits in the frame");
      break;
    case L3::kIpv4:
    case L3::kIpv6:
      check_ip(frame, info);
      check_flow_key(info);
      break;
  }
  // Whatever follows the datagram is Ethernet padding: the datagram alone, in a buffer of exactly
  // its size, must classify the same way.
  const std::vector<uint8_t> datagram(data, data + info.l3_end);
  const Classification again = classify(datagram);
  require(!again.malformed && same_info(again.info, info), "padding does not change the result");
  return 0;
}
