// A flow's two ends, as the audit trail names them. Plain values, no DPDK.
#pragma once

#include <array>
#include <cstdint>

namespace sluice {

// family is 4 or 6 (0: unknown); address in network byte order (IPv4 in the first 4 bytes);
// port in host byte order.
struct Endpoint {
  std::array<uint8_t, 16> address{};
  uint16_t port = 0;
  uint8_t family = 0;
};

struct FlowEndpoints {
  Endpoint client;  // the SYN's sender
  Endpoint server;
};

}  // namespace sluice
