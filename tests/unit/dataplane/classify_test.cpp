// Specification of the frame classifier: which header stacks it recognises, which fields it
// extracts, which reason it gives for each malformed frame, and that no prefix of any frame makes
// it read past the end (these tests run under ASan/UBSan in the sanitizer build).
//
// Frames are built here byte by byte; their checksums are computed by this file (RFC 1071), never
// by the code under test.
#include "sluice/classify.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint16_t kTpid8021Q = 0x8100;
constexpr uint16_t kTpid8021ad = 0x88a8;
constexpr uint16_t kTpidLegacyQinQ = 0x9100;
constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeExperimental = 0x88b5;  // IEEE 802 local experimental EtherType

constexpr uint8_t kProtoHopByHop = 0;
constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoRouting = 43;
constexpr uint8_t kProtoFragment = 44;
constexpr uint8_t kProtoGre = 47;
constexpr uint8_t kProtoEsp = 50;
constexpr uint8_t kProtoAh = 51;
constexpr uint8_t kProtoIcmpv6 = 58;
constexpr uint8_t kProtoNoNext = 59;
constexpr uint8_t kProtoDestination = 60;

constexpr IpAddress kClientV4 = {192, 0, 2, 1};
constexpr IpAddress kServerV4 = {198, 51, 100, 2};
constexpr IpAddress kClientV6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
constexpr IpAddress kServerV6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};
constexpr uint16_t kClientPort = 49152;
constexpr uint16_t kServerPort = 443;
constexpr uint32_t kSeq = 0x11223344;
constexpr uint32_t kAck = 0xa5b6c7d8;
constexpr uint8_t kFlags = tcp_flag::kPsh | tcp_flag::kAck;
constexpr uint16_t kWindow = 0xfaf0;
constexpr std::size_t kEthernetHeader = 14;
constexpr std::size_t kMinimumFrame = 60;  // Ethernet minimum, FCS not included
// Non-zero padding: a length or checksum that wrongly counted the padding would show.
constexpr uint8_t kPadding = 0xaa;

// ---- byte helpers ----------------------------------------------------------------------------

void append16(Bytes& bytes, uint16_t value) {
  bytes.push_back(static_cast<uint8_t>(value >> 8));
  bytes.push_back(static_cast<uint8_t>(value));
}

void append32(Bytes& bytes, uint32_t value) {
  append16(bytes, static_cast<uint16_t>(value >> 16));
  append16(bytes, static_cast<uint16_t>(value));
}

template <typename Range>
void append(Bytes& bytes, const Range& more) {
  bytes.insert(bytes.end(), more.begin(), more.end());
}

void store16(Bytes& bytes, std::size_t at, uint16_t value) {
  bytes[at] = static_cast<uint8_t>(value >> 8);
  bytes[at + 1] = static_cast<uint8_t>(value);
}

uint16_t load16(const Bytes& bytes, std::size_t at) {
  return static_cast<uint16_t>((bytes[at] << 8) | bytes[at + 1]);
}

