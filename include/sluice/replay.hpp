// Offline replay: the worker pipeline over a capture, in order, on one worker, with time taken
// from the packet timestamps, writing what Sluice emits toward each side. Deterministic: the
// same capture and config give byte-identical outputs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sluice/classify.hpp"
#include "sluice/config.hpp"
#include "sluice/policy.hpp"

namespace sluice {

struct Cidr {
  IpAddress address{};  // see classify.hpp: IPv4 in the first 4 bytes
  uint8_t family = 4;
  uint8_t prefix = 0;
  bool contains(const IpAddress& candidate, uint8_t candidate_family) const;
};

// "198.18.0.0/15", "2001:2::/48"; throws std::invalid_argument with the reason.
Cidr parse_cidr(const std::string& text);

// `--reload-at N[:CONFIG]`: just before packet `packet` (1-based) the policy is built again, from
// `config` (empty: the replay's own config file, re-read), and published; the admission takes it
// at that packet's burst, as a live worker takes a SIGHUP reload at its next burst.
struct ReplayReload {
  uint64_t packet = 0;
  std::string config;
};

// Builds the policy of a reload point over `running` (limiter state carries over); throws
// ConfigError (FILE:LINE:COL: …) when the files are bad, and the running policy stays.
using ReplayReloader = std::function<std::shared_ptr<const AdmissionPolicy>(
    const ReplayReload& point, const AdmissionPolicy& running)>;

// `--arrived-on N:client|server`: packet `packet` (1-based) arrived on that side, whatever the
// side rule says — a frame whose addresses claim the other direction (a forgery) can only be
// written this way, since the rule derives sides from addresses.
struct ReplayArrival {
  uint64_t packet = 0;
  bool server = false;
};

struct ReplayOptions {
  std::string input;
  std::string out_client;
  std::string out_server;
  std::vector<Cidr> server_nets;
  std::vector<ReplayArrival> arrivals;  // sides given by packet, over the side rule
  std::string prompts;  // JSON lines of what the scanner sees per request; empty: none
  std::string audit;    // the audit trail (JSON Lines), as the appliance writes it; empty: none
  std::shared_ptr<const AdmissionPolicy> policy;  // required: what admission enforces
  std::vector<ReplayReload> reloads;              // by increasing packet
  ReplayReloader reload;                          // required when `reloads` is not empty
  bool quiet = false;
};

// Returns the process exit code; problems with the files are thrown as StartupError.
int run_replay(const Config& config, const ReplayOptions& options);

}  // namespace sluice
