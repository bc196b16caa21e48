// The live appliance: two ports (client side, server side), `workers` worker lcores each owning
// one RX and one TX queue per port and its own pipeline; the main lcore does stats, reloads and
// serves the management listeners (metrics, control socket: management.hpp).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sluice/config.hpp"
#include "sluice/policy.hpp"

namespace sluice {

struct BridgeOptions {
  double duration_s = 0;  // 0: until SIGINT/SIGTERM
  std::vector<std::string> extra_eal_args;
  PolicySource* policy = nullptr;  // required: what admission enforces
  // Set (by SIGHUP) to ask the main lcore to call `reload`, which builds the next policy off the
  // data path (throwing ConfigError when a file is bad: the running policy then stays).
  std::atomic<bool>* reload_requested = nullptr;
  std::function<std::shared_ptr<const AdmissionPolicy>()> reload;
  // Where identity and tier names for the metrics come from (may be null: none per identity).
  const LimiterStore* limiters = nullptr;
  std::string version;  // for sluice_info and the control socket's `version`
};

// Runs until stopped; returns the process exit code. Start-up problems are thrown as
// StartupError with a message naming the port or argument at fault.
int run_bridge(const Config& config, const BridgeOptions& options, std::atomic<bool>& stop);

}  // namespace sluice