// RFC 1071 ones' complement checksum, written independently of the code under test.
uint16_t internet_checksum(const Bytes& bytes) {
  uint64_t sum = 0;
  for (std::size_t i = 0; i < bytes.size(); i += 2) {
    const uint16_t high = static_cast<uint16_t>(bytes[i] << 8);
    sum += i + 1 < bytes.size() ? (high | bytes[i + 1]) : high;
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// RFC 793 §3.1 / RFC 768 (IPv4) and RFC 8200 §8.1 (IPv6) pseudo-headers.
Bytes pseudo_header(bool ipv6, uint8_t protocol, std::size_t upper_layer_length) {
  Bytes header;
  const IpAddress& src = ipv6 ? kClientV6 : kClientV4;
  const IpAddress& dst = ipv6 ? kServerV6 : kServerV4;
  const std::size_t address_bytes = ipv6 ? 16 : 4;
  header.insert(header.end(), src.begin(), src.begin() + address_bytes);
  header.insert(header.end(), dst.begin(), dst.begin() + address_bytes);
  if (ipv6) {
    append32(header, static_cast<uint32_t>(upper_layer_length));
    header.insert(header.end(), {0, 0, 0, protocol});
  } else {
    header.insert(header.end(), {0, protocol});
    append16(header, static_cast<uint16_t>(upper_layer_length));
  }
  return header;
}

// ---- the frame builder -----------------------------------------------------------------------

enum class Network { kIpv4, kIpv6, kArp, kOther };
enum class Transport { kTcp, kUdp, kIcmp };  // kIcmp is ICMPv6 over IPv6

struct VlanTag {
  uint16_t tpid = 0;
  uint16_t tci = 0;
};

struct FrameSpec {
  std::vector<VlanTag> tags;  // outer first
  Network network = Network::kIpv4;
  std::size_t ipv4_option_bytes = 0;     // a multiple of 4, at most 40
  uint16_t ipv4_fragment_field = 0;      // flags and fragment offset (0x2000 = MF)
  std::vector<uint8_t> ipv6_extensions;  // next-header numbers, outermost first
  uint16_t ipv6_fragment_field = 0;      // offset and M flag of the fragment header, if listed
  Transport transport = Transport::kTcp;
  std::size_t tcp_option_bytes = 0;           // a multiple of 4, at most 40
  Bytes tcp_options;                          // the first option bytes; NOPs fill the rest
  Bytes payload = {'h', 'e', 'l', 'l', 'o'};  // odd length: the checksum's trailing byte counts
};

// A built frame and where the classifier is expected to find each layer.
struct Frame {
  FrameSpec spec;
  std::string description;
  Bytes bytes;
  std::size_t l3_offset = 0;
  std::size_t l3_header_length = 0;  // IPv4 header with options, IPv6 fixed header, ARP message
  std::size_t l4_offset = 0;
  std::size_t l4_header_length = 0;
  std::size_t l3_end = 0;
  uint8_t l4_protocol = 0;
  bool fragment = false;
};

bool is_ipv6(const FrameSpec& spec) {
  return spec.network == Network::kIpv6;
}

uint8_t transport_protocol(const FrameSpec& spec) {
  switch (spec.transport) {
    case Transport::kTcp:
      return kProtoTcp;
    case Transport::kUdp:
      return kProtoUdp;
    case Transport::kIcmp:
      break;
  }
  return is_ipv6(spec) ? kProtoIcmpv6 : kProtoIcmp;
}

std::string describe(const FrameSpec& spec) {
  std::ostringstream out;
  if (spec.tags.empty()) out << "untagged";
  for (const VlanTag& tag : spec.tags)
    out << std::hex << "tag(" << tag.tpid << "," << tag.tci << ") ";
  out << std::dec;
  switch (spec.network) {
    case Network::kIpv4:
      out << " ipv4 options=" << spec.ipv4_option_bytes << " fragment=" << spec.ipv4_fragment_field;
      break;
    case Network::kIpv6:
      out << " ipv6 extensions=";
      for (uint8_t next : spec.ipv6_extensions) out << int{next} << ",";
      break;
    case Network::kArp:
      return out.str() + " arp";
    case Network::kOther:
      return out.str() + " other";
  }
  switch (spec.transport) {
    case Transport::kTcp:
      out << " tcp options=" << spec.tcp_option_bytes;
      break;
    case Transport::kUdp:
      out << " udp";
      break;
    case Transport::kIcmp:
      out << " icmp";
      break;
  }
  return out.str();
}

Bytes transport_segment(const FrameSpec& spec) {
  Bytes segment;
  switch (spec.transport) {
    case Transport::kTcp:
      append16(segment, kClientPort);
      append16(segment, kServerPort);
      append32(segment, kSeq);
      append32(segment, kAck);
      segment.push_back(static_cast<uint8_t>((20 + spec.tcp_option_bytes) / 4 << 4));
      segment.push_back(kFlags);
      append16(segment, kWindow);
      append16(segment, 0);  // checksum
      append16(segment, 0);  // urgent pointer
      append(segment, spec.tcp_options);
      segment.insert(segment.end(), spec.tcp_option_bytes - spec.tcp_options.size(), 1);  // NOPs
      break;
    case Transport::kUdp:
      append16(segment, kClientPort);
      append16(segment, kServerPort);
      append16(segment, static_cast<uint16_t>(8 + spec.payload.size()));
      append16(segment, 0);  // checksum
      break;
    case Transport::kIcmp:
      segment.push_back(is_ipv6(spec) ? 128 : 8);  // echo request
      segment.push_back(0);
      append16(segment, 0);  // checksum
      append16(segment, 0x4242);
      append16(segment, 1);
      break;
  }
  append(segment, spec.payload);
  return segment;
}

std::size_t transport_header_length(const FrameSpec& spec) {
  return spec.transport == Transport::kTcp ? 20 + spec.tcp_option_bytes : 8;
}

void fill_transport_checksum(const FrameSpec& spec, Bytes& segment) {
  if (spec.transport == Transport::kIcmp && !is_ipv6(spec)) {
    store16(segment, 2, internet_checksum(segment));  // ICMPv4: no pseudo-header (RFC 792)
    return;
  }
  const std::size_t at = spec.transport == Transport::kTcp   ? 16
                         : spec.transport == Transport::kUdp ? 6
                                                             : 2;
  Bytes covered = pseudo_header(is_ipv6(spec), transport_protocol(spec), segment.size());
  append(covered, segment);
  uint16_t checksum = internet_checksum(covered);
  // A computed zero is sent as all ones: zero means "no checksum" (RFC 768).
  if (spec.transport == Transport::kUdp && checksum == 0) checksum = 0xffff;
  store16(segment, at, checksum);
}

Bytes ipv6_extension(uint8_t type, uint8_t next, uint16_t fragment_field) {
  Bytes header = {next};
  switch (type) {
    case kProtoHopByHop:  // 16 bytes: length 1 (8-octet units after the first 8), one PadN
      header.insert(header.end(), {1, 1, 12});
      header.insert(header.end(), 12, 0);
      break;
    case kProtoDestination:  // 8 bytes: length 0, one PadN
      header.insert(header.end(), {0, 1, 4, 0, 0, 0, 0});
      break;
    case kProtoRouting:  // segment routing header (RFC 8754) with one segment: 24 bytes
      header.insert(header.end(), {2, 4, 0, 0, 0, 0, 0});
      append(header, kServerV6);
      break;
    case kProtoAh:  // 24 bytes; its length counts 4-octet units, minus 2 (RFC 4302 §2.2)
      header.insert(header.end(), {4, 0, 0});
      append32(header, 0x1000);               // SPI
      append32(header, 1);                    // sequence number
      header.insert(header.end(), 12, 0x5a);  // 96-bit ICV
      break;
    case kProtoFragment:  // 8 bytes
      header.push_back(0);
      append16(header, fragment_field);
      append32(header, 0xdecafbad);
      break;
    default:
      ADD_FAILURE() << "no builder for extension header " << int{type};
  }
  return header;
}

void pad(Bytes& bytes) {
  if (bytes.size() < kMinimumFrame) bytes.resize(kMinimumFrame, kPadding);
}

uint16_t ether_type_of(const FrameSpec& spec) {
  switch (spec.network) {
    case Network::kIpv4:
      return kEtherTypeIpv4;
    case Network::kIpv6:
      return kEtherTypeIpv6;
    case Network::kArp:
      return kEtherTypeArp;
    case Network::kOther:
      break;
  }
  return kEtherTypeExperimental;
}

Frame build(const FrameSpec& spec) {
  Frame frame;
  frame.spec = spec;
  frame.description = describe(spec);
  Bytes& bytes = frame.bytes;
  bytes = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};  // destination, source
  for (const VlanTag& tag : spec.tags) {
    append16(bytes, tag.tpid);
    append16(bytes, tag.tci);
  }
  append16(bytes, ether_type_of(spec));
  frame.l3_offset = bytes.size();

  switch (spec.network) {
    case Network::kOther:
      append(bytes, spec.payload);
      frame.l3_end = bytes.size();
      break;
    case Network::kArp:  // RFC 826 request, Ethernet / IPv4
      append16(bytes, 1);
      append16(bytes, kEtherTypeIpv4);
      bytes.insert(bytes.end(), {6, 4});
      append16(bytes, 1);
      bytes.insert(bytes.end(), {0x02, 0, 0, 0, 0, 0x01});
      bytes.insert(bytes.end(), kClientV4.begin(), kClientV4.begin() + 4);
      bytes.insert(bytes.end(), 6, 0);
      bytes.insert(bytes.end(), kServerV4.begin(), kServerV4.begin() + 4);
      frame.l3_header_length = 28;
      frame.l3_end = bytes.size();
      break;
    case Network::kIpv4: {
      frame.l4_protocol = transport_protocol(spec);
      frame.l4_header_length = transport_header_length(spec);
      Bytes segment = transport_segment(spec);
      fill_transport_checksum(spec, segment);
      const std::size_t header_length = 20 + spec.ipv4_option_bytes;
      Bytes header = {static_cast<uint8_t>(0x40 | header_length / 4), 0};
      append16(header, static_cast<uint16_t>(header_length + segment.size()));
      append16(header, 0x1234);  // identification
      append16(header, spec.ipv4_fragment_field);
      header.insert(header.end(), {64, frame.l4_protocol, 0, 0});
      header.insert(header.end(), kClientV4.begin(), kClientV4.begin() + 4);
      header.insert(header.end(), kServerV4.begin(), kServerV4.begin() + 4);
      if (spec.ipv4_option_bytes > 0) {
        header.insert(header.end(), {0x94, 0x04, 0, 0});             // router alert (RFC 2113)
        header.insert(header.end(), spec.ipv4_option_bytes - 4, 1);  // NOP
      }
      store16(header, 10, internet_checksum(header));
      frame.l3_header_length = header.size();
      frame.l4_offset = frame.l3_offset + header.size();
      frame.fragment = (spec.ipv4_fragment_field & 0x3fff) != 0;
      append(bytes, header);
      append(bytes, segment);
      frame.l3_end = bytes.size();
      break;
    }
    case Network::kIpv6: {
      frame.l4_protocol = transport_protocol(spec);
      frame.l4_header_length = transport_header_length(spec);
      Bytes segment = transport_segment(spec);
      fill_transport_checksum(spec, segment);
      Bytes extensions;
      for (std::size_t i = 0; i < spec.ipv6_extensions.size(); ++i) {
        const uint8_t next =
            i + 1 < spec.ipv6_extensions.size() ? spec.ipv6_extensions[i + 1] : frame.l4_protocol;
        append(extensions, ipv6_extension(spec.ipv6_extensions[i], next, spec.ipv6_fragment_field));
        if (spec.ipv6_extensions[i] == kProtoFragment && !frame.fragment) {
          frame.fragment = true;  // the classifier stops at the fragment header
          frame.l4_offset = frame.l3_offset + 40 + extensions.size();
        }
      }
      if (!frame.fragment) frame.l4_offset = frame.l3_offset + 40 + extensions.size();
      Bytes header = {0x60, 0, 0, 0};
      append16(header, static_cast<uint16_t>(extensions.size() + segment.size()));
      header.push_back(spec.ipv6_extensions.empty() ? frame.l4_protocol : spec.ipv6_extensions[0]);
      header.push_back(64);
      append(header, kClientV6);
      append(header, kServerV6);
      frame.l3_header_length = header.size();
      append(bytes, header);
      append(bytes, extensions);
      append(bytes, segment);
      frame.l3_end = bytes.size();
      break;
    }
  }
  pad(bytes);
  return frame;
}

// The frame with its IP datagram ending at `l3_end`: the frame is cut there, the IP length fields
// and the IPv4 header checksum are rewritten to match, and the frame is padded again.
Frame with_datagram_end(Frame frame, std::size_t l3_end) {
  Bytes& bytes = frame.bytes;
  bytes.resize(l3_end);
  if (frame.spec.network == Network::kIpv4) {
    store16(bytes, frame.l3_offset + 2, static_cast<uint16_t>(l3_end - frame.l3_offset));
    store16(bytes, frame.l3_offset + 10, 0);
    const Bytes header(bytes.begin() + static_cast<std::ptrdiff_t>(frame.l3_offset),
                       bytes.begin() + static_cast<std::ptrdiff_t>(frame.l4_offset));
    store16(bytes, frame.l3_offset + 10, internet_checksum(header));
  } else {
    store16(bytes, frame.l3_offset + 4, static_cast<uint16_t>(l3_end - frame.l3_offset - 40));
  }
  frame.l3_end = l3_end;
  pad(bytes);
  return frame;
}

// ---- the frames ------------------------------------------------------------------------------

const std::vector<std::vector<VlanTag>>& tag_stacks() {
  static const std::vector<std::vector<VlanTag>> stacks = {
      {},
      {{kTpid8021Q, 0xa064}},                         // PCP 5, VID 100
      {{kTpid8021ad, 0x02c8}, {kTpid8021Q, 0x3064}},  // QinQ: S-tag VID 712, C-tag DEI set
      {{kTpidLegacyQinQ, 0x0123}},                    // pre-802.1ad QinQ TPID
  };
  return stacks;
}

struct NetworkVariant {
  Network network;
  std::size_t ipv4_option_bytes = 0;
  std::vector<uint8_t> ipv6_extensions;
};

const std::vector<NetworkVariant>& network_variants() {
  static const std::vector<NetworkVariant> variants = {
      {Network::kIpv4, 0, {}},
      {Network::kIpv4, 8, {}},
      {Network::kIpv4, 40, {}},  // the largest IHL, 15
      {Network::kIpv6, 0, {}},
      {Network::kIpv6, 0, {kProtoHopByHop}},
      {Network::kIpv6, 0, {kProtoRouting}},
      {Network::kIpv6, 0, {kProtoDestination}},
      {Network::kIpv6, 0, {kProtoAh}},
      {Network::kIpv6,
       0,
       {kProtoHopByHop, kProtoDestination, kProtoRouting, kProtoAh, kProtoDestination}},
  };
  return variants;
}

// Every tag stack × every network layer × TCP, UDP and ICMP: none of them fragments.
std::vector<Frame> unfragmented_ip_frames() {
  std::vector<Frame> frames;
  for (const auto& tags : tag_stacks()) {
    for (const NetworkVariant& variant : network_variants()) {
      for (Transport transport : {Transport::kTcp, Transport::kUdp, Transport::kIcmp}) {
        FrameSpec spec;
        spec.tags = tags;
        spec.network = variant.network;
        spec.ipv4_option_bytes = variant.ipv4_option_bytes;
        spec.ipv6_extensions = variant.ipv6_extensions;
        spec.transport = transport;
        frames.push_back(build(spec));
      }
    }
    FrameSpec with_tcp_options;  // timestamps-sized options
    with_tcp_options.tags = tags;
    with_tcp_options.tcp_option_bytes = 12;
    frames.push_back(build(with_tcp_options));
  }
  return frames;
}

std::vector<Frame> fragment_frames() {
  std::vector<Frame> frames;
  for (uint16_t field : {0x2000, 0x0010, 0x2010, 0x1fff}) {  // MF; offset; both; largest offset
    FrameSpec spec;
    spec.ipv4_fragment_field = field;
    frames.push_back(build(spec));
  }
  for (const std::vector<uint8_t>& extensions :
       std::vector<std::vector<uint8_t>>{{kProtoFragment}, {kProtoHopByHop, kProtoFragment}}) {
    for (uint16_t field : {0x0001, 0x0008, 0x0000}) {  // M; offset 1; an atomic fragment
      FrameSpec spec;
      spec.network = Network::kIpv6;
      spec.ipv6_extensions = extensions;
      spec.ipv6_fragment_field = field;
      spec.transport = Transport::kUdp;
      frames.push_back(build(spec));
    }
  }
  return frames;
}

std::vector<Frame> non_ip_frames() {
  std::vector<Frame> frames;
  for (const auto& tags : tag_stacks()) {
    for (Network network : {Network::kArp, Network::kOther}) {
      FrameSpec spec;
      spec.tags = tags;
      spec.network = network;
      frames.push_back(build(spec));
    }
  }
  return frames;
}

std::vector<Frame> all_frames() {
  std::vector<Frame> frames = unfragmented_ip_frames();
  for (Frame& frame : fragment_frames()) frames.push_back(std::move(frame));
  for (Frame& frame : non_ip_frames()) frames.push_back(std::move(frame));
  return frames;
}

// ---- checks ----------------------------------------------------------------------------------

// What the classifier reported, as text: a reason name or "not malformed".
std::string_view verdict(const Classification& result) {
  return result.malformed ? counter_name(result.reason) : std::string_view{"not malformed"};
}

std::string describe(const PacketInfo& info) {
  std::ostringstream out;
  out << "vlans=" << int{info.vlan_count};
  for (int i = 0; i < 2; ++i) out << "/" << info.vlan_tpid[i] << ":" << info.vlan_tci[i];
  out << " ether_type=" << info.ether_type << " l3_offset=" << info.l3_offset
      << " l3=" << int{static_cast<uint8_t>(info.l3)}
      << " l4=" << int{static_cast<uint8_t>(info.l4)} << " fragment=" << info.fragment
      << " l4_protocol=" << int{info.l4_protocol} << " l4_offset=" << info.l4_offset
      << " l3_end=" << info.l3_end << " payload=" << info.payload_offset << "+"
      << info.payload_length << " src=";
  for (uint8_t byte : info.src) out << int{byte} << ".";
  out << " dst=";
  for (uint8_t byte : info.dst) out << int{byte} << ".";
  out << " ports=" << info.src_port << ">" << info.dst_port << " seq=" << info.seq
      << " ack=" << info.ack << " flags=" << int{info.tcp_flags} << " window=" << info.tcp_window;
  return out.str();
}

Classification classify_bytes(const Bytes& bytes) {
  return classify(bytes);
}

// A heap copy of exactly the first `length` bytes, so ASan catches a read of the next one.
Bytes prefix(const Bytes& bytes, std::size_t length) {
  return Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(length));
}

