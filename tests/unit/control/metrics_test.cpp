// The Prometheus renderer: the text exposition format 0.0.4 (every family with HELP and TYPE
// before its samples, families contiguous, label values escaped, counters named *_total,
// cumulative histogram buckets) and the values it takes from the snapshot.
#include "sluice/metrics.hpp"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sluice {
namespace {

MetricsSnapshot example() {
  MetricsSnapshot s;
  s.version = "0.1.0";
  s.start_time_s = 1700000000.5;
  s.uptime_s = 12.25;
  s.workers = 2;
  s.counters.values[static_cast<std::size_t>(Counter::rx_client_packets)] = 10;
  s.counters.values[static_cast<std::size_t>(Counter::rx_client_bytes)] = 1000;
  s.counters.values[static_cast<std::size_t>(Counter::tx_server_packets)] = 9;
  s.counters.values[static_cast<std::size_t>(Counter::drop_midstream)] = 3;
  s.counters.values[static_cast<std::size_t>(Counter::flows_created)] = 4;
  s.counters.values[static_cast<std::size_t>(Counter::rst_sent)] = 2;
  s.per_worker = {{6, 5, 1.5}, {4, 4, 0}};
  s.active_flows = 3;
  s.open_flows = 1;
  s.requests[static_cast<std::size_t>(RequestReason::ok)] = 5;
  s.requests[static_cast<std::size_t>(RequestReason::invalid_api_key)] = 3;
  s.requests[static_cast<std::size_t>(RequestReason::completion_policy_violation)] = 1;
  MetricsSnapshot::Tier none;
  none.by_reason[static_cast<std::size_t>(RequestReason::invalid_api_key)] = 3;
  MetricsSnapshot::Tier free;
  free.name = "free";
  free.by_reason[static_cast<std::size_t>(RequestReason::ok)] = 5;
  free.by_reason[static_cast<std::size_t>(RequestReason::rate_limited_requests)] = 2;
  free.by_reason[static_cast<std::size_t>(RequestReason::completion_policy_violation)] = 1;
  s.tiers = {none, free};
  s.top_identities = {{"alice", 5, 0}, {"b\"o\\b\nx", 2, 2}};
  s.rule_hits = {{"pi.ignore-previous", 1}, {"sec.private-key.completion", 0}};
  s.audit_enabled = true;
  s.audit_written = 8;
  s.audit_dropped = 1;
  s.policy_generation = 2;
  s.reloads_succeeded = 1;
  s.reloads_failed = 1;
  s.last_reload_success_s = 1700000005;
  s.ports[1].imissed = 7;
  s.decision_buckets[0] = 2;  // ≤ 250 ns
  s.decision_buckets[3] = 1;  // ≤ 2 µs
  s.decision_buckets.back() = 1;
  s.decision_sum_s = 0.01;
  s.port_pps[0] = 2.5;
  s.draining = true;
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const std::string& l : lines_of(text))
    if (l == line) return true;
  return false;
}

TEST(PrometheusRenderer, EveryFamilyHasHelpAndTypeBeforeItsContiguousSamples) {
  const std::string text = render_prometheus(example());
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  const std::regex help(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\n\\]+)");
  const std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
  const std::regex sample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (\+Inf|-?[0-9.e+-]+))");
  std::set<std::string> finished;
  std::map<std::string, std::string> types;
  std::set<std::string> series;
  std::string current;
  bool typed = false;
  for (const std::string& line : lines_of(text)) {
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      ASSERT_FALSE(finished.contains(m[1])) << "family repeated: " << line;
      if (!current.empty()) finished.insert(current);
      current = m[1];
      typed = false;
    } else if (std::regex_match(line, m, type)) {
      ASSERT_EQ(m[1], current) << line;
      types[current] = m[2];
      typed = true;
    } else {
      ASSERT_TRUE(std::regex_match(line, m, sample)) << "not a sample line: " << line;
      ASSERT_TRUE(typed) << "sample before TYPE: " << line;
      const std::string name = m[1];
      const bool belongs =
          name == current ||
          (types[current] == "histogram" &&
           (name == current + "_bucket" || name == current + "_sum" || name == current + "_count"));
      ASSERT_TRUE(belongs) << line << " inside family " << current;
      ASSERT_TRUE(series.insert(line.substr(0, line.rfind(' '))).second) << "duplicate " << line;
    }
  }
  for (const auto& [name, kind] : types) {
    if (kind == "counter")
      EXPECT_TRUE(name.ends_with("_total")) << name;
    else
      EXPECT_FALSE(name.ends_with("_total")) << name;
  }
}

