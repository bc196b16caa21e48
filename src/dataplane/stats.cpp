#include "sluice/stats.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

#include <cinttypes>

namespace sluice {
namespace {

std::string rate(double per_second, const char* unit) {
  char text[48];
  if (per_second >= 1e6)
    std::snprintf(text, sizeof text, "%.2f M%s", per_second / 1e6, unit);
  else if (per_second >= 1e3)
    std::snprintf(text, sizeof text, "%.2f k%s", per_second / 1e3, unit);
  else
    std::snprintf(text, sizeof text, "%.0f %s", per_second, unit);
  return text;
}

std::string side(const char* name, const CounterSnapshot& now, const CounterSnapshot& before,
                 double seconds, Counter rx_packets, Counter rx_bytes, Counter tx_packets,
                 Counter tx_bytes) {
  const auto per_second = [&](Counter c) {
    return static_cast<double>(now[c] - before[c]) / seconds;
  };
  return std::string(name) + " rx " + rate(per_second(rx_packets), "pps") + " " +
         rate(per_second(rx_bytes) * 8, "bit/s") + " tx " + rate(per_second(tx_packets), "pps") +
         " " + rate(per_second(tx_bytes) * 8, "bit/s");
}

}  // namespace

std::string live_stats_line(const CounterSnapshot& now, const CounterSnapshot& before,
                            double seconds, uint64_t active_flows) {
  if (seconds <= 0) seconds = 1;
  std::string line =
      "stats: " +
      side("client", now, before, seconds, Counter::rx_client_packets, Counter::rx_client_bytes,
           Counter::tx_client_packets, Counter::tx_client_bytes) +
      " | " +
      side("server", now, before, seconds, Counter::rx_server_packets, Counter::rx_server_bytes,
           Counter::tx_server_packets, Counter::tx_server_bytes) +
      " | flows " + std::to_string(active_flows) + " | drops";
  bool any = false;
  for (std::size_t i = 0; i < kCounterCount; ++i) {
    if (kCounterKinds[i] != CounterKind::Drop || now.values[i] == 0) continue;
    std::string_view name = kCounterNames[i];
    name.remove_prefix(5);  // "drop_"
    line += " " + std::string(name) + "=" + std::to_string(now.values[i]);
    any = true;
  }
  if (!any) line += " none";
  return line;
}

std::string request_line(const std::array<uint64_t, kRequestReasonCount>& by_reason) {
  std::map<uint16_t, uint64_t> denied_by_status;
  uint64_t denied = 0;
  uint64_t cut = 0;
  for (std::size_t i = 1; i < kRequestReasonCount; ++i) {
    if (by_reason[i] == 0) continue;
    if (is_response_reason(static_cast<RequestReason>(i))) {
      cut += by_reason[i];
      continue;
    }
    denied += by_reason[i];
    denied_by_status[kRequestReasons[i].status] += by_reason[i];
  }
  std::string line = " | requests " + std::to_string(by_reason[0]) + " admitted, " +
                     std::to_string(denied) + " denied";
  if (denied > 0) {
    std::string by_status;
    for (const auto& [status, count] : denied_by_status)
      by_status +=
          (by_status.empty() ? "" : " ") + std::to_string(status) + "=" + std::to_string(count);
    line += " (" + by_status + ")";
  }
  if (cut > 0) line += ", " + std::to_string(cut) + " responses cut";
  return line;
}

std::vector<std::pair<std::string, uint64_t>> request_gauges(
    const std::array<uint64_t, kRequestReasonCount>& by_reason) {
  std::vector<std::pair<std::string, uint64_t>> gauges;
  for (std::size_t i = 0; i < kRequestReasonCount; ++i) {
    if (i != 0 && by_reason[i] == 0) continue;
    gauges.emplace_back("requests_" + std::string(kRequestReasons[i].name), by_reason[i]);
  }
  return gauges;
}

void print_summary(std::FILE* out, const CounterSnapshot& totals,
                   const std::vector<std::pair<std::string, uint64_t>>& gauges) {
  std::fprintf(out, "summary:\n");
  for (std::size_t i = 0; i < kCounterCount; ++i) {
    // Traffic totals always, drops only when they happened.
    if (kCounterKinds[i] == CounterKind::Drop && totals.values[i] == 0) continue;
    std::fprintf(out, "  %-40.*s %" PRIu64 "\n", static_cast<int>(kCounterNames[i].size()),
                 kCounterNames[i].data(), totals.values[i]);
  }
  for (const auto& [name, value] : gauges)
    std::fprintf(out, "  %-40s %" PRIu64 "\n", name.c_str(), value);
  std::fflush(out);
}

void collect_worker_metrics(MetricsSnapshot& snapshot,
                            const std::vector<std::unique_ptr<WorkerStats>>& workers,
                            const LimiterStore* limiters) {
  snapshot.workers = static_cast<uint32_t>(workers.size());
  snapshot.per_worker.resize(workers.size());
  std::unordered_map<std::string, std::size_t> rule_index;
  for (std::size_t w = 0; w < workers.size(); ++w) {
    const WorkerStats& stats = *workers[w];
    snapshot.counters.accumulate(stats.counters);
    MetricsSnapshot::Worker& worker = snapshot.per_worker[w];
    worker.rx_packets = stats.counters.get(Counter::rx_client_packets) +
                        stats.counters.get(Counter::rx_server_packets);
    worker.tx_packets = stats.counters.get(Counter::tx_client_packets) +
                        stats.counters.get(Counter::tx_server_packets);
    snapshot.active_flows += stats.active_flows.load(std::memory_order_relaxed);
    snapshot.open_flows += stats.open_flows.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < kRequestReasonCount; ++i)
      snapshot.requests[i] += stats.requests.get(i);
    add_decision_histogram(snapshot, stats.decisions);
    // Workers switch databases at their own next burst: rules are matched up by id.
    for (auto& [id, hits] : stats.admission.rule_counts()) {
      const auto [it, inserted] = rule_index.try_emplace(id, snapshot.rule_hits.size());
      if (inserted)
        snapshot.rule_hits.emplace_back(id, hits);
      else
        snapshot.rule_hits[it->second].second += hits;
    }
  }