L4 expected_l4(const Frame& frame) {
  if (frame.fragment) return L4::kOther;
  switch (frame.spec.transport) {
    case Transport::kTcp:
      return L4::kTcp;
    case Transport::kUdp:
      return L4::kUdp;
    case Transport::kIcmp:
      break;
  }
  return is_ipv6(frame.spec) ? L4::kIcmpv6 : L4::kIcmp;
}

void expect_vlans(const Frame& frame, const PacketInfo& info) {
  ASSERT_EQ(info.vlan_count, frame.spec.tags.size());
  for (std::size_t i = 0; i < frame.spec.tags.size(); ++i) {
    EXPECT_EQ(info.vlan_tpid[i], frame.spec.tags[i].tpid) << "tag " << i;
    EXPECT_EQ(info.vlan_tci[i], frame.spec.tags[i].tci) << "tag " << i;
  }
  EXPECT_EQ(info.ether_type, ether_type_of(frame.spec));
  EXPECT_EQ(info.l3_offset, frame.l3_offset);
}

void expect_ip_fields(const Frame& frame, const Classification& result) {
  ASSERT_EQ(verdict(result), "not malformed");
  const PacketInfo& info = result.info;
  expect_vlans(frame, info);
  const bool ipv6 = is_ipv6(frame.spec);
  EXPECT_EQ(info.l3, ipv6 ? L3::kIpv6 : L3::kIpv4);
  EXPECT_EQ(info.is_ipv4(), !ipv6);
  EXPECT_EQ(info.src, ipv6 ? kClientV6 : kClientV4);
  EXPECT_EQ(info.dst, ipv6 ? kServerV6 : kServerV4);
  EXPECT_EQ(info.l3_end, frame.l3_end) << "Ethernet padding is not part of the datagram";
  EXPECT_EQ(info.fragment, frame.fragment);
  EXPECT_EQ(info.l4_protocol, frame.l4_protocol);
  EXPECT_EQ(info.l4_offset, frame.l4_offset);
  EXPECT_EQ(info.l4, expected_l4(frame));
  if (frame.fragment) return;
  if (frame.spec.transport == Transport::kIcmp) return;
  EXPECT_EQ(info.src_port, kClientPort);
  EXPECT_EQ(info.dst_port, kServerPort);
  EXPECT_EQ(info.payload_offset, frame.l4_offset + frame.l4_header_length);
  EXPECT_EQ(info.payload_length, frame.spec.payload.size());
  if (frame.spec.transport != Transport::kTcp) return;
  EXPECT_TRUE(info.is_tcp());
  EXPECT_EQ(info.seq, kSeq);
  EXPECT_EQ(info.ack, kAck);
  EXPECT_EQ(info.tcp_flags, kFlags);
  EXPECT_EQ(info.tcp_window, kWindow);
}

