#include "sluice/metrics.hpp"

#include <charconv>
#include <cmath>
#include <string_view>

namespace sluice {
namespace {

constexpr std::string_view kSides[2] = {"client", "server"};

std::string number(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  char text[32];
  const auto result = std::to_chars(text, text + sizeof text, value);
  return std::string(text, result.ptr);
}

// One family at a time: HELP and TYPE first, then its samples, contiguous (the format
// requires it).
class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    name_ = name;
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;  // plain text without backslashes or newlines
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  // labels: name, value, name, value, … (values are escaped here).
  void sample(std::initializer_list<std::string_view> labels, uint64_t value,
              std::string_view suffix = {}) {
    head(labels, suffix);
    out_ += std::to_string(value);
    out_ += '\n';
  }
  void sample_double(std::initializer_list<std::string_view> labels, double value,
                     std::string_view suffix = {}) {
    head(labels, suffix);
    out_ += number(value);
    out_ += '\n';
  }

  std::string take() { return std::move(out_); }

 private:
  void head(std::initializer_list<std::string_view> labels, std::string_view suffix) {
    out_ += name_;
    out_ += suffix;
    if (labels.size() > 0) {
      out_ += '{';
      bool value = false;
      bool first = true;
      for (const std::string_view part : labels) {
        if (!value) {
          if (!first) out_ += ',';
          out_ += part;
          out_ += "=\"";
        } else {
          escape(part);
          out_ += '"';
        }
        value = !value;
        first = false;
      }
      out_ += '}';
    }
    out_ += ' ';
  }
  // Text format 0.0.4: in label values, backslash, double quote and line feed are escaped.
  void escape(std::string_view text) {
    for (const char c : text) {
      if (c == '\\')
        out_ += "\\\\";
      else if (c == '"')
        out_ += "\\\"";
      else if (c == '\n')
        out_ += "\\n";
      else
        out_ += c;
    }
  }