TEST(PrometheusRenderer, PortsDropsAndFlowsComeFromTheCounters) {
  const std::string text = render_prometheus(example());
  EXPECT_TRUE(has_line(text, R"(sluice_port_packets_total{port="client",direction="rx"} 10)"));
  EXPECT_TRUE(has_line(text, R"(sluice_port_bytes_total{port="client",direction="rx"} 1000)"));
  EXPECT_TRUE(has_line(text, R"(sluice_port_packets_total{port="server",direction="tx"} 9)"));
  EXPECT_TRUE(
      has_line(text, R"(sluice_port_packets_per_second{port="client",direction="rx"} 2.5)"));
  EXPECT_TRUE(has_line(text, R"(sluice_port_nic_errors_total{port="server",kind="imissed"} 7)"));
  EXPECT_TRUE(has_line(text, R"(sluice_drops_total{reason="midstream"} 3)"));
  EXPECT_TRUE(has_line(text, R"(sluice_drops_total{reason="tx_full"} 0)"));
  EXPECT_TRUE(has_line(text, "sluice_flows_active 3"));
  EXPECT_TRUE(has_line(text, "sluice_flows_open 1"));
  EXPECT_TRUE(has_line(text, "sluice_flows_created_total 4"));
  EXPECT_TRUE(has_line(text, "sluice_rst_sent_total 2"));
  EXPECT_TRUE(has_line(text, R"(sluice_worker_packets_total{worker="1",direction="rx"} 4)"));
  EXPECT_TRUE(has_line(text, R"(sluice_worker_packets_per_second{worker="0"} 1.5)"));
  EXPECT_TRUE(has_line(text, "sluice_workers 2"));
  EXPECT_TRUE(has_line(text, "sluice_draining 1"));
  EXPECT_TRUE(has_line(text, R"(sluice_info{version="0.1.0"} 1)"));
}

TEST(PrometheusRenderer, RequestsByVerdictReasonStatusAndTier) {
  const std::string text = render_prometheus(example());
  EXPECT_TRUE(
      has_line(text, R"(sluice_requests_total{verdict="admit",reason="ok",status="200"} 5)"));
  EXPECT_TRUE(has_line(
      text, R"(sluice_requests_total{verdict="deny",reason="invalid_api_key",status="401"} 3)"));
  EXPECT_TRUE(has_line(
      text,
      R"(sluice_requests_total{verdict="cut",reason="completion_policy_violation",status="403"} 1)"));
  EXPECT_TRUE(has_line(
      text,
      R"(sluice_requests_total{verdict="deny",reason="rate_limited_tokens",status="429"} 0)"));
  EXPECT_TRUE(has_line(text, R"(sluice_tier_requests_total{tier="",verdict="deny"} 3)"));
  EXPECT_TRUE(has_line(text, R"(sluice_tier_requests_total{tier="free",verdict="admit"} 5)"));
  EXPECT_TRUE(has_line(text, R"(sluice_tier_requests_total{tier="free",verdict="deny"} 2)"));
  EXPECT_TRUE(has_line(text, R"(sluice_tier_requests_total{tier="free",verdict="cut"} 1)"));
  EXPECT_TRUE(
      has_line(text, R"(sluice_tier_denials_total{tier="free",reason="rate_limited_requests"} 2)"));
  EXPECT_TRUE(has_line(text, R"(sluice_limit_denials_total{tier="free",limit="requests"} 2)"));
  EXPECT_TRUE(has_line(text, R"(sluice_limit_denials_total{tier="free",limit="concurrency"} 0)"));
  // Requests without a tier have no limits.
  EXPECT_EQ(text.find(R"(sluice_limit_denials_total{tier="")"), std::string::npos);
}

TEST(PrometheusRenderer, IdentityNamesAreEscapedInLabelValues) {
  const std::string text = render_prometheus(example());
  EXPECT_TRUE(has_line(text, R"(sluice_identity_requests_total{identity="alice"} 5)"));
  EXPECT_TRUE(has_line(text, R"(sluice_identity_requests_total{identity="b\"o\\b\nx"} 2)"));
  EXPECT_TRUE(has_line(text, R"(sluice_identity_denials_total{identity="b\"o\\b\nx"} 2)"));
  EXPECT_TRUE(has_line(text, R"(sluice_identity_denials_total{identity="alice"} 0)"));
}

