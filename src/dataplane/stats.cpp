#include "sluice/stats.hpp"

#include <map>

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

}  // namespace sluice