  std::string out_;
  std::string_view name_;
};

std::string_view verdict_of(std::size_t reason) {
  if (reason == 0) return "admit";
  return is_response_reason(static_cast<RequestReason>(reason)) ? "cut" : "deny";
}

bool is_port_counter(Counter c) {
  switch (c) {
    case Counter::rx_client_packets:
    case Counter::rx_client_bytes:
    case Counter::rx_server_packets:
    case Counter::rx_server_bytes:
    case Counter::tx_client_packets:
    case Counter::tx_client_bytes:
    case Counter::tx_server_packets:
    case Counter::tx_server_bytes:
    case Counter::flows_created:
    case Counter::flows_expired:
    case Counter::flows_evicted:
      return true;
    default:
      return false;
  }
}

void render_ports(Writer& w, const MetricsSnapshot& s) {
  const Counter packets[2][2] = {{Counter::rx_client_packets, Counter::tx_client_packets},
                                 {Counter::rx_server_packets, Counter::tx_server_packets}};
  const Counter bytes[2][2] = {{Counter::rx_client_bytes, Counter::tx_client_bytes},
                               {Counter::rx_server_bytes, Counter::tx_server_bytes}};
  constexpr std::string_view kDirections[2] = {"rx", "tx"};
  w.family("sluice_port_packets_total", "counter",
           "Packets received from (rx) and sent to (tx) each port.");
  for (std::size_t p = 0; p < 2; ++p)
    for (std::size_t d = 0; d < 2; ++d)
      w.sample({"port", kSides[p], "direction", kDirections[d]}, s.counters[packets[p][d]]);
  w.family("sluice_port_bytes_total", "counter",
           "Bytes (whole frames) received from (rx) and sent to (tx) each port.");
  for (std::size_t p = 0; p < 2; ++p)
    for (std::size_t d = 0; d < 2; ++d)
      w.sample({"port", kSides[p], "direction", kDirections[d]}, s.counters[bytes[p][d]]);
  w.family("sluice_port_packets_per_second", "gauge",
           "Packets per second over the last sampling window (about 1 s); for sluicectl.");
  for (std::size_t p = 0; p < 2; ++p)
    for (std::size_t d = 0; d < 2; ++d)
      w.sample_double({"port", kSides[p], "direction", kDirections[d]}, s.port_pps[p * 2 + d]);
  w.family("sluice_port_bytes_per_second", "gauge",
           "Bytes per second over the last sampling window (about 1 s); for sluicectl.");
  for (std::size_t p = 0; p < 2; ++p)
    for (std::size_t d = 0; d < 2; ++d)
      w.sample_double({"port", kSides[p], "direction", kDirections[d]},
                      s.port_bytes_per_s[p * 2 + d]);
  w.family("sluice_port_nic_errors_total", "counter",
           "What the devices counted: imissed (RX ring full), ierrors, oerrors, rx_nombuf.");
  for (std::size_t p = 0; p < 2; ++p) {
    const MetricsSnapshot::Port& port = s.ports[p];
    w.sample({"port", kSides[p], "kind", "imissed"}, port.imissed);
    w.sample({"port", kSides[p], "kind", "ierrors"}, port.ierrors);
    w.sample({"port", kSides[p], "kind", "oerrors"}, port.oerrors);
    w.sample({"port", kSides[p], "kind", "rx_nombuf"}, port.rx_nombuf);
  }
}

void render_workers(Writer& w, const MetricsSnapshot& s) {
  w.family("sluice_workers", "gauge", "Worker lcores.");
  w.sample({}, s.workers);
  w.family("sluice_worker_packets_total", "counter",
           "Packets each worker received (rx, both ports) and sent (tx).");
  for (std::size_t i = 0; i < s.per_worker.size(); ++i) {
    const std::string worker = std::to_string(i);
    w.sample({"worker", worker, "direction", "rx"}, s.per_worker[i].rx_packets);
    w.sample({"worker", worker, "direction", "tx"}, s.per_worker[i].tx_packets);
  }
  w.family("sluice_worker_packets_per_second", "gauge",
           "Packets each worker received per second over the last sampling window.");
  for (std::size_t i = 0; i < s.per_worker.size(); ++i)
    w.sample_double({"worker", std::to_string(i)}, s.per_worker[i].rx_pps);
}

void render_dataplane(Writer& w, const MetricsSnapshot& s) {
  w.family("sluice_drops_total", "counter",
           "Packets that did not leave, by reason (malformed, policy, TCP tracking, resources).");
  for (std::size_t i = 0; i < kCounterCount; ++i) {
    if (kCounterKinds[i] != CounterKind::Drop) continue;
    w.sample({"reason", kCounterNames[i].substr(5)}, s.counters.values[i]);  // less "drop_"
  }
  w.family("sluice_flows_active", "gauge", "Flows in the flow tables, every state.");
  w.sample({}, s.active_flows);
  w.family("sluice_flows_open", "gauge",
           "Flows half-open or established (no FIN or RST yet): what a drain waits for.");
  w.sample({}, s.open_flows);
  w.family("sluice_flows_created_total", "counter", "Flows opened by a SYN on an inspected port.");
  w.sample({}, s.counters[Counter::flows_created]);
  w.family("sluice_flows_expired_total", "counter", "Flows removed after their idle timeout.");
  w.sample({}, s.counters[Counter::flows_expired]);
  w.family("sluice_flows_evicted_total", "counter",
           "Half-open flows removed to make room in a full table.");
  w.sample({}, s.counters[Counter::flows_evicted]);
  // The rest of the dataplane's counters, one family each, under their summary names.
  for (std::size_t i = 0; i < kCounterCount; ++i) {
    const Counter c = static_cast<Counter>(i);
    if (kCounterKinds[i] == CounterKind::Drop || is_port_counter(c)) continue;
    const std::string name = "sluice_" + std::string(kCounterNames[i]) + "_total";
    const std::string help =
        "Dataplane counter " + std::string(kCounterNames[i]) + " (as in the exit summary).";
    w.family(name, "counter", help);
    w.sample({}, s.counters.values[i]);
  }
  w.family("sluice_draining", "gauge",
           "1 while draining (sluicectl drain): new SYNs on inspected ports are refused.");
  w.sample({}, s.draining ? 1 : 0);
}

void render_requests(Writer& w, const MetricsSnapshot& s) {
  w.family("sluice_requests_total", "counter",
           "Requests by verdict (admit, deny; cut: an admitted request's response cut by a "
           "completion rule) and reason, with the status sent.");
  for (std::size_t i = 0; i < kRequestReasonCount; ++i) {
    w.sample({"verdict", verdict_of(i), "reason", kRequestReasons[i].name, "status",
              std::to_string(kRequestReasons[i].status)},
             s.requests[i]);
  }
  w.family("sluice_requests_per_second", "gauge",
           "Requests decided per second over the last sampling window.");
  w.sample_double({}, s.requests_per_s);

  w.family("sluice_tier_requests_total", "counter",
           "Requests decided by admission, by tier (\"\": none: no or unknown key, admission "
           "off) and verdict.");
  for (const MetricsSnapshot::Tier& tier : s.tiers) {
    uint64_t by_verdict[3] = {0, 0, 0};
    for (std::size_t i = 0; i < kRequestReasonCount; ++i)
      by_verdict[i == 0 ? 0 : verdict_of(i) == "deny" ? 1 : 2] += tier.by_reason[i];
    w.sample({"tier", tier.name, "verdict", "admit"}, by_verdict[0]);
    w.sample({"tier", tier.name, "verdict", "deny"}, by_verdict[1]);
    w.sample({"tier", tier.name, "verdict", "cut"}, by_verdict[2]);
  }
  w.family("sluice_tier_denials_total", "counter",
           "Requests denied (and responses cut) by tier and reason; reasons that occurred.");
  for (const MetricsSnapshot::Tier& tier : s.tiers) {
    for (std::size_t i = 1; i < kRequestReasonCount; ++i) {
      if (tier.by_reason[i] != 0)
        w.sample({"tier", tier.name, "reason", kRequestReasons[i].name}, tier.by_reason[i]);
    }
  }
  w.family("sluice_limit_denials_total", "counter",
           "Requests answered 429 by a tier's limits: requests per second, tokens, in flight.");
  for (const MetricsSnapshot::Tier& tier : s.tiers) {
    if (tier.name.empty()) continue;
    const auto of = [&tier](RequestReason r) {
      return tier.by_reason[static_cast<std::size_t>(r)];
    };
    w.sample({"tier", tier.name, "limit", "requests"}, of(RequestReason::rate_limited_requests));
    w.sample({"tier", tier.name, "limit", "tokens"}, of(RequestReason::rate_limited_tokens));
    w.sample({"tier", tier.name, "limit", "concurrency"}, of(RequestReason::concurrency_limited));
  }
  w.family("sluice_identity_requests_total", "counter",
           "Requests decided per identity; only the top 10 identities by requests and the top "
           "10 by denials are listed.");
  for (const MetricsSnapshot::Identity& id : s.top_identities)
    w.sample({"identity", id.name}, id.requests);
  w.family("sluice_identity_denials_total", "counter",
           "Requests denied (and responses cut) per identity; the same identities as "
           "sluice_identity_requests_total.");
  for (const MetricsSnapshot::Identity& id : s.top_identities)
    w.sample({"identity", id.name}, id.denials);
  w.family("sluice_rule_hits_total", "counter",
           "Requests (and responses) each rule of the running database matched, any action "
           "or mode; carried over by rule id across reloads.");
  for (const auto& [rule, hits] : s.rule_hits) w.sample({"rule", rule}, hits);

  w.family("sluice_decision_duration_seconds", "histogram",
           "Time admission took to decide a request once the deciding event reached it (its "
           "head, or its last byte), TSC-measured.");
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i < DecisionHistogram::kBoundsNs.size(); ++i) {
    cumulative += s.decision_buckets[i];
    w.sample({"le", number(static_cast<double>(DecisionHistogram::kBoundsNs[i]) / 1e9)}, cumulative,
             "_bucket");
  }
  cumulative += s.decision_buckets.back();
  w.sample({"le", "+Inf"}, cumulative, "_bucket");
  w.sample_double({}, s.decision_sum_s, "_sum");
  w.sample({}, cumulative, "_count");
}

