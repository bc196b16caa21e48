// Reading the workers' counters from the main lcore: the live stats line and the summary table.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sluice/admission_metrics.hpp"
#include "sluice/counters.hpp"
#include "sluice/metrics.hpp"
#include "sluice/policy.hpp"
#include "sluice/request_recorder.hpp"

namespace sluice {

// What one worker publishes; written only by that worker.
struct alignas(64) WorkerStats {
  Counters counters;
  RequestCounts requests;
  std::atomic<uint32_t> active_flows{0};
  std::atomic<uint32_t> open_flows{0};  // half-open or established
  AdmissionMetrics admission;
  DecisionHistogram decisions;
};

// Fills the snapshot's worker parts (counters, per-worker traffic, flows, requests, tiers, the
// top identities, rule hits, decision times) from the workers' counters with relaxed loads;
// identity and tier names come from `limiters` (may be null: no names, no per-identity rows).
void collect_worker_metrics(MetricsSnapshot& snapshot,
                            const std::vector<std::unique_ptr<WorkerStats>>& workers,
                            const LimiterStore* limiters);

// "stats: client rx 1.20 kpps 3.4 Mbit/s tx … | server … | flows 12 | drops midstream=3 …"
std::string live_stats_line(const CounterSnapshot& now, const CounterSnapshot& before,
                            double seconds, uint64_t active_flows);

// The table printed at exit: every non-zero counter, then the extra gauges, one per line
// ("  name  value"), so scripts can read it.
void print_summary(std::FILE* out, const CounterSnapshot& totals,
                   const std::vector<std::pair<std::string, uint64_t>>& gauges);

// " | requests 12 admitted, 3 denied (401=1 429=2)": totals since start, denials by status.
std::string request_line(const std::array<uint64_t, kRequestReasonCount>& by_reason);

// "requests_<reason>  N" lines: requests_ok always, refusals when they happened.
std::vector<std::pair<std::string, uint64_t>> request_gauges(
    const std::array<uint64_t, kRequestReasonCount>& by_reason);

}  // namespace sluice