// The reason the classifier must give for the first `length` bytes of `frame`, or nullopt when
// that prefix still holds the whole datagram (only padding was cut) and must parse like the frame.
std::optional<Counter> expected_truncation_reason(const Frame& frame, std::size_t length) {
  if (length < kEthernetHeader) return Counter::drop_truncated_ethernet;
  if (length < frame.l3_offset) return Counter::drop_truncated_vlan;
  switch (frame.spec.network) {
    case Network::kIpv4:
      if (length < frame.l3_offset + frame.l3_header_length) return Counter::drop_truncated_ipv4;
      if (length < frame.l3_end) return Counter::drop_bad_ipv4_length;
      break;
    case Network::kIpv6:
      if (length < frame.l3_end) return Counter::drop_truncated_ipv6;
      break;
    case Network::kArp:
      if (length < frame.l3_end) return Counter::drop_truncated_arp;
      break;
    case Network::kOther:
      break;
  }
  return std::nullopt;
}

// ---- classification of well-formed frames ---------------------------------------------------

TEST(Classify, ExtractsEveryFieldForEveryTagNetworkAndTransportCombination) {
  const std::vector<Frame> frames = unfragmented_ip_frames();
  ASSERT_EQ(frames.size(), tag_stacks().size() * (network_variants().size() * 3 + 1));
  for (const Frame& frame : frames) {
    SCOPED_TRACE(frame.description);
    expect_ip_fields(frame, classify_bytes(frame.bytes));
  }
}

TEST(Classify, L3EndExcludesEthernetPadding) {
  FrameSpec spec;
  spec.transport = Transport::kUdp;
  const Frame frame = build(spec);  // 14 + 20 + 8 + 5 = 47 bytes, padded to 60
  ASSERT_EQ(frame.bytes.size(), kMinimumFrame);
  const Classification result = classify_bytes(frame.bytes);
  ASSERT_EQ(verdict(result), "not malformed");
  EXPECT_EQ(result.info.l3_end, 47);
  EXPECT_EQ(result.info.payload_offset, 42);
  EXPECT_EQ(result.info.payload_length, 5);
}

TEST(Classify, Ipv6PayloadLengthBoundsTheDatagramNotTheFrame) {
  FrameSpec spec;
  spec.network = Network::kIpv6;
  spec.transport = Transport::kTcp;
  Frame frame = build(spec);
  frame.bytes.resize(frame.bytes.size() + 30, kPadding);  // trailing bytes after the datagram
  const Classification result = classify_bytes(frame.bytes);
  expect_ip_fields(frame, result);
}

