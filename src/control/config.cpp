#include "sluice/config.hpp"

#include "sluice/management.hpp"
#include "yaml_document.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

namespace sluice {
namespace {

constexpr std::string_view kEmbeddedDefault =
    R"(# Sluice embedded default: the demo topology (tools/topology.sh).
dataplane:
  client_port: "net_af_packet0,iface=sl-client,framecnt=4096"
  server_port: "net_af_packet1,iface=sl-server,framecnt=4096"
  workers: 1
  eal_args: ["--no-huge", "-m", "512", "--no-pci", "--no-shconf"]
  flow_capacity: 65536
inspect:
  tcp_ports: [8000]
  other_traffic: pass
  midstream: drop
  on_flow_table_full: drop
  fragments: drop
  bad_checksum: drop
stats:
  interval: 1
)";

// Walks one YAML mapping, remembering the dotted path so every message can name the key.
class Section {
 public:
  Section(const YAML::Node& node, std::string path, const std::string& source)
      : node_(node), path_(std::move(path)), source_(source) {
    if (!node_.IsMap()) fail(node_, "expected a mapping");
  }

  // Rejects keys outside `known`, naming the ones that are allowed.
  void allow_only(std::initializer_list<std::string_view> known) const {
    reject_unknown_keys(node_, path_, known, source_);
  }

  YAML::Node get(std::string_view key) const { return node_[std::string(key)]; }

  Section child(std::string_view key) const { return Section(get(key), qualified(key), source_); }
  bool has(std::string_view key) const { return static_cast<bool>(get(key)); }
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }

  std::string string(std::string_view key, const std::string& fallback) const {
    const YAML::Node value = get(key);
    if (!value) return fallback;
    if (!value.IsScalar()) fail(value, qualified(key) + ": expected a string");
    return value.as<std::string>();
  }

  uint64_t integer(std::string_view key, uint64_t fallback, uint64_t low, uint64_t high) const {
    const YAML::Node value = get(key);
    if (!value) return fallback;
    const std::string range =
        "an integer in [" + std::to_string(low) + ", " + std::to_string(high) + "]";
    uint64_t parsed = 0;
    if (!value.IsScalar() || !YAML::convert<uint64_t>::decode(value, parsed) ||
        value.Scalar().find_first_not_of("0123456789") != std::string::npos) {
      fail(value, qualified(key) + ": expected " + range + ", got '" + describe(value) + "'");
    }
    if (parsed < low || parsed > high) {
      fail(value, qualified(key) + ": expected " + range + ", got " + std::to_string(parsed));
    }
    return parsed;
  }

  double seconds(std::string_view key, double fallback, double low, double high) const {
    const YAML::Node value = get(key);
    if (!value) return fallback;
    double parsed = 0;
    if (!value.IsScalar() || !YAML::convert<double>::decode(value, parsed) ||
        !std::isfinite(parsed) || parsed < low || parsed > high) {
      std::ostringstream expected;
      expected << "a number of seconds in [" << low << ", " << high << "]";
      fail(value,
           qualified(key) + ": expected " + expected.str() + ", got '" + describe(value) + "'");
    }
    return parsed;
  }