TEST(PrometheusRenderer, RuleHitsListEveryRuleOfTheDatabase) {
  const std::string text = render_prometheus(example());
  EXPECT_TRUE(has_line(text, R"(sluice_rule_hits_total{rule="pi.ignore-previous"} 1)"));
  EXPECT_TRUE(has_line(text, R"(sluice_rule_hits_total{rule="sec.private-key.completion"} 0)"));
}

TEST(PrometheusRenderer, DecisionHistogramIsCumulativeAndCountEqualsInfBucket) {
  const std::string text = render_prometheus(example());
  EXPECT_TRUE(has_line(text, R"(sluice_decision_duration_seconds_bucket{le="2.5e-07"} 2)"));
  EXPECT_TRUE(has_line(text, R"(sluice_decision_duration_seconds_bucket{le="1e-06"} 2)"));
  EXPECT_TRUE(has_line(text, R"(sluice_decision_duration_seconds_bucket{le="2e-06"} 3)"));
  EXPECT_TRUE(has_line(text, R"(sluice_decision_duration_seconds_bucket{le="0.004"} 3)"));
  EXPECT_TRUE(has_line(text, R"(sluice_decision_duration_seconds_bucket{le="+Inf"} 4)"));
  EXPECT_TRUE(has_line(text, "sluice_decision_duration_seconds_count 4"));
  EXPECT_TRUE(has_line(text, "sluice_decision_duration_seconds_sum 0.01"));
}

TEST(PrometheusRenderer, AuditAndReloads) {
  const std::string text = render_prometheus(example());
  EXPECT_TRUE(has_line(text, "sluice_audit_enabled 1"));
  EXPECT_TRUE(has_line(text, R"(sluice_audit_records_total{result="written"} 8)"));
  EXPECT_TRUE(has_line(text, R"(sluice_audit_records_total{result="dropped"} 1)"));
  EXPECT_TRUE(has_line(text, R"(sluice_audit_records_total{result="lost"} 0)"));
  EXPECT_TRUE(has_line(text, "sluice_policy_generation 2"));
  EXPECT_TRUE(has_line(text, R"(sluice_reloads_total{result="success"} 1)"));
  EXPECT_TRUE(has_line(text, R"(sluice_reloads_total{result="failure"} 1)"));
  EXPECT_TRUE(
      has_line(text, R"(sluice_last_reload_timestamp_seconds{result="success"} 1700000005)"));
  EXPECT_TRUE(has_line(text, R"(sluice_last_reload_timestamp_seconds{result="failure"} 0)"));
}

TEST(PrometheusRenderer, EscalatedIdentitiesByStateWithTheirExpiry) {
  MetricsSnapshot s = example();
  EXPECT_TRUE(has_line(render_prometheus(s), R"(sluice_identities_escalated{state="demoted"} 0)"));
  s.escalated = {{"acme", "free", 1700003600}, {"mallory", "", 1700001800.5}};
  const std::string text = render_prometheus(s);
  EXPECT_TRUE(has_line(text, R"(sluice_identities_escalated{state="demoted"} 1)"));
  EXPECT_TRUE(has_line(text, R"(sluice_identities_escalated{state="suspended"} 1)"));
  EXPECT_TRUE(has_line(
      text,
      R"(sluice_identity_escalation_expiry_timestamp_seconds{identity="acme",tier="free"} 1700003600)"));
  EXPECT_TRUE(has_line(
      text,
      R"(sluice_identity_escalation_expiry_timestamp_seconds{identity="mallory",tier=""} 1700001800.5)"));
}

TEST(DecisionHistogram, BucketsByTheBoundInCyclesAtTheGivenClock) {
  DecisionHistogram histogram(2'000'000'000);  // 2 GHz: 250 ns = 500 cycles
  histogram.record(500);                       // exactly on the bound: that bucket
  histogram.record(501);
  histogram.record(100'000'000);  // 50 ms: +Inf
  EXPECT_EQ(histogram.count(0), 1u);
  EXPECT_EQ(histogram.count(1), 1u);
  EXPECT_EQ(histogram.count(DecisionHistogram::kBoundsNs.size()), 1u);
  MetricsSnapshot snapshot;
  add_decision_histogram(snapshot, histogram);
  add_decision_histogram(snapshot, histogram);
  EXPECT_EQ(snapshot.decision_buckets[0], 2u);
  EXPECT_NEAR(snapshot.decision_sum_s, 2 * (500 + 501 + 100'000'000) / 2e9, 1e-12);
}

}  // namespace
}  // namespace sluice
