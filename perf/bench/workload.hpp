// The traffic sluice-bench replays: complete TCP sessions as real Ethernet/IPv4/TCP frames,
// built once from a profile, then sent lap after lap. Each lap is the same sessions on fresh
// flows (the client port moves on by one per lap) at times `lap × lap_ns + t`, so the flow
// table, the limiters and the audit see new connections and a clock that advances; the
// identities and their keys stay, as they would on a real link.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "profile.hpp"
#include "sluice/flow_table.hpp"  // Side
#include "sluice/rules.hpp"

namespace sluice::bench {

enum class SessionKind : uint8_t {
  kOk,          // a known identity of the `standard` tier, benign prompts: admitted
  kUnknownKey,  // a key no identity has: 401 at the head
  kOverLimit,   // an identity of the `capped` tier, well over its limit: mostly 429
  kMalicious,   // a known identity, an attack prompt the rules block: 403
  kAcks,        // acks-only: an open flow carrying pure ACKs
};
inline constexpr std::size_t kSessionKinds = 5;
std::string_view to_string(SessionKind kind);  // ok, unknown_key, over_limit, malicious, acks

struct BenchRequest {
  SessionKind kind = SessionKind::kOk;
  int64_t identity = -1;  // index into the identities, -1 for an unknown key
  std::string key;        // synthetic bench keys, sent in clear as a client would
  std::string head;       // the HTTP/1.1 request head, blank line included
  std::string body;       // the chat completions JSON
  std::string canonical;  // the prompt text as Sluice's canonicaliser gives it to the scanner
};

struct Frame {
  uint32_t offset = 0;  // into Workload::bytes
  uint16_t length = 0;
  Side arrives_on = Side::kClient;  // the side it comes from: its sender's port
  bool rewrite = true;              // moves to a new client port every lap
  bool preamble = false;            // sent in the first lap only (acks-only handshakes)
  uint16_t lap_digits = 0;          // > 0: offset of 8 hex digits of the key that change every lap
  uint32_t session = 0;
  uint64_t t_ns = 0;  // within the lap
};

inline constexpr uint16_t kServerPort = 8000;
inline constexpr std::size_t kEthernet = 14, kIpv4 = 20, kTcp = 20;
inline constexpr std::size_t kHeaders = kEthernet + kIpv4 + kTcp;
inline constexpr std::size_t kMss = 1460;

struct Workload {
  std::string identities_yaml;         // the identities file: names, tiers and key digests only
  std::vector<BenchRequest> requests;  // one lap's requests, in session order
  std::vector<Frame> frames;           // one lap, sorted by time
  std::vector<uint8_t> bytes;          // every frame's bytes
  uint64_t lap_ns = 0;
  uint32_t sessions = 0;
  std::array<uint32_t, kSessionKinds> sessions_by_kind{};
  std::array<uint32_t, kSessionKinds> requests_by_kind{};
  uint32_t attack_prompts_usable = 0;  // attack prompts the rules block in tier `standard`
  std::string prompt_source;           // "corpus DIR", or generated
  uint64_t lap_packets() const;        // without the preamble
  uint64_t lap_bytes() const;
};

// Builds one lap from the profile. `rules` (may be null) picks the attack prompts the rules
// block in the `standard` tier. Prompts come from the profile's corpus; where that folder is
// missing (a checkout without ../shared), from generated word problems, and the attacks from
// `rule_sources`' match examples. Throws ConfigError when the profile cannot make the lap.
Workload build_workload(const BenchProfile& profile, const RuleDatabase* rules,
                        const std::vector<Rule>& rule_sources = {});

// The request mix as JSON Lines (perf/haproxy/compare.sh reads it): a header line with the
// profile and the tiers' request rates, then one line per request with its kind, tier, key,
// method, path and body.
std::string request_mix_jsonl(const BenchProfile& profile, const Workload& workload,
                              uint64_t standard_rps, uint64_t standard_burst, uint64_t capped_rps,
                              uint64_t capped_burst);

// The client port of every session in lap `lap` (sessions differ by client address).
uint16_t client_port_of(uint64_t lap);

// Moves a frame (its bytes at `frame`) to lap `lap`: its client port, and for a fresh unknown
// key its 8 lap digits, with the TCP checksum adjusted for both (no full recomputation).
void restamp(uint8_t* frame, const Frame& f, uint64_t lap);

// One's-complement checksum helpers for the per-lap rewrite: the new TCP checksum after the
// bytes at `offset` (from the start of the TCP header's pseudo-header-aligned stream: even
// offsets are high bytes) changed from `before` to `after` (RFC 1624, eqn. 3).
uint16_t adjust_checksum(uint16_t checksum, const uint8_t* before, const uint8_t* after,
                         std::size_t length, bool odd_offset);

}  // namespace sluice::bench
