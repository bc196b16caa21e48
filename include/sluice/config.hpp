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
// A segment of an inspected flow with URG set: Linux takes the byte before the urgent pointer
// out of the stream, Sluice reads it in-stream. kNormalise clears URG and the urgent pointer.
enum class UrgentPolicy : uint8_t { kNormalise, kDrop };

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
  UrgentPolicy urgent_data = UrgentPolicy::kNormalise;
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

// A trust tier: what its identities may ask, how much and how often (issue "Identity, lock-free
// rate limits per trust tier"). Loaded and validated here; admission uses it.
struct TierLimits {
  uint64_t requests_per_second = 0;
  uint64_t burst = 0;
  uint64_t tokens_per_minute = 0;
  uint64_t token_burst = 0;
  uint64_t max_concurrent = 0;
  uint64_t max_body_bytes = 0;
  uint64_t max_output_tokens = 0;
  bool operator==(const TierLimits&) const = default;
};

struct ModelLimits {
  std::string pattern;  // a glob over the request's model (`*`, `?`)
  TierLimits limits;    // the tier's limits with this entry's overrides applied
  uint8_t set = 0;      // bit i: the entry sets TierLimits field i (declaration order)
};

struct TierConfig {
  std::string name;
  TierLimits limits;
  std::vector<std::string> models = {"*"};  // globs of the models it may use
  // Path prefixes it may call: the OpenAI-compatible and Anthropic-style inference endpoints.
  std::vector<std::string> paths = {"/v1/chat/completions", "/v1/completions", "/v1/responses",
                                    "/v1/embeddings",       "/v1/messages",    "/v1/models"};
  std::vector<ModelLimits> model_limits;  // first matching pattern wins
};

// Graduated response: what happens to an identity of `tier` whose requests keep matching flag
// rules. `flags` flags within `window` (a leaky bucket: flags - 1 absorbed, refilled at that
// many per window; the flag that finds it empty escalates) demote the identity to tier `to`, or
// suspend it, for `duration`. A demoted identity meets the escalation of its new tier, so steps
// chain (verified → free → suspended).
struct EscalationConfig {
  std::string tier;
  uint64_t flags = 0;
  uint64_t window_ns = 0;
  bool suspend = false;
  std::string to;  // demote: the stricter tier
  uint64_t duration_ns = 0;
};

// Which requests' canonical prompt text the audit record carries (audit.hpp, docs/audit.md):
// none; flagged: those a rule of any action or mode matched; all: every request with a prompt.
enum class AuditCapture : uint8_t { kNone, kFlagged, kAll };

// The audit trail (audit.hpp): JSON Lines, one record per request decision.
struct AuditConfig {
  std::string path;                        // empty: no audit file (records are not kept)
  uint64_t max_file_bytes = 256ull << 20;  // then the file is rotated to PATH.1
  uint32_t keep = 8;                       // rotated files kept
  uint32_t ring_records = 8192;            // per worker ring (power of two); full → counted drop
  AuditCapture capture = AuditCapture::kNone;
  uint32_t capture_bytes = 4096;  // prompt bytes kept per request, cut on a UTF-8 boundary
  uint32_t capture_slots = 4096;  // per worker: requests holding captured text at once
};

struct StatsConfig {
  double interval_s = 1.0;  // live stats line period; 0 turns it off
};

// The management listeners (management.hpp): Prometheus metrics over HTTP, the control socket.
struct ManagementConfig {
  std::string listen = "127.0.0.1:9091";    // "": no HTTP listener
  std::string socket = "/run/sluice.sock";  // "": no control socket
};

struct Config {
  std::string source = "<embedded default>";  // where it was loaded from, for messages
  DataplaneConfig dataplane;
  InspectConfig inspect;
  HttpConfig http;
  StatsConfig stats;
  std::string identities_path;       // relative paths are taken from the config file's folder
  std::vector<TierConfig> tiers;     // in file order
  std::string unknown_key = "deny";  // "deny" (401) or the name of an anonymous tier
  AuditConfig audit;
  std::string rules_path;         // the compiled rule database (sluicectl rules compile); "": none
  bool disclose_rule_id = false;  // a 403 content_policy_violation names the rule to the client
  std::vector<EscalationConfig> escalation;  // at most one per tier

  const EscalationConfig* escalation_of(std::string_view tier_name) const {
    for (const EscalationConfig& e : escalation) {
      if (e.tier == tier_name) return &e;
    }
    return nullptr;
  }
  ManagementConfig management;

  const TierConfig* tier(std::string_view name) const {
    for (const TierConfig& t : tiers) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }
};

// A config problem people can act on: "sluice.yaml:7:3: inspect.midstream: expected pass or
// drop, got 'allow'".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Config load_config_file(const std::string& path);
Config load_config_text(std::string_view text, const std::string& source_name);

// `*` matches any run of characters, `?` one; everything else matches itself.
bool glob_match(std::string_view pattern, std::string_view text);

// The configuration Sluice runs with when no --config is given: the demo topology.
std::string_view embedded_default_config();

}  // namespace sluice