  // A duration: a number with a unit (500ms, 30s, 10m, 1h, 2d) or a bare number of seconds.
  uint64_t duration_ns(std::string_view key, uint64_t low_ns, uint64_t high_ns) const {
    const YAML::Node value = get(key);
    const std::string text = value && value.IsScalar() ? value.Scalar() : "";
    const std::size_t unit_at = text.find_first_not_of("0123456789.");
    const std::string number = text.substr(0, unit_at);
    const std::string unit = unit_at == std::string::npos ? "s" : text.substr(unit_at);
    const double scale = unit == "ms"  ? 1e6
                         : unit == "s" ? 1e9
                         : unit == "m" ? 60e9
                         : unit == "h" ? 3600e9
                         : unit == "d" ? 86400e9
                                       : 0;
    double parsed = 0;
    const bool valid = !number.empty() && scale > 0 &&
                       YAML::convert<double>::decode(YAML::Node(number), parsed) &&
                       std::isfinite(parsed) && parsed * scale >= static_cast<double>(low_ns) &&
                       parsed * scale <= static_cast<double>(high_ns);
    if (!valid) {
      fail(value ? value : node_,
           qualified(key) + ": expected a duration (500ms, 30s, 10m, 1h, 2d) " + "from " +
               std::to_string(low_ns / 1'000'000) + " ms to " +
               std::to_string(high_ns / 86'400'000'000'000) + " days, got '" +
               (value ? describe(value) : std::string("nothing")) + "'");
    }
    return static_cast<uint64_t>(parsed * scale);
  }

  bool boolean(std::string_view key, bool fallback) const {
    const YAML::Node value = get(key);
    if (!value) return fallback;
    const std::string text = value.IsScalar() ? value.Scalar() : "";
    if (text == "true") return true;
    if (text == "false") return false;
    fail(value, qualified(key) + ": expected true or false, got '" + describe(value) + "'");
  }

  Policy policy(std::string_view key, Policy fallback) const {
    const YAML::Node value = get(key);
    if (!value) return fallback;
    const std::string text = value.IsScalar() ? value.Scalar() : "";
    if (text == "pass") return Policy::kPass;
    if (text == "drop") return Policy::kDrop;
    fail(value, qualified(key) + ": expected pass or drop, got '" + describe(value) + "'");
  }

  std::vector<std::string> strings(std::string_view key, std::vector<std::string> fallback) const {
    const YAML::Node value = get(key);
    if (!value) return fallback;
    if (!value.IsSequence()) fail(value, qualified(key) + ": expected a list of strings");
    std::vector<std::string> result;
    for (const auto& item : value) {
      if (!item.IsScalar()) fail(item, qualified(key) + ": expected a list of strings");
      result.push_back(item.Scalar());
    }
    return result;
  }

  std::vector<uint16_t> ports(std::string_view key, std::vector<uint16_t> fallback) const {
    const YAML::Node value = get(key);
    if (!value) return fallback;
    if (!value.IsSequence()) fail(value, qualified(key) + ": expected a list of TCP ports");
    std::vector<uint16_t> result;
    for (const auto& item : value) {
      uint32_t port = 0;
      if (!item.IsScalar() || !YAML::convert<uint32_t>::decode(item, port) || port == 0 ||
          port > 65535) {
        fail(item,
             qualified(key) + ": expected TCP ports in [1, 65535], got '" + describe(item) + "'");
      }
      result.push_back(static_cast<uint16_t>(port));
    }
    return result;
  }

  [[noreturn]] void fail(const YAML::Node& at, const std::string& message) const {
    throw ConfigError(yaml_location(source_, at) + ": " + message);
  }

 private:
  std::string qualified(std::string_view key) const { return qualified_key(path_, key); }
  static std::string describe(const YAML::Node& value) { return describe_node(value); }

  YAML::Node node_;
  std::string path_;
  const std::string& source_;
};

constexpr std::string_view kLimitKeys[] = {
    "requests_per_second", "burst",          "tokens_per_minute", "token_burst",
    "max_concurrent",      "max_body_bytes", "max_output_tokens"};

