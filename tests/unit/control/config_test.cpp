#include "sluice/config.hpp"

#include <gtest/gtest.h>

#include <string>

namespace sluice {
namespace {

std::string error_of(const std::string& yaml) {
  try {
    load_config_text(yaml, "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, EmbeddedDefaultIsValidAndMatchesTheDemoTopology) {
  const Config config = load_config_text(embedded_default_config(), "default");
  EXPECT_EQ(config.dataplane.client_port, "net_af_packet0,iface=sl-client,framecnt=4096");
  EXPECT_EQ(config.dataplane.server_port, "net_af_packet1,iface=sl-server,framecnt=4096");
  EXPECT_EQ(config.dataplane.workers, 1u);
  EXPECT_EQ(config.inspect.tcp_ports, std::vector<uint16_t>{8000});
  EXPECT_EQ(config.inspect.midstream, Policy::kDrop);
}

TEST(Config, EmptyDocumentGivesEveryDefault) {
  const Config config = load_config_text("", "empty.yaml");
  EXPECT_EQ(config.dataplane.flow_capacity, 65536u);
  EXPECT_EQ(config.inspect.other_traffic, Policy::kPass);
}

TEST(Config, ReadsTheIssueExample) {
  const Config config = load_config_text(R"(
dataplane:
  client_port: "net_af_packet0,iface=a"
  server_port: "net_af_packet1,iface=b"
  workers: 2
  eal_args: ["--no-huge", "-m", "1024"]
  flow_capacity: 1000
inspect:
  tcp_ports: [8000, 8080]
  other_traffic: drop
  midstream: pass
  on_flow_table_full: pass
  timeouts: { half_open: 5, established: 60.5, closing: 1 }
)",
                                         "x.yaml");
  EXPECT_EQ(config.dataplane.workers, 2u);
  EXPECT_EQ(config.dataplane.eal_args.size(), 3u);
  EXPECT_EQ(config.dataplane.flow_capacity, 1000u);
  EXPECT_TRUE(config.inspect.is_inspected_port(8080));
  EXPECT_FALSE(config.inspect.is_inspected_port(80));
  EXPECT_EQ(config.inspect.other_traffic, Policy::kDrop);
  EXPECT_EQ(config.inspect.midstream, Policy::kPass);
  EXPECT_DOUBLE_EQ(config.inspect.established_timeout_s, 60.5);
}

// Two tiers, a and b, and an identities file: the base of the escalation cases (6 lines).
const std::string kTwoTiers =
    "identities: i.yaml\ntiers:\n"
    "  a: { requests_per_second: 1, burst: 1, tokens_per_minute: 1, token_burst: 1,\n"
    "       max_concurrent: 1, max_body_bytes: 1, max_output_tokens: 1 }\n"
    "  b: { requests_per_second: 1, burst: 1, tokens_per_minute: 1, token_burst: 1,\n"
    "       max_concurrent: 1, max_body_bytes: 1, max_output_tokens: 1 }\n";

struct BadCase {
  std::string yaml;
  const char* expected;  // a piece of the message: file, line and column, key, expected form
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NameFileLineKeyAndExpectedForm) {
  const std::string message = error_of(GetParam().yaml);
  EXPECT_NE(message.find(GetParam().expected), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigErrors,
    ::testing::Values(
        BadCase{"dataplane:\n  wokers: 2\n",
                "test.yaml:2:3: unknown key 'dataplane.wokers' (expected one of: client_port"},
        BadCase{"inspect:\n  midstream: allow\n",
                "test.yaml:2:14: inspect.midstream: expected pass or drop, got 'allow'"},
        BadCase{"dataplane:\n  workers: 0\n",
                "test.yaml:2:12: dataplane.workers: expected an integer in [1, 64], got 0"},
        BadCase{"dataplane:\n  workers: two\n",
                "dataplane.workers: expected an integer in [1, 64], got 'two'"},
        BadCase{"dataplane:\n  workers: -1\n", "dataplane.workers: expected an integer"},
        BadCase{"inspect:\n  tcp_ports: [80, 70000]\n",
                "test.yaml:2:19: inspect.tcp_ports: expected TCP ports in [1, 65535], got '70000'"},
        BadCase{"inspect:\n  tcp_ports: 80\n", "inspect.tcp_ports: expected a list of TCP ports"},
        BadCase{"inspect:\n  timeouts:\n    idle: 3\n", "unknown key 'inspect.timeouts.idle'"},
        BadCase{"inspect:\n  timeouts: {closing: -3}\n",
                "inspect.timeouts.closing: expected a number of seconds"},
        BadCase{"dataplane: [1, 2]\n", "test.yaml:1:12: expected a mapping"},
        BadCase{"colour: blue\n",
                "unknown key 'colour' (expected one of: dataplane, inspect, http, stats, "
                "identities, tiers, unknown_key, audit, rules, disclose_rule_id, escalation, "
                "management)"},
        BadCase{"dataplane:\n  client_port: \"\"\n", "dataplane.client_port: must not be empty"},
        BadCase{"inspect: {tcp_ports: [80\n", "test.yaml:"},
        BadCase{"http:\n  methods: [POST, CONNECT]\n",
                "http.methods: 'CONNECT' is not an upper-case method name"},
        BadCase{"http:\n  methods: [post]\n",
                "http.methods: 'post' is not an upper-case method name"},
        BadCase{"http:\n  max_header_bytes: 10\n",
                "http.max_header_bytes: expected an integer in [256,"},
        BadCase{"tiers:\n  free: { requests_per_second: 1 }\n", "tiers.free: missing key 'burst'"},
        BadCase{"tiers:\n  Free!: {}\n", "test.yaml:2:3: tiers: 'Free!' is not a tier name"},
        BadCase{"unknown_key: guests\n",
                "test.yaml:1:14: unknown_key: expected deny or the name of a tier in tiers, got "
                "'guests'"},
        BadCase{"tiers:\n  t: { requests_per_second: 1, burst: 1, tokens_per_minute: 1, "
                "token_burst: 1, "
                "max_concurrent: 1, max_body_bytes: 1, max_output_tokens: 1, speed: 3 }\n",
                "unknown key 'tiers.t.speed'"},
        BadCase{"tiers:\n  t: { requests_per_second: 0, burst: 1, tokens_per_minute: 1, "
                "token_burst: 1, "
                "max_concurrent: 1, max_body_bytes: 1, max_output_tokens: 1 }\n",
                "tiers.t.requests_per_second: expected an integer in [1,"},
        BadCase{"tiers:\n  t: { requests_per_second: 1, burst: 1, tokens_per_minute: 1, "
                "token_burst: 1, "
                "max_concurrent: 1, max_body_bytes: 1, max_output_tokens: 1, paths: [v1] }\n",
                "tiers.t.paths: 'v1' is not a path prefix"},
        BadCase{"tiers:\n  t: { requests_per_second: 1, burst: 1, tokens_per_minute: 1, "
                "token_burst: 1, max_concurrent: 1, max_body_bytes: 1, max_output_tokens: 1 }\n",
                "test.yaml:2:3: tiers: set with unknown_key: deny but no identities file"},
        BadCase{"audit: {path: a.jsonl, ring_records: 1000}\n",
                "test.yaml:1:38: audit.ring_records: expected a power of two"},
        BadCase{"audit: {path: a.jsonl, keep: -1}\n", "audit.keep: expected an integer"},
        BadCase{"audit: {file: a.jsonl}\n", "unknown key 'audit.file'"},
        BadCase{"audit:\n  path: a.jsonl\n  capture: everything\n",
                "test.yaml:3:12: audit.capture: expected none, flagged or all, got 'everything'"},
        BadCase{"audit: {capture: [all]}\n", "audit.capture: expected none, flagged or all"},
        BadCase{"audit:\n  capture_bytes: 16\n",
                "test.yaml:2:18: audit.capture_bytes: expected an integer in [64, 65536], got 16"},
        BadCase{"audit: {capture_slots: 65536}\n",
                "audit.capture_slots: expected an integer in [16, 65535], got 65536"},
        BadCase{kTwoTiers + "escalation:\n  gold: {flags: 2, window: 1m, action: suspend, "
                            "duration: 1h}\n",
                "test.yaml:8:3: escalation.gold: no tier 'gold' in tiers"},
        BadCase{
            kTwoTiers + "escalation:\n  a: {flags: 2, window: 1m, action: demote, duration: 1h}\n",
            "escalation.a.to: required with action: demote"},
        BadCase{kTwoTiers + "escalation:\n  a: {flags: 2, window: 1m, action: demote, to: c, "
                            "duration: 1h}\n",
                "escalation.a.to: no tier 'c' in tiers"},
        BadCase{
            kTwoTiers + "escalation:\n  a: {flags: 2, window: ten, action: suspend, "
                        "duration: 1h}\n",
            "test.yaml:8:25: escalation.a.window: expected a duration (500ms, 30s, 10m, 1h, 2d)"},
        BadCase{
            kTwoTiers + "escalation:\n  a: {flags: 0, window: 1m, action: suspend, duration: 1h}\n",
            "escalation.a.flags: expected an integer in [1, 1000000], got 0"},
        BadCase{kTwoTiers + "escalation:\n  a: {flags: 2, window: 1m, action: ban, duration: 1h}\n",
                "escalation.a.action: expected demote or suspend, got 'ban'"},
        BadCase{kTwoTiers + "escalation:\n  a: {flags: 2, window: 1m, action: suspend, to: b, "
                            "duration: 1h}\n",
                "escalation.a.to: a suspension has no tier to go to"},
        BadCase{
            kTwoTiers +
                "escalation:\n  a: {flags: 2, window: 1m, action: demote, to: b, duration: 1h}\n"
                "  b: {flags: 2, window: 1m, action: demote, to: a, duration: 1h}\n",
            "escalation.a: demotions form a loop"}));

TEST(Config, ReadsEscalationSteps) {
  const Config config = load_config_text(
      kTwoTiers +
          "escalation:\n  a: {flags: 5, window: 10m, action: demote, to: b, duration: 2h}\n"
          "  b: {flags: 1, window: 90s, action: suspend, duration: 1500ms}\n",
      "test.yaml");
  ASSERT_EQ(config.escalation.size(), 2u);
  const EscalationConfig& a = *config.escalation_of("a");
  EXPECT_EQ(a.flags, 5u);
  EXPECT_EQ(a.window_ns, 600'000'000'000u);
  EXPECT_FALSE(a.suspend);
  EXPECT_EQ(a.to, "b");
  EXPECT_EQ(a.duration_ns, 7'200'000'000'000u);
  const EscalationConfig& b = *config.escalation_of("b");
  EXPECT_TRUE(b.suspend);
  EXPECT_EQ(b.window_ns, 90'000'000'000u);
  EXPECT_EQ(b.duration_ns, 1'500'000'000u);
}

TEST(Config, ReadsTheAuditSectionWithThePathBesideTheConfig) {
  const Config config = load_config_text(
      "audit: {path: logs/audit.jsonl, max_file_bytes: 1048576, keep: 3, ring_records: 1024}\n",
      "/etc/sluice/sluice.yaml");
  EXPECT_EQ(config.audit.path, "/etc/sluice/logs/audit.jsonl");
  EXPECT_EQ(config.audit.max_file_bytes, 1048576u);
  EXPECT_EQ(config.audit.keep, 3u);
  EXPECT_EQ(config.audit.ring_records, 1024u);
  EXPECT_TRUE(load_config_text("", "x.yaml").audit.path.empty()) << "no audit file by default";
}

TEST(Config, ReadsPromptCaptureOffByDefault) {
  const Config defaults = load_config_text("", "x.yaml");
  EXPECT_EQ(defaults.audit.capture, AuditCapture::kNone);
  EXPECT_EQ(defaults.audit.capture_bytes, 4096u);
  EXPECT_EQ(defaults.audit.capture_slots, 4096u);
  const std::pair<const char*, AuditCapture> cases[] = {{"none", AuditCapture::kNone},
                                                        {"flagged", AuditCapture::kFlagged},
                                                        {"all", AuditCapture::kAll}};
  for (const auto& [text, mode] : cases) {
    const Config config = load_config_text(
        std::string("audit: {capture: ") + text + ", capture_bytes: 512, capture_slots: 64}\n",
        "x.yaml");
    EXPECT_EQ(config.audit.capture, mode) << text;
    EXPECT_EQ(config.audit.capture_bytes, 512u);
    EXPECT_EQ(config.audit.capture_slots, 64u);
  }
}

TEST(Config, ReadsTiersWithModelOverridesAndUnknownKeyPolicy) {
  const Config config = load_config_text(R"(
identities: identities.yaml
tiers:
  free:     { requests_per_second: 1, burst: 3, tokens_per_minute: 20000, token_burst: 8000,
              max_concurrent: 2, max_body_bytes: 65536, max_output_tokens: 1024,
              models: ["gpt-4o-mini*", "llama-*"] }
  verified: { requests_per_second: 20, burst: 40, tokens_per_minute: 400000, token_burst: 100000,
              max_concurrent: 16, max_body_bytes: 1048576, max_output_tokens: 8192,
              model_limits: { "frontier-*": { requests_per_second: 2, burst: 4 } } }
unknown_key: free
)",
                                         "/etc/sluice/sluice.yaml");
  ASSERT_EQ(config.tiers.size(), 2u);
  const TierConfig* free = config.tier("free");
  ASSERT_NE(free, nullptr);
  EXPECT_EQ(free->limits, (TierLimits{1, 3, 20000, 8000, 2, 65536, 1024}));
  EXPECT_EQ(free->models, (std::vector<std::string>{"gpt-4o-mini*", "llama-*"}));
  EXPECT_EQ(free->paths.front(), "/v1/chat/completions");
  const TierConfig* verified = config.tier("verified");
  ASSERT_EQ(verified->model_limits.size(), 1u);
  EXPECT_EQ(verified->model_limits[0].pattern, "frontier-*");
  EXPECT_EQ(verified->model_limits[0].limits,
            (TierLimits{2, 4, 400000, 100000, 16, 1048576, 8192}));
  EXPECT_EQ(verified->model_limits[0].set, 0b11) << "requests_per_second and burst set";
  EXPECT_EQ(config.unknown_key, "free");
  EXPECT_EQ(config.identities_path, "/etc/sluice/identities.yaml");
}

TEST(Config, GlobsMatchModels) {
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("gpt-4o*", "gpt-4o-mini"));
  EXPECT_TRUE(glob_match("llama-?-70b", "llama-3-70b"));
  EXPECT_TRUE(glob_match("*-mini*", "gpt-4o-mini-2024"));
  EXPECT_FALSE(glob_match("gpt-4o*", "gpt-4"));
  EXPECT_FALSE(glob_match("llama-?-70b", "llama-31-70b"));
  EXPECT_FALSE(glob_match("", "x"));
  EXPECT_TRUE(glob_match("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(glob_match("a*b*c", "aXXbYY"));
}

TEST(Config, ReadsTheHttpLimits) {
  const Config config = load_config_text(
      "http:\n  max_body_bytes: 1024\n  methods: [POST, GET]\n  json_max_depth: 8\n", "h.yaml");
  EXPECT_EQ(config.http.max_body_bytes, 1024u);
  EXPECT_EQ(config.http.methods, (std::vector<std::string>{"POST", "GET"}));
  EXPECT_EQ(config.http.json_max_depth, 8u);
}

TEST(Config, MissingFileIsNamed) {
  try {
    load_config_file("/nonexistent/sluice.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/sluice.yaml: cannot open"),
              std::string::npos);
  }
}

TEST(Config, ReadsTheUrgentDataPolicyNormaliseByDefault) {
  EXPECT_EQ(load_config_text("", "u.yaml").inspect.urgent_data, UrgentPolicy::kNormalise);
  EXPECT_EQ(load_config_text("inspect:\n  urgent_data: drop\n", "u.yaml").inspect.urgent_data,
            UrgentPolicy::kDrop);
  try {
    load_config_text("inspect:\n  urgent_data: pass\n", "u.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "u.yaml:2:16: inspect.urgent_data: expected normalise or drop, got 'pass'"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace sluice
