#include "sluice/packet_builder.hpp"

#include <cstring>

namespace sluice {
namespace {

constexpr uint8_t kTtl = 64;
constexpr uint16_t kIpv4DontFragment = 0x4000;

}  // namespace

std::size_t build_tcp_rst(std::span<const uint8_t> frame, const PacketInfo& info, bool reply,
                          uint32_t seq, uint32_t ack, std::span<uint8_t> out) {
  return build_tcp_segment(frame, info, reply, seq, ack, tcp_flag::kRst | tcp_flag::kAck, {}, out);
}

std::size_t build_tcp_segment(std::span<const uint8_t> frame, const PacketInfo& info, bool reply,
                              uint32_t seq, uint32_t ack, uint8_t flags,
                              std::span<const uint8_t> payload, std::span<uint8_t> out) {
  if (!info.is_tcp() || (info.l3 != L3::kIpv4 && info.l3 != L3::kIpv6)) return 0;
  const std::size_t l2 = info.l3_offset;  // Ethernet + tags, copied as they are
  const std::size_t l3 = info.is_ipv4() ? 20 : 40;
  const std::size_t length = l2 + l3 + 20 + payload.size();
  if (out.size() < length || frame.size() < l2) return 0;
  uint8_t* p = out.data();
  std::memcpy(p, frame.data(), l2);
  if (reply) {  // swap destination and source MAC
    std::memcpy(p, frame.data() + 6, 6);
    std::memcpy(p + 6, frame.data(), 6);
  }
  const IpAddress& src = reply ? info.dst : info.src;
  const IpAddress& dst = reply ? info.src : info.dst;
  uint8_t* ip = p + l2;
  std::memset(ip, 0, l3 + 20);
  const auto ip_payload = static_cast<uint16_t>(20 + payload.size());
  if (info.is_ipv4()) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(l3 + ip_payload));
    store_be16(ip + 6, kIpv4DontFragment);
    ip[8] = kTtl;
    ip[9] = 6;
    std::memcpy(ip + 12, src.data(), 4);
    std::memcpy(ip + 16, dst.data(), 4);
    store_be16(ip + 10, ipv4_header_checksum({ip, 20}));
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, ip_payload);
    ip[6] = 6;
    ip[7] = kTtl;
    std::memcpy(ip + 8, src.data(), 16);
    std::memcpy(ip + 24, dst.data(), 16);
  }
  uint8_t* tcp = ip + l3;
  store_be16(tcp, reply ? info.dst_port : info.src_port);
  store_be16(tcp + 2, reply ? info.src_port : info.dst_port);
  store_be32(tcp + 4, seq);
  store_be32(tcp + 8, ack);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  if (flags != (tcp_flag::kRst | tcp_flag::kAck)) store_be16(tcp + 14, 65535);  // a window for data
  if (!payload.empty()) std::memcpy(tcp + 20, payload.data(), payload.size());

  PacketInfo built = info;
  built.src = src;
  built.dst = dst;
  built.l4_protocol = 6;
  built.l4_offset = static_cast<uint16_t>(l2 + l3);
  built.l3_end = static_cast<uint16_t>(length);
  store_be16(tcp + 16, l4_checksum({p, length}, built));
  return length;
}

}  // namespace sluice