// A tier's limits (every key required) or a model's overrides of them (`base` given: each key
// optional, defaulting to the tier's).
TierLimits read_limits(const Section& s, const TierLimits* base) {
  constexpr uint64_t kMax = uint64_t{1} << 40;
  TierLimits limits = base != nullptr ? *base : TierLimits{};
  uint64_t* fields[] = {&limits.requests_per_second, &limits.burst,
                        &limits.tokens_per_minute,   &limits.token_burst,
                        &limits.max_concurrent,      &limits.max_body_bytes,
                        &limits.max_output_tokens};
  for (std::size_t i = 0; i < std::size(kLimitKeys); ++i) {
    if (base == nullptr && !s.has(kLimitKeys[i])) {
      s.fail(s.node(), s.path() + ": missing key '" + std::string(kLimitKeys[i]) +
                           "' (a tier sets all of: requests_per_second, burst, tokens_per_minute, "
                           "token_burst, max_concurrent, max_body_bytes, max_output_tokens)");
    }
    *fields[i] = s.integer(kLimitKeys[i], *fields[i], 1, kMax);
  }
  return limits;
}

bool is_tier_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") == std::string_view::npos;
}

void parse_tiers(const Section& top, Config& config) {
  const Section tiers = top.child("tiers");
  for (const auto& entry : tiers.node()) {
    const std::string name = entry.first.Scalar();
    if (!is_tier_name(name)) {
      tiers.fail(entry.first,
                 "tiers: '" + name + "' is not a tier name (expected [a-z0-9_-], 1 to 64)");
    }
    const Section t = tiers.child(name);
    t.allow_only({"requests_per_second", "burst", "tokens_per_minute", "token_burst",
                  "max_concurrent", "max_body_bytes", "max_output_tokens", "models", "paths",
                  "model_limits"});
    TierConfig tier;
    tier.name = name;
    tier.limits = read_limits(t, nullptr);
    tier.models = t.strings("models", tier.models);
    tier.paths = t.strings("paths", tier.paths);
    if (tier.models.empty())
      t.fail(t.get("models"), t.path() + ".models: expected at least one pattern");
    for (const std::string& path : tier.paths) {
      if (!path.starts_with("/")) {
        t.fail(t.get("paths"),
               t.path() + ".paths: '" + path + "' is not a path prefix (expected /...)");
      }
    }
    if (t.has("model_limits")) {
      const Section overrides = t.child("model_limits");
      for (const auto& model : overrides.node()) {
        const std::string pattern = model.first.Scalar();
        const Section o = overrides.child(pattern);
        o.allow_only({"requests_per_second", "burst", "tokens_per_minute", "token_burst",
                      "max_concurrent", "max_body_bytes", "max_output_tokens"});
        uint8_t set = 0;
        for (std::size_t i = 0; i < std::size(kLimitKeys); ++i)
          if (o.has(kLimitKeys[i])) set |= static_cast<uint8_t>(1u << i);
        tier.model_limits.push_back({pattern, read_limits(o, &tier.limits), set});
      }
    }
    config.tiers.push_back(std::move(tier));
  }
}

// escalation: { <tier>: { flags: N, window: 10m, action: demote | suspend, to: <tier>,
//                         duration: 1h } }
void parse_escalation(const Section& top, Config& config) {
  const Section all = top.child("escalation");
  constexpr uint64_t kMinute = 60'000'000'000;
  constexpr uint64_t kYear = 365 * 24 * 60 * kMinute;
  for (const auto& entry : all.node()) {
    const std::string tier = entry.first.Scalar();
    const Section s = all.child(tier);
    s.allow_only({"flags", "window", "action", "to", "duration"});
    if (config.tier(tier) == nullptr)
      all.fail(entry.first, "escalation." + tier + ": no tier '" + tier + "' in tiers");
    EscalationConfig e;
    e.tier = tier;
    for (const char* key : {"flags", "window", "action", "duration"}) {
      if (!s.has(key)) s.fail(s.node(), s.path() + "." + key + ": required");
    }
    e.flags = s.integer("flags", 0, 1, 1'000'000);
    e.window_ns = s.duration_ns("window", 1'000'000, kYear);
    e.duration_ns = s.duration_ns("duration", 1'000'000, kYear);
    const std::string action = s.string("action", "");
    if (action != "demote" && action != "suspend")
      s.fail(s.get("action"),
             s.path() + ".action: expected demote or suspend, got '" + action + "'");
    e.suspend = action == "suspend";
    if (e.suspend && s.has("to"))
      s.fail(s.get("to"), s.path() + ".to: a suspension has no tier to go to");
    if (!e.suspend) {
      if (!s.has("to")) s.fail(s.node(), s.path() + ".to: required with action: demote");
      e.to = s.string("to", "");
      if (config.tier(e.to) == nullptr)
        s.fail(s.get("to"), s.path() + ".to: no tier '" + e.to + "' in tiers");
      if (e.to == tier) s.fail(s.get("to"), s.path() + ".to: demotes to the tier itself");
    }
    config.escalation.push_back(std::move(e));
  }
  // Demotions must end: following `to` from any tier never comes back to it.
  for (const EscalationConfig& start : config.escalation) {
    std::string at = start.tier;
    for (std::size_t steps = 0;; ++steps) {
      const EscalationConfig* step = config.escalation_of(at);
      if (step == nullptr || step->suspend) break;
      if (steps > config.escalation.size()) {
        all.fail(all.get(start.tier), "escalation." + start.tier +
                                          ": demotions form a loop (a tier demotes back to "
                                          "itself through 'to')");
      }
      at = step->to;
    }
  }
}