void render_escalations(Writer& w, const MetricsSnapshot& s) {
  w.family("sluice_identities_escalated", "gauge",
           "Identities with an escalation in force (graduated response), by state.");
  uint64_t demoted = 0;
  for (const MetricsSnapshot::Escalated& e : s.escalated) demoted += e.tier.empty() ? 0 : 1;
  w.sample({"state", "demoted"}, demoted);
  w.sample({"state", "suspended"}, s.escalated.size() - demoted);
  w.family("sluice_identity_escalation_expiry_timestamp_seconds", "gauge",
           "When an identity's escalation expires, by identity and the tier it is demoted to "
           "(\"\": suspended); the first 20 to expire.");
  for (std::size_t i = 0; i < s.escalated.size() && i < 20; ++i) {
    const MetricsSnapshot::Escalated& e = s.escalated[i];
    w.sample_double({"identity", e.identity, "tier", e.tier}, e.until_s);
  }
}

void render_control(Writer& w, const MetricsSnapshot& s) {
  w.family("sluice_audit_enabled", "gauge", "1 when an audit trail is written (audit.path).");
  w.sample({}, s.audit_enabled ? 1 : 0);
  w.family("sluice_audit_records_total", "counter",
           "Audit records written, dropped (a worker's ring was full) and lost (a failed write).");
  w.sample({"result", "written"}, s.audit_written);
  w.sample({"result", "dropped"}, s.audit_dropped);
  w.sample({"result", "lost"}, s.audit_lost);
  w.family("sluice_audit_write_errors_total", "counter", "Failed audit writes, opens or renames.");
  w.sample({}, s.audit_write_errors);

  w.family("sluice_policy_generation", "gauge",
           "Generation of the admission policy in force: 1 at start, +1 per successful reload.");
  w.sample({}, s.policy_generation);
  w.family("sluice_reloads_total", "counter", "Reloads (SIGHUP or sluicectl reload) by result.");
  w.sample({"result", "success"}, s.reloads_succeeded);
  w.sample({"result", "failure"}, s.reloads_failed);
  w.family("sluice_last_reload_timestamp_seconds", "gauge",
           "Unix time of the last reload by result; 0: none yet.");
  w.sample_double({"result", "success"}, s.last_reload_success_s);
  w.sample_double({"result", "failure"}, s.last_reload_failure_s);
}

}  // namespace

void add_decision_histogram(MetricsSnapshot& snapshot, const DecisionHistogram& histogram) {
  for (std::size_t i = 0; i < snapshot.decision_buckets.size(); ++i)
    snapshot.decision_buckets[i] += histogram.count(i);
  if (histogram.tsc_hz != 0)
    snapshot.decision_sum_s +=
        static_cast<double>(histogram.sum()) / static_cast<double>(histogram.tsc_hz);
}

std::string render_prometheus(const MetricsSnapshot& s) {
  Writer w;
  w.family("sluice_info", "gauge", "Always 1; the version in a label.");
  w.sample({"version", s.version}, 1);
  w.family("sluice_start_time_seconds", "gauge", "Unix time sluice started.");
  w.sample_double({}, s.start_time_s);
  w.family("sluice_uptime_seconds", "gauge", "Seconds since sluice started.");
  w.sample_double({}, s.uptime_s);
  render_workers(w, s);
  render_ports(w, s);
  render_dataplane(w, s);
  render_requests(w, s);
  render_escalations(w, s);
  render_control(w, s);
  return w.take();
}

}  // namespace sluice
