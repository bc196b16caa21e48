// The appliance configuration: loaded and validated once, immutable afterwards, shared
// read-only by every worker.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

enum class Policy : uint8_t { kPass, kDrop };

struct DataplaneConfig {
  std::string client_port = "net_af_packet0,iface=sl-client,framecnt=4096";
  std::string server_port = "net_af_packet1,iface=sl-server,framecnt=4096";
  uint32_t workers = 1;
  std::vector<std::string> eal_args = {"--no-huge", "-m", "512", "--no-pci", "--no-shconf"};
  uint32_t flow_capacity = 65536;
  uint32_t burst_size = 32;
  uint32_t rx_ring_size = 1024;
  uint32_t tx_ring_size = 1024;
  uint32_t mbufs = 0;  // 0: sized from rings, workers and bursts
  uint32_t tx_drain_us = 100;
};

struct InspectConfig {
  std::vector<uint16_t> tcp_ports = {8000};
  Policy other_traffic = Policy::kPass;
  Policy midstream = Policy::kDrop;
  Policy on_flow_table_full = Policy::kDrop;
  Policy fragments = Policy::kDrop;
  Policy bad_checksum = Policy::kDrop;
  uint32_t reassembly_bytes = 262144;  // see TcpConfig
  uint32_t reassembly_segments = 256;
  uint32_t reassembly_slots = 8192;
  double half_open_timeout_s = 30;
  double established_timeout_s = 300;
  double closing_timeout_s = 30;

  bool is_inspected_port(uint16_t port) const {
    for (uint16_t p : tcp_ports) {
      if (p == port) return true;
    }
    return false;
  }
};

// The request assembler's limits on inspected ports (the tiers' own limits come later).
struct HttpConfig {
  uint32_t max_header_bytes = 16384;
  uint32_t max_headers = 100;
  uint64_t max_body_bytes = 4u << 20;
  std::vector<std::string> methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  uint64_t max_decoded_bytes = 4u << 20;
  uint32_t max_decode_ratio = 100;
  uint32_t json_max_depth = 32;
};

struct StatsConfig {
  double interval_s = 1.0;  // live stats line period; 0 turns it off
};

struct Config {
  std::string source = "<embedded default>";  // where it was loaded from, for messages
  DataplaneConfig dataplane;
  InspectConfig inspect;
  HttpConfig http;
  StatsConfig stats;
};

// A config problem people can act on: "sluice.yaml:7:3: inspect.midstream: expected pass or
// drop, got 'allow'".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Config load_config_file(const std::string& path);
Config load_config_text(std::string_view text, const std::string& source_name);

// The configuration Sluice runs with when no --config is given: the demo topology.
std::string_view embedded_default_config();

}  // namespace sluice
