// Frames Sluice originates itself. Built into a caller's buffer from the headers of a packet of
// the same flow, so VLAN tags and MAC addresses are the ones the flow already uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "sluice/classify.hpp"

namespace sluice {

// Network byte order stores, for building headers.
inline void store_be16(uint8_t* at, uint16_t value) {
  at[0] = static_cast<uint8_t>(value >> 8);
  at[1] = static_cast<uint8_t>(value);
}
inline void store_be32(uint8_t* at, uint32_t value) {
  store_be16(at, static_cast<uint16_t>(value >> 16));
  store_be16(at + 2, static_cast<uint16_t>(value));
}

// Enough for Ethernet + two tags + IPv6 + TCP without options.
inline constexpr std::size_t kMaxRstFrame = 14 + 8 + 40 + 20;

// A TCP segment of the flow of `info` (a classified TCP packet in `frame`) with the given flags
// and payload. `reply` false: it pretends to come from the packet's sender and goes where the
// packet was going; true: it pretends to come from the packet's receiver and goes back to its
// sender. Returns the frame length (0 if `out` is too small or the packet is not TCP over IP).
std::size_t build_tcp_segment(std::span<const uint8_t> frame, const PacketInfo& info, bool reply,
                              uint32_t seq, uint32_t ack, uint8_t flags,
                              std::span<const uint8_t> payload, std::span<uint8_t> out);

// A RST|ACK for the flow (build_tcp_segment without payload).
std::size_t build_tcp_rst(std::span<const uint8_t> frame, const PacketInfo& info, bool reply,
                          uint32_t seq, uint32_t ack, std::span<uint8_t> out);

}  // namespace sluice