  const std::vector<std::string> tier_names =
      limiters != nullptr ? limiters->tier_names() : std::vector<std::string>{""};
  const std::size_t tiers = std::min(tier_names.size(), AdmissionMetrics::kTierSlots);
  snapshot.tiers.resize(tiers);
  for (std::size_t t = 0; t < tiers; ++t) {
    MetricsSnapshot::Tier& tier = snapshot.tiers[t];
    tier.name = t + 1 == AdmissionMetrics::kTierSlots && tier_names.size() > tiers ? "(other)"
                                                                                   : tier_names[t];
    for (const auto& stats : workers) {
      for (std::size_t i = 0; i < kRequestReasonCount; ++i)
        tier.by_reason[i] += stats->admission.tier_requests(t, i);
    }
  }

  if (limiters == nullptr) return;
  const std::vector<std::string> names = limiters->identity_names();
  const std::size_t slots = std::min(names.size(), AdmissionMetrics::kIdentitySlots);
  std::vector<MetricsSnapshot::Identity> identities(slots);
  for (std::size_t i = 0; i < slots; ++i) {
    MetricsSnapshot::Identity& identity = identities[i];
    identity.name =
        i + 1 == AdmissionMetrics::kIdentitySlots && names.size() > slots ? "(other)" : names[i];
    for (const auto& stats : workers) {
      identity.requests += stats->admission.identity_requests(i);
      identity.denials += stats->admission.identity_denials(i);
    }
  }
  const auto top = [&identities](uint64_t MetricsSnapshot::Identity::*by) {
    std::vector<MetricsSnapshot::Identity> sorted;
    for (const MetricsSnapshot::Identity& identity : identities)
      if (identity.*by > 0) sorted.push_back(identity);
    const std::size_t n = std::min(sorted.size(), kTopIdentities);
    std::partial_sort(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(n), sorted.end(),
                      [by](const auto& a, const auto& b) {
                        return a.*by != b.*by ? a.*by > b.*by : a.name < b.name;
                      });
    sorted.resize(n);
    return sorted;
  };
  snapshot.top_identities = top(&MetricsSnapshot::Identity::requests);
  for (MetricsSnapshot::Identity& identity : top(&MetricsSnapshot::Identity::denials)) {
    const bool listed = std::any_of(
        snapshot.top_identities.begin(), snapshot.top_identities.end(),
        [&identity](const MetricsSnapshot::Identity& row) { return row.name == identity.name; });
    if (!listed) snapshot.top_identities.push_back(std::move(identity));
  }
}

}  // namespace sluice