template <typename Beside>
void parse_management(const Section& s, Config& config, const Beside& beside_config) {
  s.allow_only({"listen", "socket"});
  ManagementConfig& m = config.management;
  m.listen = s.string("listen", m.listen);
  if (!m.listen.empty() && !parse_listen_address(m.listen)) {
    s.fail(s.get("listen"),
           "management.listen: expected HOST:PORT with an IP address and a port "
           "in [1, 65535] (127.0.0.1:9091, [::1]:9091), or \"\" for none, got '" +
               m.listen + "'");
  }
  m.socket = beside_config(s.string("socket", m.socket));
  if (m.socket.size() > kMaxSocketPath) {
    s.fail(s.get("socket"), "management.socket: expected a path of at most " +
                                std::to_string(kMaxSocketPath) +
                                " bytes (a Unix socket address), or \"\" for none; got " +
                                std::to_string(m.socket.size()) + " bytes");
  }
}

Config parse(const YAML::Node& root, const std::string& source) {
  Config config;
  config.source = source;
  if (!root || root.IsNull()) return config;  // an empty file: every default
  const Section top(root, "", source);
  top.allow_only({"dataplane", "inspect", "http", "stats", "identities", "tiers", "unknown_key",
                  "audit", "rules", "disclose_rule_id", "escalation", "management"});

  if (top.has("dataplane")) {
    const Section s = top.child("dataplane");
    s.allow_only({"client_port", "server_port", "workers", "eal_args", "flow_capacity",
                  "burst_size", "rx_ring_size", "tx_ring_size", "mbufs", "tx_drain_us"});
    DataplaneConfig& d = config.dataplane;
    d.client_port = s.string("client_port", d.client_port);
    d.server_port = s.string("server_port", d.server_port);
    d.workers = static_cast<uint32_t>(s.integer("workers", d.workers, 1, 64));
    d.eal_args = s.strings("eal_args", d.eal_args);
    d.flow_capacity =
        static_cast<uint32_t>(s.integer("flow_capacity", d.flow_capacity, 1, 1u << 26));
    d.burst_size = static_cast<uint32_t>(s.integer("burst_size", d.burst_size, 1, 512));
    d.rx_ring_size = static_cast<uint32_t>(s.integer("rx_ring_size", d.rx_ring_size, 64, 16384));
    d.tx_ring_size = static_cast<uint32_t>(s.integer("tx_ring_size", d.tx_ring_size, 64, 16384));
    d.mbufs = static_cast<uint32_t>(s.integer("mbufs", d.mbufs, 0, 1u << 24));
    d.tx_drain_us = static_cast<uint32_t>(s.integer("tx_drain_us", d.tx_drain_us, 1, 100000));
    if (d.client_port.empty())
      s.fail(s.get("client_port"), "dataplane.client_port: must not be empty");
    if (d.server_port.empty())
      s.fail(s.get("server_port"), "dataplane.server_port: must not be empty");
  }

  if (top.has("inspect")) {
    const Section s = top.child("inspect");
    s.allow_only({"tcp_ports", "other_traffic", "midstream", "on_flow_table_full", "fragments",
                  "bad_checksum", "reassembly_bytes", "reassembly_segments", "reassembly_slots",
                  "timeouts", "urgent_data"});
    InspectConfig& i = config.inspect;
    i.tcp_ports = s.ports("tcp_ports", i.tcp_ports);
    i.other_traffic = s.policy("other_traffic", i.other_traffic);
    i.midstream = s.policy("midstream", i.midstream);
    i.on_flow_table_full = s.policy("on_flow_table_full", i.on_flow_table_full);
    i.fragments = s.policy("fragments", i.fragments);
    i.bad_checksum = s.policy("bad_checksum", i.bad_checksum);
    if (const YAML::Node value = s.get("urgent_data")) {
      const std::string text = value.IsScalar() ? value.Scalar() : "";
      if (text == "normalise")
        i.urgent_data = UrgentPolicy::kNormalise;
      else if (text == "drop")
        i.urgent_data = UrgentPolicy::kDrop;
      else
        s.fail(value, "inspect.urgent_data: expected normalise or drop, got '" + text + "'");
    }
    i.reassembly_bytes =
        static_cast<uint32_t>(s.integer("reassembly_bytes", i.reassembly_bytes, 0, 1u << 24));
    i.reassembly_segments =
        static_cast<uint32_t>(s.integer("reassembly_segments", i.reassembly_segments, 0, 65535));
    i.reassembly_slots =
        static_cast<uint32_t>(s.integer("reassembly_slots", i.reassembly_slots, 0, 1u << 22));
    if (s.has("timeouts")) {
      const Section t = s.child("timeouts");
      t.allow_only({"half_open", "established", "closing"});
      constexpr double kDay = 86400;
      i.half_open_timeout_s = t.seconds("half_open", i.half_open_timeout_s, 0.001, kDay);
      i.established_timeout_s = t.seconds("established", i.established_timeout_s, 0.001, kDay);
      i.closing_timeout_s = t.seconds("closing", i.closing_timeout_s, 0.001, kDay);
    }
  }

  if (top.has("http")) {
    const Section s = top.child("http");
    s.allow_only({"max_header_bytes", "max_headers", "max_body_bytes", "methods",
                  "max_decoded_bytes", "max_decode_ratio", "json_max_depth"});
    HttpConfig& h = config.http;
    h.max_header_bytes =
        static_cast<uint32_t>(s.integer("max_header_bytes", h.max_header_bytes, 256, 1u << 20));
    h.max_headers = static_cast<uint32_t>(s.integer("max_headers", h.max_headers, 1, 10000));
    h.max_body_bytes = s.integer("max_body_bytes", h.max_body_bytes, 0, uint64_t{1} << 40);
    h.max_decoded_bytes = s.integer("max_decoded_bytes", h.max_decoded_bytes, 0, uint64_t{1} << 40);
    h.max_decode_ratio =
        static_cast<uint32_t>(s.integer("max_decode_ratio", h.max_decode_ratio, 1, 100000));
    h.json_max_depth =
        static_cast<uint32_t>(s.integer("json_max_depth", h.json_max_depth, 2, 1024));
    if (s.has("methods")) {
      h.methods = s.strings("methods", h.methods);
      if (h.methods.empty() || h.methods.size() > 12)
        s.fail(s.get("methods"), "http.methods: expected 1 to 12 methods");
      for (const std::string& method : h.methods) {
        const bool token =
            !method.empty() && method.size() <= 16 &&
            method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") == std::string::npos;
        if (!token || method == "CONNECT") {
          s.fail(s.get("methods"),
                 "http.methods: '" + method +
                     "' is not an upper-case method name (CONNECT is never allowed)");
        }
      }
    }
  }

  if (top.has("tiers")) parse_tiers(top, config);
  config.unknown_key = top.string("unknown_key", config.unknown_key);
  if (config.unknown_key != "deny" && config.tier(config.unknown_key) == nullptr) {
    top.fail(top.get("unknown_key"),
             "unknown_key: expected deny or the name of a tier in tiers, got '" +
                 config.unknown_key + "'");
  }
  const auto beside_config = [&source](std::string path) {
    const std::size_t slash = source.rfind('/');
    if (!path.empty() && !path.starts_with("/") && slash != std::string::npos)
      path = source.substr(0, slash + 1) + path;
    return path;
  };
  config.identities_path = beside_config(top.string("identities", ""));
  if (!config.tiers.empty() && config.identities_path.empty() && config.unknown_key == "deny") {
    top.fail(top.get("tiers"),
             "tiers: set with unknown_key: deny but no identities file: every request would be "
             "answered 401 (add 'identities: FILE' or name an anonymous tier in unknown_key)");
  }

  if (top.has("escalation")) parse_escalation(top, config);

  config.rules_path = beside_config(top.string("rules", ""));
  config.disclose_rule_id = top.boolean("disclose_rule_id", config.disclose_rule_id);

  if (top.has("audit")) {
    const Section s = top.child("audit");
    s.allow_only({"path", "max_file_bytes", "keep", "ring_records", "capture", "capture_bytes",
                  "capture_slots"});
    AuditConfig& a = config.audit;
    a.path = beside_config(s.string("path", a.path));
    a.max_file_bytes = s.integer("max_file_bytes", a.max_file_bytes, 4096, uint64_t{1} << 40);
    a.keep = static_cast<uint32_t>(s.integer("keep", a.keep, 0, 1000));
    a.ring_records = static_cast<uint32_t>(s.integer("ring_records", a.ring_records, 2, 1u << 20));
    if ((a.ring_records & (a.ring_records - 1)) != 0)
      s.fail(s.get("ring_records"), "audit.ring_records: expected a power of two");
    if (const YAML::Node capture = s.get("capture")) {
      const std::string text = capture.IsScalar() ? capture.Scalar() : "";
      if (text == "none") {
        a.capture = AuditCapture::kNone;
      } else if (text == "flagged") {
        a.capture = AuditCapture::kFlagged;
      } else if (text == "all") {
        a.capture = AuditCapture::kAll;
      } else {
        s.fail(capture, "audit.capture: expected none, flagged or all, got '" +
                            describe_node(capture) + "'");
      }
    }
    // The slot index is 16 bits in the record; a line holds at most 6 bytes per captured byte.
    a.capture_bytes = static_cast<uint32_t>(s.integer("capture_bytes", a.capture_bytes, 64, 65536));
    a.capture_slots = static_cast<uint32_t>(s.integer("capture_slots", a.capture_slots, 16, 65535));
  }

  if (top.has("management")) parse_management(top.child("management"), config, beside_config);

  if (top.has("stats")) {
    const Section s = top.child("stats");
    s.allow_only({"interval"});
    config.stats.interval_s = s.seconds("interval", config.stats.interval_s, 0, 3600);
  }
  return config;
}

}  // namespace

Config load_config_text(std::string_view text, const std::string& source_name) {
  return parse(parse_yaml_document(text, source_name), source_name);
}

Config load_config_file(const std::string& path) {
  return load_config_text(read_text_file(path, "config file"), path);
}

std::string_view embedded_default_config() {
  return kEmbeddedDefault;
}

}  // namespace sluice

namespace sluice {}  // namespace sluice
