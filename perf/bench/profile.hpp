// A sluice-bench workload profile (perf/profiles/*.yaml): what traffic to build, and the Sluice
// config and rules to run it through. Documented field by field in perf/profiles/README.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::bench {

struct Range {
  uint32_t min = 1;
  uint32_t max = 1;
};

struct BenchProfile {
  std::string source;       // the profile file, for messages
  std::string name;         // "chat-1k"
  std::string description;  // one line
  std::string config_path;  // the Sluice config (tiers, inspect, flow table), beside the profile
  std::vector<std::string> rule_paths;  // rule files or folders, compiled at start; empty: none
  std::string corpus_dir;               // ../shared/corpus by default

  uint32_t sessions = 4096;  // TCP sessions per lap
  double lap_ms = 200;       // simulated time one lap spans: sets the offered load
  uint32_t identities = 2000;
  double zipf = 1.0;                    // exponent of the identities' popularity
  Range requests_per_session{1, 4};     // keep-alive requests of an admitted session
  uint32_t prompt_median_bytes = 1024;  // user text, drawn log-normal around the median
  double prompt_spread = 0.3;           // σ of the log-normal
  uint32_t prompt_max_bytes = 8192;
  double unknown_key_share = 0.02;      // sessions whose key no identity has (401)
  bool unknown_keys_fresh = true;       // a new unknown key every lap (a flood), or the same ones
  double over_limit_share = 0.05;       // sessions of identities in the `capped` tier (429)
  double malicious_share = 0.03;        // sessions whose prompt the rules block (403)
  double capped_identity_share = 0.05;  // identities in the `capped` tier
  uint32_t response_bytes = 600;        // the chat completion's JSON body
  double latency_ms = 5;                // simulated time from request to response
  uint32_t acks_per_session = 0;        // > 0: acks-only — no requests; pure ACKs on open flows
  uint64_t seed = 1;
};

// Throws sluice::ConfigError naming FILE:LINE:COL and the key for anything it cannot use.
BenchProfile load_profile(const std::string& path);

// `name` alone ("chat-1k") is looked up in `profiles_dir` as NAME.yaml.
std::string resolve_profile_path(const std::string& name_or_path, const std::string& profiles_dir);

}  // namespace sluice::bench