TEST(Classify, ArpIsNotMalformedAndCarriesTheProtocolAddresses) {
  for (const auto& tags : tag_stacks()) {
    FrameSpec spec;
    spec.tags = tags;
    spec.network = Network::kArp;
    const Frame frame = build(spec);
    SCOPED_TRACE(frame.description);
    const Classification result = classify_bytes(frame.bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    expect_vlans(frame, result.info);
    EXPECT_EQ(result.info.l3, L3::kArp);
    EXPECT_EQ(result.info.l4, L4::kNone);
    EXPECT_EQ(result.info.l3_end, frame.l3_offset + 28);
    EXPECT_EQ(result.info.src, kClientV4);  // sender protocol address
    EXPECT_EQ(result.info.dst, kServerV4);  // target protocol address
  }
}

TEST(Classify, UnknownEtherTypeIsNotMalformedAndHasNoL3) {
  for (const auto& tags : tag_stacks()) {
    FrameSpec spec;
    spec.tags = tags;
    spec.network = Network::kOther;
    const Frame frame = build(spec);
    SCOPED_TRACE(frame.description);
    const Classification result = classify_bytes(frame.bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    expect_vlans(frame, result.info);
    EXPECT_EQ(result.info.l3, L3::kNone);
    EXPECT_EQ(result.info.l4, L4::kNone);
  }
}

TEST(Classify, OtherIpProtocolsAreNotMalformedAndNotParsed) {
  struct Case {
    Network network;
    uint8_t protocol;
  };
  for (const Case& c : {Case{Network::kIpv4, kProtoGre}, Case{Network::kIpv4, kProtoEsp},
                        Case{Network::kIpv6, kProtoGre}, Case{Network::kIpv6, kProtoEsp}}) {
    FrameSpec spec;
    spec.network = c.network;
    spec.transport = Transport::kUdp;
    Frame frame = build(spec);
    SCOPED_TRACE(frame.description + " protocol " + std::to_string(c.protocol));
    Bytes& bytes = frame.bytes;
    if (c.network == Network::kIpv4) {
      bytes[frame.l3_offset + 9] = c.protocol;
      frame = with_datagram_end(frame, frame.l4_offset + 3);  // too short for any UDP header
    } else {
      bytes[frame.l3_offset + 6] = c.protocol;
      frame = with_datagram_end(frame, frame.l4_offset + 3);
    }
    const Classification result = classify_bytes(frame.bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    EXPECT_EQ(result.info.l4, L4::kOther);
    EXPECT_EQ(result.info.l4_protocol, c.protocol);
    EXPECT_EQ(result.info.l4_offset, frame.l4_offset);
    EXPECT_EQ(result.info.l3_end, frame.l4_offset + 3);
  }
}

TEST(Classify, Ipv6NoNextHeaderEndsTheChainWithoutTransport) {
  for (const std::vector<uint8_t>& extensions :
       std::vector<std::vector<uint8_t>>{{}, {kProtoDestination}}) {
    FrameSpec spec;
    spec.network = Network::kIpv6;
    spec.ipv6_extensions = extensions;
    spec.transport = Transport::kUdp;
    Frame frame = build(spec);
    SCOPED_TRACE(frame.description);
    if (extensions.empty()) {
      frame.bytes[frame.l3_offset + 6] = kProtoNoNext;
    } else {
      frame.bytes[frame.l3_offset + 40] = kProtoNoNext;
    }
    const Classification result = classify_bytes(frame.bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    EXPECT_EQ(result.info.l3, L3::kIpv6);
    EXPECT_EQ(result.info.l4, L4::kNone);
    EXPECT_EQ(result.info.l4_protocol, kProtoNoNext);
  }
}

TEST(Classify, Ipv6EmptyPayloadWithNoNextHeaderIsNotMalformed) {
  FrameSpec spec;
  spec.network = Network::kIpv6;
  Frame frame = build(spec);
  frame = with_datagram_end(frame, frame.l3_offset + 40);
  frame.bytes[frame.l3_offset + 6] = kProtoNoNext;
  const Classification result = classify_bytes(frame.bytes);
  ASSERT_EQ(verdict(result), "not malformed");
  EXPECT_EQ(result.info.l3_end, frame.l3_offset + 40);
  EXPECT_EQ(result.info.l4, L4::kNone);
}

TEST(Classify, AcceptsEightIpv6ExtensionHeaders) {
  FrameSpec spec;
  spec.network = Network::kIpv6;
  spec.ipv6_extensions.assign(8, kProtoDestination);
  const Frame frame = build(spec);
  expect_ip_fields(frame, classify_bytes(frame.bytes));
}

TEST(Classify, TcpPayloadMayBeEmpty) {
  FrameSpec spec;
  spec.payload.clear();
  const Frame frame = build(spec);
  const Classification result = classify_bytes(frame.bytes);
  expect_ip_fields(frame, result);
  EXPECT_EQ(result.info.payload_length, 0);
}

// ---- TCP options (read as Linux's tcp_parse_options reads them) -------------------------------

Classification classify_with_tcp_options(const Bytes& options) {
  FrameSpec spec;
  spec.tcp_option_bytes = (options.size() + 3) / 4 * 4;
  spec.tcp_options = options;
  const Frame frame = build(spec);
  return classify_bytes(frame.bytes);
}

TEST(Classify, ReadsTheTimestampOption) {
  const Classification result =
      classify_with_tcp_options({1, 1, 8, 10, 0x01, 0x02, 0x03, 0x04, 0xfe, 0xdc, 0xba, 0x98});
  ASSERT_FALSE(result.malformed);
  EXPECT_TRUE(result.info.tcp_timestamp);
  EXPECT_EQ(result.info.tcp_tsval, 0x01020304u);
  EXPECT_EQ(result.info.tcp_tsecr, 0xfedcba98u);
  EXPECT_FALSE(result.info.tcp_signature);
  EXPECT_EQ(result.info.payload_length, 5);
}

TEST(Classify, MarksMd5AndAoSignatureOptionsOfAnyLength) {
  Bytes md5 = {19, 18};
  md5.resize(18, 0x11);
  EXPECT_TRUE(classify_with_tcp_options(md5).info.tcp_signature);
  EXPECT_TRUE(classify_with_tcp_options({1, 19, 4, 0, 0}).info.tcp_signature);  // Linux: not MD5
  EXPECT_TRUE(classify_with_tcp_options({29, 8, 1, 2, 0, 0, 0, 0}).info.tcp_signature);
  EXPECT_FALSE(classify_with_tcp_options({2, 4, 0x05, 0xb4}).info.tcp_signature);  // MSS
}

TEST(Classify, StopsReadingOptionsWhereLinuxStops) {
  // After an end-of-list, a length below 2 or a length past the header, Linux reads nothing
  // more, so neither does Sluice: the options there are not the segment's.
  EXPECT_FALSE(classify_with_tcp_options({0, 19, 4, 0}).info.tcp_signature);
  EXPECT_FALSE(classify_with_tcp_options({3, 1, 19, 4}).info.tcp_signature);
  EXPECT_FALSE(classify_with_tcp_options({3, 9, 19, 4, 0, 0, 0, 0}).info.tcp_signature);
  const Classification timestamp_cut = classify_with_tcp_options({1, 1, 8, 10, 0, 0, 0, 1});
  ASSERT_FALSE(timestamp_cut.malformed);
  EXPECT_FALSE(timestamp_cut.info.tcp_timestamp);
  // A timestamp of another length is not one (TCPOLEN_TIMESTAMP is 10).
  EXPECT_FALSE(classify_with_tcp_options({8, 6, 0, 0, 0, 1}).info.tcp_timestamp);
}

// ---- fragments -------------------------------------------------------------------------------

TEST(Classify, MarksEveryIpFragmentWithoutParsingItsTransport) {
  for (const Frame& frame : fragment_frames()) {
    SCOPED_TRACE(frame.description);
    ASSERT_TRUE(frame.fragment);
    expect_ip_fields(frame, classify_bytes(frame.bytes));
  }
}

TEST(Classify, Ipv4DontFragmentAloneIsNotAFragment) {
  FrameSpec spec;
  spec.ipv4_fragment_field = 0x4000;  // DF
  const Frame frame = build(spec);
  ASSERT_FALSE(frame.fragment);
  expect_ip_fields(frame, classify_bytes(frame.bytes));
}

TEST(Classify, FragmentTooShortForItsTransportHeaderIsNotMalformed) {
  // A later fragment carries bytes from the middle of the datagram: nothing to parse as TCP.
  for (Frame frame : fragment_frames()) {
    SCOPED_TRACE(frame.description);
    frame = with_datagram_end(frame, frame.l4_offset + 3);
    const Classification result = classify_bytes(frame.bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    EXPECT_TRUE(result.info.fragment);
    EXPECT_EQ(result.info.l4, L4::kOther);
    EXPECT_EQ(result.info.l3_end, frame.l4_offset + 3);
  }
}

// ---- truncation and malformed headers --------------------------------------------------------

TEST(Classify, EveryPrefixOfEveryFrameIsMalformedForItsLayerOrParsesLikeTheWholeFrame) {
  for (const Frame& frame : all_frames()) {
    SCOPED_TRACE(frame.description);
    const Classification whole = classify_bytes(frame.bytes);
    ASSERT_EQ(verdict(whole), "not malformed");
    for (std::size_t length = 0; length < frame.bytes.size(); ++length) {
      const Bytes bytes = prefix(frame.bytes, length);
      const Classification result = classify_bytes(bytes);
      if (const std::optional<Counter> reason = expected_truncation_reason(frame, length)) {
        EXPECT_EQ(verdict(result), counter_name(*reason)) << "prefix of " << length << " bytes";
      } else {
        ASSERT_EQ(verdict(result), "not malformed") << "prefix of " << length << " bytes";
        EXPECT_EQ(describe(result.info), describe(whole.info)) << "prefix of " << length;
        // Only padding was cut: the checksums still hold, and reading them stays in bounds.
        EXPECT_TRUE(ipv4_header_checksum_ok(bytes, result.info)) << "prefix of " << length;
        EXPECT_TRUE(l4_checksum_ok(bytes, result.info)) << "prefix of " << length;
      }
    }
    if (HasFailure()) return;  // one frame's failures are enough to read
  }
}

TEST(Classify, FramesShorterThanAnEthernetHeaderAreTruncatedEthernet) {
  const Frame frame = build(FrameSpec{});
  for (std::size_t length = 0; length < kEthernetHeader; ++length) {
    EXPECT_EQ(verdict(classify_bytes(prefix(frame.bytes, length))),
              counter_name(Counter::drop_truncated_ethernet))
        << length;
  }
}

TEST(Classify, RejectsThreeVlanTags) {
  for (const std::vector<VlanTag>& tags : std::vector<std::vector<VlanTag>>{
           {{kTpid8021Q, 1}, {kTpid8021Q, 2}, {kTpid8021Q, 3}},
           {{kTpid8021ad, 1}, {kTpid8021Q, 2}, {kTpid8021Q, 3}},
           {{kTpidLegacyQinQ, 1}, {kTpid8021ad, 2}, {kTpid8021Q, 3}},
       }) {
    FrameSpec spec;
    spec.tags = tags;
    const Frame frame = build(spec);
    SCOPED_TRACE(frame.description);
    EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_too_many_vlan_tags));
  }
}

TEST(Classify, RejectsIpv4HeaderLengthBelowFiveWords) {
  for (uint8_t ihl = 0; ihl < 5; ++ihl) {
    Frame frame = build(FrameSpec{});
    frame.bytes[frame.l3_offset] = static_cast<uint8_t>(0x40 | ihl);
    EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_bad_ipv4_header))
        << "IHL " << int{ihl};
  }
}

TEST(Classify, RejectsIpv4VersionOtherThanFour) {
  for (uint8_t version : {0, 5, 6, 15}) {
    Frame frame = build(FrameSpec{});
    frame.bytes[frame.l3_offset] = static_cast<uint8_t>(version << 4 | 5);
    EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_bad_ipv4_header))
        << "version " << int{version};
  }
}

