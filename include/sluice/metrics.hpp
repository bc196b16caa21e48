// The numbers Sluice exposes (GET /metrics on the management listener, `sluicectl stats|top`):
// one plain snapshot gathered by the management thread from the workers' counters, and its
// Prometheus text exposition (format 0.0.4). README.md, "Operating", lists every metric.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "sluice/counters.hpp"
#include "sluice/request_reason.hpp"

namespace sluice {

// Decision time: the TSC cycles admission took to reach a verdict once the event that decides a
// request reached it — the request's head for a request refused there (key, tier, path, header
// rules), otherwise its last byte (the prompt rules' verdict, model and size checks and the
// limiters: RequestObserver::on_request_end). Parsing, decoding and the prompt scan done as the
// body streamed are not in it. One observation per request that reached admission. Written by
// one worker (plain counters, relaxed atomic_ref stores), read by the management thread.
struct DecisionHistogram {
  // Upper bounds, ns; the last bucket (+Inf) takes the rest.
  static constexpr std::array<uint64_t, 14> kBoundsNs = {
      250,    500,    1'000,   2'000,   4'000,   8'000,     16'000,
      32'000, 64'000, 128'000, 256'000, 512'000, 1'000'000, 4'000'000};

  std::array<uint64_t, kBoundsNs.size()> bound_cycles{};
  std::array<uint64_t, kBoundsNs.size() + 1> counts{};  // per bucket, not cumulative
  uint64_t sum_cycles = 0;
  uint64_t tsc_hz = 0;

  explicit DecisionHistogram(uint64_t cycles_per_second = 1'000'000'000) {
    tsc_hz = cycles_per_second;
    for (std::size_t i = 0; i < kBoundsNs.size(); ++i)
      bound_cycles[i] = static_cast<uint64_t>(static_cast<double>(kBoundsNs[i]) *
                                              static_cast<double>(cycles_per_second) / 1e9);
  }
  void record(uint64_t cycles) {
    std::size_t i = 0;
    while (i < bound_cycles.size() && cycles > bound_cycles[i]) ++i;
    add(counts[i], 1);
    add(sum_cycles, cycles);
  }
  uint64_t count(std::size_t bucket) const { return load(counts[bucket]); }
  uint64_t sum() const { return load(sum_cycles); }

 private:
  static void add(uint64_t& value, uint64_t n) {
    std::atomic_ref<uint64_t> slot(value);
    slot.store(slot.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static uint64_t load(const uint64_t& value) {
    return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(value)).load(std::memory_order_relaxed);
  }
};

inline constexpr std::size_t kTopIdentities = 10;

struct MetricsSnapshot {
  std::string version;
  double start_time_s = 0;  // Unix time
  double uptime_s = 0;
  uint32_t workers = 0;
  bool draining = false;

  CounterSnapshot counters;  // every worker's, summed
  struct Worker {
    uint64_t rx_packets = 0;  // both ports
    uint64_t tx_packets = 0;
    double rx_pps = 0;  // over the rate window
  };
  std::vector<Worker> per_worker;
  uint64_t active_flows = 0;
  uint64_t open_flows = 0;  // half-open or established (what a drain waits for)

  std::array<uint64_t, kRequestReasonCount> requests{};  // by final reason (ok: admitted)
  struct Tier {
    std::string name;
    std::array<uint64_t, kRequestReasonCount> by_reason{};
  };
  std::vector<Tier> tiers;  // [0]: requests decided without a tier (name "")
  struct Identity {
    std::string name;
    uint64_t requests = 0;
    uint64_t denials = 0;
  };
  // The top kTopIdentities by requests and the top kTopIdentities by denials (non-zero), each
  // once: at most 2 × kTopIdentities rows, most requests first.
  std::vector<Identity> top_identities;
  std::vector<std::pair<std::string, uint64_t>> rule_hits;  // every rule in force, by id
  // Graduated response: the identities with an escalation in force, soonest to expire first.
  struct Escalated {
    std::string identity;
    std::string tier;    // the tier it is demoted to; "" when suspended
    double until_s = 0;  // Unix time it expires
  };
  std::vector<Escalated> escalated;

  bool audit_enabled = false;
  uint64_t audit_written = 0;
  uint64_t audit_dropped = 0;
  uint64_t audit_lost = 0;
  uint64_t audit_write_errors = 0;

  uint64_t policy_generation = 0;
  uint64_t reloads_succeeded = 0;
  uint64_t reloads_failed = 0;
  double last_reload_success_s = 0;  // Unix time; 0: never
  double last_reload_failure_s = 0;

  struct Port {
    uint64_t imissed = 0;
    uint64_t ierrors = 0;
    uint64_t oerrors = 0;
    uint64_t rx_nombuf = 0;
  };
  std::array<Port, 2> ports{};  // client, server

  // Decision time, every worker's histogram summed.
  std::array<uint64_t, DecisionHistogram::kBoundsNs.size() + 1> decision_buckets{};
  double decision_sum_s = 0;

  // Rates over the last sampling window (about a second; 0 before the first one), for
  // `sluicectl stats|top`; Prometheus computes its own with rate().
  double rate_window_s = 0;
  std::array<double, 4> port_pps{};  // client rx, client tx, server rx, server tx
  std::array<double, 4> port_bytes_per_s{};
  double requests_per_s = 0;
};

// Sums the per-worker decision histograms into the snapshot.
void add_decision_histogram(MetricsSnapshot& snapshot, const DecisionHistogram& histogram);

// The snapshot as Prometheus text exposition format 0.0.4: every family with HELP and TYPE,
// label values escaped.
std::string render_prometheus(const MetricsSnapshot& snapshot);

// The content type that goes with it.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace sluice