TEST(Classify, RejectsIpv4OptionsRunningPastTheFrame) {
  const Frame frame = build(FrameSpec{});
  Bytes bytes = prefix(frame.bytes, frame.l3_offset + 24);
  bytes[frame.l3_offset] = 0x4f;  // a 60-byte header in a 24-byte remainder
  EXPECT_EQ(verdict(classify_bytes(bytes)), counter_name(Counter::drop_truncated_ipv4));
}

TEST(Classify, RejectsIpv4TotalLengthBeyondTheFrameOrShorterThanTheHeader) {
  const Frame frame = build(FrameSpec{});
  const std::size_t available = frame.bytes.size() - frame.l3_offset;
  for (std::size_t total : {available + 1, std::size_t{0xffff}, std::size_t{19}, std::size_t{0}}) {
    Frame bad = frame;
    store16(bad.bytes, bad.l3_offset + 2, static_cast<uint16_t>(total));
    EXPECT_EQ(verdict(classify_bytes(bad.bytes)), counter_name(Counter::drop_bad_ipv4_length))
        << "total length " << total;
  }
}

TEST(Classify, Ipv4TotalLengthEqualToTheHeaderHasNoTransportToParse) {
  // A datagram of only an IPv4 header claiming TCP: the TCP header is missing.
  Frame frame = with_datagram_end(build(FrameSpec{}), kEthernetHeader + 20);
  EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_truncated_tcp));
}

TEST(Classify, RejectsTcpDataOffsetBelowFiveWords) {
  for (uint8_t data_offset = 0; data_offset < 5; ++data_offset) {
    Frame frame = build(FrameSpec{});
    frame.bytes[frame.l4_offset + 12] = static_cast<uint8_t>(data_offset << 4);
    EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_bad_tcp_header))
        << "data offset " << int{data_offset};
  }
}

TEST(Classify, RejectsTcpDataOffsetBeyondTheDatagram) {
  for (const Network network : {Network::kIpv4, Network::kIpv6}) {
    FrameSpec spec;
    spec.network = network;
    Frame frame = build(spec);  // 20-byte header and 5 payload bytes: 25 bytes of TCP
    SCOPED_TRACE(frame.description);
    for (uint8_t data_offset = 7; data_offset < 16; ++data_offset) {
      frame.bytes[frame.l4_offset + 12] = static_cast<uint8_t>(data_offset << 4);
      EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_bad_tcp_header))
          << "data offset " << int{data_offset};
    }
    frame.bytes[frame.l4_offset + 12] = 6 << 4;  // 24 bytes: fits, one payload byte left
    const Classification result = classify_bytes(frame.bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    EXPECT_EQ(result.info.payload_offset, frame.l4_offset + 24);
    EXPECT_EQ(result.info.payload_length, 1);
  }
}

// A datagram whose IP length ends inside its transport header: the IP layer is consistent, the
// transport is cut. Ends after the header are valid with a shorter payload.
TEST(Classify, DatagramEndingInsideTheTransportHeaderIsMalformedForThatTransport) {
  struct Case {
    Transport transport;
    std::size_t tcp_option_bytes;
    Counter short_reason;  // fewer bytes than the fixed header
  };
  const Case cases[] = {
      {Transport::kTcp, 0, Counter::drop_truncated_tcp},
      {Transport::kTcp, 12, Counter::drop_truncated_tcp},
      {Transport::kUdp, 0, Counter::drop_truncated_udp},
      {Transport::kIcmp, 0, Counter::drop_truncated_icmp},
  };
  for (const Case& c : cases) {
    for (const std::vector<uint8_t>& extensions :
         std::vector<std::vector<uint8_t>>{{}, {kProtoDestination}}) {
      for (const Network network : {Network::kIpv4, Network::kIpv6}) {
        if (network == Network::kIpv4 && !extensions.empty()) continue;
        FrameSpec spec;
        spec.network = network;
        spec.ipv6_extensions = extensions;
        spec.transport = c.transport;
        spec.tcp_option_bytes = c.tcp_option_bytes;
        const Frame frame = build(spec);
        SCOPED_TRACE(frame.description);
        const std::size_t fixed_header = c.transport == Transport::kTcp ? 20 : 8;
        for (std::size_t kept = 0; kept <= frame.l3_end - frame.l4_offset; ++kept) {
          const Frame cut = with_datagram_end(frame, frame.l4_offset + kept);
          const Classification result = classify_bytes(cut.bytes);
          if (network == Network::kIpv6 && cut.l3_end == cut.l3_offset + 40) {
            // A zero payload length announces a jumbogram (RFC 2675), never on Ethernet.
            EXPECT_EQ(verdict(result), counter_name(Counter::drop_bad_ipv6_header));
          } else if (kept < fixed_header) {
            EXPECT_EQ(verdict(result), counter_name(c.short_reason)) << kept << " bytes kept";
          } else if (kept < frame.l4_header_length) {
            EXPECT_EQ(verdict(result), counter_name(Counter::drop_bad_tcp_header))
                << kept << " bytes kept";
          } else {
            ASSERT_EQ(verdict(result), "not malformed") << kept << " bytes kept";
            EXPECT_EQ(result.info.l3_end, cut.l3_end);
            if (c.transport != Transport::kIcmp) {
              EXPECT_EQ(result.info.payload_length, kept - frame.l4_header_length);
            }
          }
        }
      }
    }
  }
}

TEST(Classify, DatagramEndingInsideAnIpv6ExtensionHeaderIsABadExtension) {
  for (const uint8_t extension :
       {kProtoHopByHop, kProtoRouting, kProtoDestination, kProtoAh, kProtoFragment}) {
    FrameSpec spec;
    spec.network = Network::kIpv6;
    spec.ipv6_extensions = {extension};
    const Frame frame = build(spec);
    SCOPED_TRACE(frame.description);
    const std::size_t start = frame.l3_offset + 40;
    const std::size_t length =
        ipv6_extension(extension, kProtoTcp, spec.ipv6_fragment_field).size();
    // From one byte (zero would be a jumbogram) to one short of the whole extension header.
    for (std::size_t kept = 1; kept < length; ++kept) {
      const Frame cut = with_datagram_end(frame, start + kept);
      EXPECT_EQ(verdict(classify_bytes(cut.bytes)), counter_name(Counter::drop_bad_ipv6_extension))
          << kept << " bytes of the extension header kept";
    }
  }
}

TEST(Classify, RejectsIpv6ExtensionLengthRunningPastTheDatagram) {
  for (const uint8_t extension : {kProtoHopByHop, kProtoRouting, kProtoDestination, kProtoAh}) {
    FrameSpec spec;
    spec.network = Network::kIpv6;
    spec.ipv6_extensions = {extension};
    Frame frame = build(spec);
    SCOPED_TRACE(frame.description);
    frame.bytes[frame.l3_offset + 41] = 0xff;
    EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_bad_ipv6_extension));
  }
}

TEST(Classify, RejectsMoreThanEightIpv6ExtensionHeaders) {
  FrameSpec spec;
  spec.network = Network::kIpv6;
  spec.ipv6_extensions.assign(9, kProtoDestination);
  const Frame frame = build(spec);
  EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_bad_ipv6_extension));
}

TEST(Classify, RejectsIpv6PayloadLengthBeyondTheFrame) {
  FrameSpec spec;
  spec.network = Network::kIpv6;
  Frame frame = build(spec);
  store16(frame.bytes, frame.l3_offset + 4,
          static_cast<uint16_t>(frame.bytes.size() - frame.l3_offset - 40 + 1));
  EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_truncated_ipv6));
}

TEST(Classify, RejectsIpv6JumbogramPayloadLength) {
  FrameSpec spec;
  spec.network = Network::kIpv6;
  Frame frame = build(spec);
  store16(frame.bytes, frame.l3_offset + 4, 0);  // RFC 2675: never carried by Ethernet
  EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_bad_ipv6_header));
}

TEST(Classify, RejectsIpv6VersionOtherThanSix) {
  FrameSpec spec;
  spec.network = Network::kIpv6;
  Frame frame = build(spec);
  frame.bytes[frame.l3_offset] = 0x40;
  EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_bad_ipv6_header));
}

TEST(Classify, RejectsArpWhoseAddressLengthsRunPastTheFrame) {
  FrameSpec spec;
  spec.network = Network::kArp;
  Frame frame = build(spec);  // 28-byte message padded to 46 bytes after the Ethernet header
  frame.bytes[frame.l3_offset + 4] = 16;  // 8 + 2 × (16 + 4) = 48 > 46
  EXPECT_EQ(verdict(classify_bytes(frame.bytes)), counter_name(Counter::drop_truncated_arp));
  frame.bytes[frame.l3_offset + 4] = 15;  // 8 + 2 × (15 + 4) = 46: fits in the padding
  EXPECT_EQ(verdict(classify_bytes(frame.bytes)), "not malformed");
}

// Offsets in PacketInfo are 16 bits; a frame longer than that (a pcap record can be) must not
// make them wrap.
TEST(Classify, FrameLongerThan65535BytesDoesNotWrapOffsets) {
  for (const Network network : {Network::kIpv4, Network::kIpv6}) {
    FrameSpec spec;
    spec.network = network;
    spec.tags = {{kTpid8021ad, 1}, {kTpid8021Q, 2}};
    spec.payload.assign(65535 - 20 - 40, 'x');  // the largest datagram either family allows
    Frame frame = build(spec);
    if (network == Network::kIpv4) {
      frame = with_datagram_end(frame, frame.l3_offset + 65535);
    }
    frame.bytes.resize(frame.bytes.size() + 64, kPadding);
    SCOPED_TRACE(frame.description);
    ASSERT_GT(frame.bytes.size(), 65535u);
    const Classification result = classify_bytes(frame.bytes);
    if (result.malformed) continue;  // refusing such a frame is fine
    const PacketInfo& info = result.info;
    ASSERT_LE(info.l4_offset, info.l3_end);
    ASSERT_LE(info.l3_end, frame.bytes.size());
    ASSERT_LE(std::size_t{info.payload_offset} + info.payload_length, info.l3_end);
    EXPECT_TRUE(ipv4_header_checksum_ok(frame.bytes, info));
    l4_checksum_ok(frame.bytes, info);  // must stay within the frame
  }
}

// ---- checksums -------------------------------------------------------------------------------

TEST(Checksum, WellFormedFramesPassBothChecks) {
  for (const Frame& frame : all_frames()) {
    SCOPED_TRACE(frame.description);
    const Classification result = classify_bytes(frame.bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    EXPECT_TRUE(ipv4_header_checksum_ok(frame.bytes, result.info));
    EXPECT_TRUE(l4_checksum_ok(frame.bytes, result.info));
  }
}

TEST(Checksum, FlippingAnyIpv4HeaderByteFailsTheHeaderCheck) {
  for (const Frame& frame : all_frames()) {
    if (frame.spec.network != Network::kIpv4) continue;
    SCOPED_TRACE(frame.description);
    const Classification result = classify_bytes(frame.bytes);
    for (std::size_t at = frame.l3_offset; at < frame.l3_offset + frame.l3_header_length; ++at) {
      Bytes bytes = frame.bytes;
      bytes[at] ^= 0xff;
      // Checked against the original classification: the sum covers every header byte.
      EXPECT_FALSE(ipv4_header_checksum_ok(bytes, result.info)) << "byte " << at;
    }
  }
}

TEST(Checksum, FlippingAnyTcpOrUdpByteFailsTheTransportCheck) {
  for (const Frame& frame : all_frames()) {
    if (frame.fragment) continue;
    if (frame.spec.transport == Transport::kIcmp) continue;
    if (frame.spec.network != Network::kIpv4 && frame.spec.network != Network::kIpv6) continue;
    SCOPED_TRACE(frame.description);
    const Classification result = classify_bytes(frame.bytes);
    const bool udp_over_ipv4 =
        frame.spec.transport == Transport::kUdp && frame.spec.network == Network::kIpv4;
    for (std::size_t at = frame.l4_offset; at < frame.l3_end; ++at) {
      Bytes bytes = frame.bytes;
      bytes[at] ^= 0xff;
      const bool checksum_now_omitted = udp_over_ipv4 && load16(bytes, frame.l4_offset + 6) == 0;
      EXPECT_EQ(l4_checksum_ok(bytes, result.info), checksum_now_omitted) << "byte " << at;
    }
  }
}

TEST(Checksum, FlippingAnIpv6AddressByteFailsTheTransportCheck) {
  // The pseudo-header binds the transport checksum to the addresses.
  for (const Transport transport : {Transport::kTcp, Transport::kUdp}) {
    FrameSpec spec;
    spec.network = Network::kIpv6;
    spec.transport = transport;
    const Frame frame = build(spec);
    Bytes bytes = frame.bytes;
    bytes[frame.l3_offset + 8 + 15] ^= 0x01;
    const Classification result = classify_bytes(bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    EXPECT_FALSE(l4_checksum_ok(bytes, result.info));
  }
}

TEST(Checksum, UdpOverIpv4WithZeroChecksumIsAccepted) {
  FrameSpec spec;
  spec.transport = Transport::kUdp;
  Frame frame = build(spec);
  store16(frame.bytes, frame.l4_offset + 6, 0);  // "no checksum" (RFC 768)
  const Classification result = classify_bytes(frame.bytes);
  ASSERT_EQ(verdict(result), "not malformed");
  EXPECT_TRUE(l4_checksum_ok(frame.bytes, result.info));
}

TEST(Checksum, UdpOverIpv6WithZeroChecksumIsRejected) {
  // RFC 8200 §8.1: IPv6 receivers discard UDP packets with a zero checksum.
  FrameSpec spec;
  spec.network = Network::kIpv6;
  spec.transport = Transport::kUdp;
  Frame frame = build(spec);
  store16(frame.bytes, frame.l4_offset + 6, 0);
  const Classification result = classify_bytes(frame.bytes);
  ASSERT_EQ(verdict(result), "not malformed");
  EXPECT_FALSE(l4_checksum_ok(frame.bytes, result.info));
}

TEST(Checksum, Ipv4FragmentsHaveTheirHeaderCheckedButNotTheirTransport) {
  for (const Frame& frame : fragment_frames()) {
    if (frame.spec.network != Network::kIpv4) continue;
    SCOPED_TRACE(frame.description);
    Bytes bytes = frame.bytes;
    bytes[frame.l4_offset + 16] ^= 0xff;  // the TCP checksum: a fragment cannot be verified
    Classification result = classify_bytes(bytes);
    ASSERT_EQ(verdict(result), "not malformed");
    EXPECT_TRUE(l4_checksum_ok(bytes, result.info));
    EXPECT_TRUE(ipv4_header_checksum_ok(bytes, result.info));
    bytes[frame.l3_offset + 8] ^= 0xff;  // TTL
    result = classify_bytes(bytes);
    EXPECT_FALSE(ipv4_header_checksum_ok(bytes, result.info));
  }
}

TEST(Checksum, ComputedChecksumsMatchTheOnesBuiltIndependently) {
  for (const Frame& frame : all_frames()) {
    if (frame.spec.network != Network::kIpv4 && frame.spec.network != Network::kIpv6) continue;
    if (frame.fragment || frame.spec.transport == Transport::kIcmp) continue;
    SCOPED_TRACE(frame.description);
    const Classification result = classify_bytes(frame.bytes);
    const std::size_t at = frame.l4_offset + (frame.spec.transport == Transport::kTcp ? 16 : 6);
    Bytes zeroed = frame.bytes;
    store16(zeroed, at, 0);
    uint16_t computed = l4_checksum(zeroed, result.info);
    if (frame.spec.transport == Transport::kUdp && computed == 0) computed = 0xffff;
    EXPECT_EQ(computed, load16(frame.bytes, at));
    if (frame.spec.network == Network::kIpv4) {
      Bytes header(frame.bytes.begin() + static_cast<std::ptrdiff_t>(frame.l3_offset),
                   frame.bytes.begin() + static_cast<std::ptrdiff_t>(frame.l4_offset));
      const uint16_t built = load16(header, 10);
      store16(header, 10, 0);
      EXPECT_EQ(ipv4_header_checksum(header), built);
    }
  }
}

}  // namespace
}  // namespace sluice
