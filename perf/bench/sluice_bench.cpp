// sluice-bench: the whole worker pipeline — classify, flow table, TCP, HTTP, identity, limits,
// canonicalisation, rule scan, enforcement, audit — on N worker lcores, fed complete TCP sessions
// built in memory from a profile (no NIC), with a raw Hyperscan scan of the same prompts as the
// reference. perf/README.md has the results and how to read them; perf/profiles/README.md the
// profiles. Built twice: `sluice-bench` on the appliance's libraries, and `sluice-bench-staged`
// on copies with the per-stage cycle counters (sluice/stage_clock.hpp) for the breakdown, which
// sluice-bench runs as a second process.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "profile.hpp"
#include "run.hpp"
#include "sluice/eal.hpp"
#include "sluice/identities.hpp"
#include "sluice/rules_loader.hpp"
#include "workload.hpp"

namespace sluice::bench {
namespace {

constexpr const char* kUsage = R"(usage: sluice-bench --profile NAME|FILE [options]

Runs Sluice's worker pipeline on N worker lcores over traffic built in memory from a profile
(perf/profiles/NAME.yaml): complete TCP sessions as Ethernet/IPv4/TCP frames in mbufs, replayed
lap after lap on fresh flows with a simulated clock. No NIC: frames come from memory and leave
through a sink that frees them. Reports packets/s, Gbit/s, requests/s, ns and cycles per packet,
CPU µs per request, the verdict mix, a per-stage breakdown (from sluice-bench-staged, a second
run with cycle counters compiled in), and a raw Hyperscan scan of the same prompts with the same
database (the scan bound).

options:
  --profile NAME|FILE   chat-1k, chat-4k, acks-only, unknown-key-flood, or a profile file
  --workers N|LIST      worker lcores: 4, or 1,2,4, or 1-14 (one run per count; default 1)
  --seconds S           timed seconds per run, after one untimed warm-up lap (default 10)
  --scan-seconds S      seconds of the scan-only reference per run (default seconds/4, >= 0.5)
  --audit PATH|none     where the audit writer thread writes the records (default /dev/null:
                        formatted, hash-chained and written, kept nowhere); none: no records
  --memory MB           EAL memory (default: what the workload needs, plus 256 MB)
  --no-breakdown        skip the sluice-bench-staged run
  --json                print one JSON object instead of the tables
  --plot FILE.png       draw the stage breakdown and the scaling over workers (matplotlib)
  --dump-requests FILE  write the lap's requests as JSON Lines (for perf/haproxy/compare.sh)
                        and exit
  --quiet               no live progress line on stderr
  --help

Ctrl-C (or SIGTERM) ends the run in progress, reports it as far as it went ("interrupted": true
in the JSON) and skips the rest.

exit status: 0 done (also when interrupted); 1 bad arguments, profile or config (FILE:LINE:COL
named); 3 the run's self-checks failed (frames dropped as malformed, out of window or midstream —
the workload is wrong — or mbufs leaked); 130 interrupted before any run began.
)";

// This binary is sluice-bench-staged: its libraries count cycles per stage.
#ifdef SLUICE_STAGE_CLOCK
constexpr bool kStaged = true;
#else
constexpr bool kStaged = false;
#endif

// SIGINT or SIGTERM: the run in progress ends early and is reported; the rest are skipped.
std::atomic<bool> g_interrupted{false};
void on_interrupt(int) {
  g_interrupted.store(true);
}

struct Arguments {
  std::string profile;
  std::vector<uint32_t> workers{1};
  double seconds = 10;
  std::optional<double> scan_seconds;
  std::string audit = "/dev/null";
  uint32_t memory_mb = 0;
  bool breakdown = true;
  bool json = false;
  bool quiet = false;
  bool stages_only =
      false;  // internal, from sluice-bench: the breakdown run alone, no scan reference
  std::string plot;
  std::string dump_requests;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "sluice-bench: %s\n(see sluice-bench --help)\n", message.c_str());
  std::exit(1);
}

double parse_number(const std::string& text, const std::string& option, double low, double high) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= low && value <= high))
    usage_error(option + ": expected a number from " + std::to_string(low) + " to " +
                std::to_string(high) + ", got '" + text + "'");
  return value;
}

std::vector<uint32_t> parse_workers(const std::string& text) {
  std::vector<uint32_t> counts;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const std::size_t dash = item.find('-');
    const auto first =
        static_cast<uint32_t>(parse_number(item.substr(0, dash), "--workers", 1, 127));
    const auto last =
        dash == std::string::npos
            ? first
            : static_cast<uint32_t>(parse_number(item.substr(dash + 1), "--workers", 1, 127));
    if (last < first) usage_error("--workers: '" + item + "' runs backwards");
    for (uint32_t n = first; n <= last; ++n) counts.push_back(n);
  }
  if (counts.empty()) usage_error("--workers: expected N, a list (1,2,4) or a range (1-14)");
  return counts;
}

Arguments parse_arguments(int argc, char** argv) {
  Arguments a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--profile") {
      a.profile = value();
    } else if (arg == "--workers") {
      a.workers = parse_workers(value());
    } else if (arg == "--seconds") {
      a.seconds = parse_number(value(), arg, 0.1, 86400);
    } else if (arg == "--scan-seconds") {
      a.scan_seconds = parse_number(value(), arg, 0.1, 86400);
    } else if (arg == "--audit") {
      a.audit = value();
    } else if (arg == "--memory") {
      a.memory_mb = static_cast<uint32_t>(parse_number(value(), arg, 64, 1 << 20));
    } else if (arg == "--no-breakdown") {
      a.breakdown = false;
    } else if (arg == "--json") {
      a.json = true;
    } else if (arg == "--quiet") {
      a.quiet = true;
    } else if (arg == "--plot") {
      a.plot = value();
    } else if (arg == "--dump-requests") {
      a.dump_requests = value();
    } else if (arg == "--stages-only") {
      a.stages_only = true;
    } else {
      usage_error("unknown argument '" + arg + "'");
    }
  }
  if (a.profile.empty()) usage_error("--profile is required");
  return a;
}

// Sessions and requests by kind: "3686 ok, 82 unknown_key, …".
std::string kinds_text(const std::array<uint32_t, kSessionKinds>& by_kind) {
  std::string text;
  for (std::size_t k = 0; k < kSessionKinds; ++k) {
    if (by_kind[k] == 0) continue;
    text += (text.empty() ? "" : ", ") + std::to_string(by_kind[k]) + " " +
            std::string(to_string(static_cast<SessionKind>(k)));
  }
  return text;
}

nlohmann::json by_kind_json(const std::array<uint32_t, kSessionKinds>& by_kind) {
  nlohmann::json j = nlohmann::json::object();
  for (std::size_t k = 0; k < kSessionKinds; ++k)
    j[std::string(to_string(static_cast<SessionKind>(k)))] = by_kind[k];
  return j;
}

// The counters that say the workload itself is wrong: a frame Sluice could not parse, or saw
// outside its flow's window or without a flow. They must stay 0.
constexpr Counter kWorkloadFaults[] = {
    Counter::drop_bad_ipv4_checksum, Counter::drop_bad_l4_checksum,  Counter::drop_midstream,
    Counter::drop_tcp_out_of_window, Counter::drop_bad_tcp_header,   Counter::drop_truncated_tcp,
    Counter::drop_flow_table_full,   Counter::drop_mbuf_alloc_failed};

nlohmann::json run_json(const RunResult& r, const std::optional<ScanResult>& scan) {
  const double hz = static_cast<double>(rte_get_tsc_hz());
  const double packets = static_cast<double>(std::max<uint64_t>(r.packets(), 1));
  const double decided = static_cast<double>(std::max<uint64_t>(r.decided(), 1));
  nlohmann::json j = {
      {"workers", r.workers},
      {"seconds", r.wall_seconds},
      {"laps", r.laps},
      {"packets", r.packets()},
      {"bytes", r.bytes()},
      {"requests", r.decided()},
      {"mpps", static_cast<double>(r.packets()) / r.wall_seconds / 1e6},
      {"gbps", static_cast<double>(r.bytes()) * 8 / r.wall_seconds / 1e9},
      {"requests_per_second", static_cast<double>(r.decided()) / r.wall_seconds},
      {"ns_per_packet", static_cast<double>(r.busy_cycles) / hz * 1e9 / packets},
      {"cycles_per_packet", static_cast<double>(r.busy_cycles) / packets},
      {"harness_ns_per_packet", static_cast<double>(r.harness_cycles) / hz * 1e9 / packets},
      {"cpu_us_per_request",
       r.decided() == 0 ? nlohmann::json(nullptr)
                        : nlohmann::json(static_cast<double>(r.busy_cycles) / hz * 1e6 / decided)},
      {"wait_share",
       static_cast<double>(r.wait_cycles) /
           std::max(1.0, static_cast<double>(r.busy_cycles + r.harness_cycles + r.wait_cycles))},
      {"audit_records_written", r.audit_written},
      {"audit_records_dropped", r.audit_dropped},
      {"frames_skipped_held", r.frames_skipped_held},
      {"mbufs_leaked", r.mbufs_leaked}};
  nlohmann::json verdicts = nlohmann::json::object();
  for (std::size_t i = 0; i < kRequestReasonCount; ++i) {
    if (r.requests[i] != 0)
      verdicts[std::string(info_of(static_cast<RequestReason>(i)).name)] = r.requests[i];
  }
  j["verdicts"] = verdicts;
  nlohmann::json drops = nlohmann::json::object();
  for (std::size_t c = 0; c < kCounterCount; ++c) {
    const std::string_view name = kCounterNames[c];
    if (name.starts_with("drop_") && r.counters.values[c] != 0)
      drops[std::string(name)] = r.counters.values[c];
  }
  j["drops"] = drops;
  nlohmann::json sent = nlohmann::json::object();
  for (const Counter c : {Counter::denials_sent, Counter::rst_sent, Counter::flows_created,
                          Counter::flows_expired, Counter::flows_evicted})
    sent[std::string(counter_name(c))] = r.counters[c];
  j["pipeline"] = sent;
  if (scan) {
    const double scan_rps = static_cast<double>(scan->requests) / scan->wall_seconds;
    j["scan_only_requests_per_second"] = scan_rps;
    j["scan_only_gbps"] = static_cast<double>(scan->bytes) * 8 / scan->wall_seconds / 1e9;
    j["scan_bound_fraction"] = j["requests_per_second"].get<double>() / std::max(scan_rps, 1.0);
  } else {
    j["scan_only_requests_per_second"] = nullptr;
    j["scan_bound_fraction"] = nullptr;
  }
  uint64_t stage_total = 0;
  for (const uint64_t c : r.stage_cycles) stage_total += c;
  if (kStaged && stage_total != 0) {
    nlohmann::json stages = nlohmann::json::object();
    for (std::size_t s = 0; s < kStages; ++s) {
      stages[std::string(stage_clock::kNames[s])] = {
          {"cycles_per_packet", static_cast<double>(r.stage_cycles[s]) / packets},
          {"entries_per_packet", static_cast<double>(r.stage_entries[s]) / packets},
          {"share", static_cast<double>(r.stage_cycles[s]) / static_cast<double>(stage_total)}};
    }
    j["stages"] = stages;
    j["instrumented_cycles_per_packet"] =
        static_cast<double>(r.stage_raw_cycles - r.harness_cycles - r.wait_cycles) / packets;
    j["corrected_cycles_per_packet"] = static_cast<double>(stage_total) / packets;
  }
  return j;
}

// The breakdown of a staged run, its shares applied to `ns_per_packet` (the plain run's).
nlohmann::json stage_summary(const nlohmann::json& staged_run, double ns_per_packet) {
  nlohmann::json stages = staged_run["stages"];
  for (auto& [name, stage] : stages.items())
    stage["ns_per_packet"] = stage["share"].get<double>() * ns_per_packet;
  return {{"workers", staged_run["workers"]},
          {"instrumented_cycles_per_packet", staged_run["instrumented_cycles_per_packet"]},
          {"corrected_cycles_per_packet", staged_run["corrected_cycles_per_packet"]},
          {"instrumented_ns_per_packet", staged_run["ns_per_packet"]},
          {"stages", stages}};
}

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs sluice-bench-staged (beside this binary) for the breakdown; its JSON, or null.
nlohmann::json staged_breakdown(const Arguments& a, const std::string& profile_path) {
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  const std::filesystem::path staged = self.parent_path() / "sluice-bench-staged";
  if (!std::filesystem::exists(staged)) {
    std::fprintf(stderr, "sluice-bench: %s is missing: no stage breakdown\n", staged.c_str());
    return nullptr;
  }
  const double seconds = std::min(a.seconds, 5.0);
  std::string command = shell_quote(staged.string()) + " --stages-only --json --quiet --profile " +
                        shell_quote(profile_path) + " --workers " +
                        std::to_string(a.workers.back()) + " --seconds " + std::to_string(seconds) +
                        " --audit " + shell_quote(a.audit);
  if (a.memory_mb != 0) command += " --memory " + std::to_string(a.memory_mb);
  if (!a.quiet)
    std::fprintf(stderr,
                 "sluice-bench: stage breakdown: sluice-bench-staged, %u worker(s), %.1f s\n",
                 a.workers.back(), seconds);
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return nullptr;
  std::string out;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  const int status = pclose(pipe);
  if (status != 0) {
    std::fprintf(stderr, "sluice-bench: sluice-bench-staged failed (status %d): no breakdown\n",
                 status);
    return nullptr;
  }
  try {
    return nlohmann::json::parse(out);
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "sluice-bench: cannot read sluice-bench-staged's output: %s\n", e.what());
    return nullptr;
  }
}

std::string si(double value) {
  char text[32];
  if (value >= 1e6)
    std::snprintf(text, sizeof text, "%.2f M", value / 1e6);
  else if (value >= 1e3)
    std::snprintf(text, sizeof text, "%.1f k", value / 1e3);
  else
    std::snprintf(text, sizeof text, "%.0f", value);
  return text;
}

void print_report(const nlohmann::json& report) {
  const nlohmann::json& w = report["workload"];
  std::printf("sluice-bench: %s — %s\n", report["profile"].get<std::string>().c_str(),
              report["description"].get<std::string>().c_str());
  const bool requests = w["requests_per_lap"].get<uint64_t>() > 0;
  std::printf(
      "workload: %s per lap (%s requests), %" PRIu64
      " frames, %.1f MB; simulated "
      "offered load %s %s/s\n",
      w["sessions_text"].get<std::string>().c_str(),
      requests ? w["requests_text"].get<std::string>().c_str() : "no",
      w["frames_per_lap"].get<uint64_t>(), w["bytes_per_lap"].get<double>() / 1e6,
      si(w[requests ? "offered_requests_per_second" : "offered_packets_per_second"].get<double>())
          .c_str(),
      requests ? "requests" : "packets");
  std::printf("rules: %s\nprompts: %s\n", report["rules"].get<std::string>().c_str(),
              report["prompts"].get<std::string>().c_str());
  std::printf("\n%-8s %8s %8s %12s %10s %10s %10s %12s %14s %9s\n", "workers", "Mpps", "Gbit/s",
              "requests/s", "ns/packet", "cyc/packet", "harness ns", "CPU µs/req", "scan-only r/s",
              "of bound");
  for (const nlohmann::json& r : report["runs"]) {
    const bool scanned = !r["scan_only_requests_per_second"].is_null();
    char cpu[32] = "-", bound[32] = "-";
    if (!r["cpu_us_per_request"].is_null())
      std::snprintf(cpu, sizeof cpu, "%.2f", r["cpu_us_per_request"].get<double>());
    if (scanned)
      std::snprintf(bound, sizeof bound, "%.1f%%", 100 * r["scan_bound_fraction"].get<double>());
    std::printf(
        "%-8u %8.3f %8.2f %12s %10.0f %10.0f %10.0f %12s %14s %9s\n", r["workers"].get<unsigned>(),
        r["mpps"].get<double>(), r["gbps"].get<double>(),
        si(r["requests_per_second"].get<double>()).c_str(), r["ns_per_packet"].get<double>(),
        r["cycles_per_packet"].get<double>(), r["harness_ns_per_packet"].get<double>(), cpu,
        scanned ? si(r["scan_only_requests_per_second"].get<double>()).c_str() : "-", bound);
  }
  const nlohmann::json& last = report["runs"].back();
  std::printf("\nverdicts (%u worker(s), %.1f s):", last["workers"].get<unsigned>(),
              last["seconds"].get<double>());
  for (const auto& [name, count] : last["verdicts"].items())
    std::printf(" %s %" PRIu64, name.c_str(), count.get<uint64_t>());
  std::printf("\ndrops:");
  for (const auto& [name, count] : last["drops"].items())
    std::printf(" %s %" PRIu64, name.c_str(), count.get<uint64_t>());
  std::printf("%s\n", last["drops"].contains("drop_tcp_killed_flow")
                          ? "  (killed flow: what clients send after Sluice answered and closed)"
                          : "");
  std::printf("audit: %" PRIu64 " records written, %" PRIu64 " dropped\n",
              last["audit_records_written"].get<uint64_t>(),
              last["audit_records_dropped"].get<uint64_t>());
  if (report.contains("stages")) {
    const nlohmann::json& s = report["stages"];
    std::printf(
        "\nstage breakdown (sluice-bench-staged, %u worker(s): %.0f cycles/packet counted, %.0f "
        "less the counters' own cost; shares scaled to this run's %.0f ns/packet):\n",
        s["workers"].get<unsigned>(), s["instrumented_cycles_per_packet"].get<double>(),
        s["corrected_cycles_per_packet"].get<double>(), last["ns_per_packet"].get<double>());
    for (const std::string_view name : stage_clock::kNames) {  // in data-path order
      const nlohmann::json& stage = s["stages"][std::string(name)];
      std::printf("  %-13s %5.1f %%  %8.1f ns/packet\n", std::string(name).c_str(),
                  100 * stage["share"].get<double>(), stage["ns_per_packet"].get<double>());
    }
  }
}

int run(int argc, char** argv) {
  Arguments a = parse_arguments(argc, argv);
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  const std::string profile_path = resolve_profile_path(a.profile, SLUICE_PROFILES_DIR);
  const BenchProfile profile = load_profile(profile_path);
  const Config config = load_config_file(profile.config_path);
  for (const char* tier : {"standard", "capped"}) {
    if (config.tier(tier) == nullptr)
      throw ConfigError(profile.config_path + ": tiers: sluice-bench needs a tier named " + tier);
  }

  std::shared_ptr<const RuleDatabase> db;
  std::string rules_text = "none";
  std::vector<Rule> rules;
  if (!profile.rule_paths.empty()) {
    rules = load_rule_files(profile.rule_paths);
    RuleCompileOptions options;
    options.check_examples = false;
    const RuleCompileResult compiled = compile_rules(rules, options);
    db = compiled.database;
    char text[160];
    std::snprintf(text, sizeof text, "%zu rules, compiled in %.2f s, database %.2f MB",
                  rules.size(), compiled.compile_seconds,
                  static_cast<double>(db->database_bytes()) / 1e6);
    rules_text = text;
  }
  const Workload workload = build_workload(profile, db.get(), rules);
  if (profile.malicious_share > 0)
    rules_text += "; " + std::to_string(workload.attack_prompts_usable) +
                  " attack prompts blocked in tier standard";

  if (!a.dump_requests.empty()) {
    const TierConfig& standard = *config.tier("standard");
    const TierConfig& capped = *config.tier("capped");
    std::ofstream out(a.dump_requests);
    out << request_mix_jsonl(profile, workload, standard.limits.requests_per_second,
                             standard.limits.burst, capped.limits.requests_per_second,
                             capped.limits.burst);
    if (!out) throw StartupError(a.dump_requests + ": cannot write");
    std::fprintf(stderr, "sluice-bench: %zu requests written to %s\n", workload.requests.size(),
                 a.dump_requests.c_str());
    return 0;
  }

  const uint32_t max_workers = *std::max_element(a.workers.begin(), a.workers.end());
  // An mbuf of the default size takes ≈ 2.4 KB with its header and the pool's own.
  const auto frames_mb =
      static_cast<uint32_t>(static_cast<double>(workload.frames.size()) * 3 / 1024);
  init_bench_eal(max_workers, a.memory_mb != 0 ? a.memory_mb : frames_mb + 512);
  const auto identities =
      load_identities_text(workload.identities_yaml, "<sluice-bench identities>");
  LimiterStore limiters;
  PolicySource policy(build_policy(config, identities, limiters, db, max_workers));
  BenchRunner runner(config, workload, policy);

  const double lap_seconds = static_cast<double>(workload.lap_ns) / 1e9;
  nlohmann::json report = {
      {"profile", profile.name},
      {"description", profile.description},
      {"rules", rules_text},
      {"prompts", workload.prompt_source},
      {"tsc_hz", rte_get_tsc_hz()},
      {"workload",
       {{"sessions_per_lap", workload.sessions},
        {"sessions_text", kinds_text(workload.sessions_by_kind)},
        {"requests_per_lap", workload.requests.size()},
        {"requests_text", kinds_text(workload.requests_by_kind)},
        {"requests_by_kind", by_kind_json(workload.requests_by_kind)},
        {"sessions_by_kind", by_kind_json(workload.sessions_by_kind)},
        {"frames_per_lap", workload.lap_packets()},
        {"bytes_per_lap", static_cast<double>(workload.lap_bytes())},
        {"lap_seconds", lap_seconds},
        {"offered_requests_per_second",
         static_cast<double>(workload.requests.size()) / lap_seconds},
        {"offered_packets_per_second", static_cast<double>(workload.lap_packets()) / lap_seconds}}},
      {"runs", nlohmann::json::array()}};

  // Warm-up: until the flows closed in the first lap have expired (steady table sizes).
  const auto warmup_laps =
      static_cast<uint64_t>(std::ceil(config.inspect.closing_timeout_s / lap_seconds) + 1);
  report["workload"]["warmup_laps"] = warmup_laps;
  bool faults = false;
  uint64_t clock = 1'000'000'000;
  for (const uint32_t workers : a.workers) {
    if (g_interrupted.load()) break;
    RunOptions options;
    options.interrupted = &g_interrupted;
    options.workers = workers;
    options.seconds = a.seconds;
    options.audit_path = a.audit;
    options.progress = !a.quiet;
    options.clock_start_ns = clock;
    options.warmup_laps = warmup_laps;
    const RunResult result = runner.run(options);
    clock = result.end_clock_ns + 10'000'000'000ULL;  // the next run starts 10 s later
    std::optional<ScanResult> scan;
    if (db && !a.stages_only && !g_interrupted.load())
      scan = runner.scan_reference(*db, workers,
                                   a.scan_seconds.value_or(std::max(0.5, a.seconds / 4)));
    nlohmann::json j = run_json(result, scan);
    for (const Counter c : kWorkloadFaults) {
      if (result.counters[c] != 0) {
        std::fprintf(stderr, "sluice-bench: self-check: %" PRIu64 " frames counted as %s\n",
                     result.counters[c], std::string(counter_name(c)).c_str());
        faults = true;
      }
    }
    if (result.mbufs_leaked != 0 || result.frames_skipped_held != 0) {
      std::fprintf(stderr,
                   "sluice-bench: self-check: %" PRIu64 " mbufs leaked, %" PRIu64
                   " frames still held\n",
                   result.mbufs_leaked, result.frames_skipped_held);
      faults = true;
    }
    report["runs"].push_back(j);
  }
  if (report["runs"].empty()) {  // interrupted before the first run began
    std::fprintf(stderr, "sluice-bench: interrupted before any run\n");
    return 130;
  }
  // The top level repeats the last run's figures (the issue's one object), then the runs.
  const nlohmann::json& last = report["runs"].back();
  for (const auto& [key, value] : last.items()) {
    if (key != "stages") report[key] = value;
  }
  // sluice-bench-staged run on its own: its breakdown, scaled to its own (counted) time.
  if (last.contains("stages")) report["stages"] = stage_summary(last, last["ns_per_packet"]);
  if (g_interrupted.load()) {
    report["interrupted"] = true;
    std::fprintf(stderr, "sluice-bench: interrupted: the last run is reported as far as it went\n");
  }
  if (a.breakdown && !report.contains("stages") && !g_interrupted.load()) {
    const nlohmann::json staged = staged_breakdown(a, profile_path);
    if (!staged.is_null() && staged["runs"].back().contains("stages"))
      report["stages"] = stage_summary(staged["runs"].back(), last["ns_per_packet"]);
  }
  if (a.json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    print_report(report);
  }
  if (!a.plot.empty()) {
    const std::string data = a.plot + ".json";
    std::ofstream(data) << report.dump(2);
    const std::string command = "/usr/bin/python3 " +
                                shell_quote(std::string(SLUICE_PERF_DIR) + "/plot_bench.py") + " " +
                                shell_quote(data) + " " + shell_quote(a.plot);
    if (std::system(command.c_str()) != 0) {
      std::fprintf(stderr, "sluice-bench: the plot failed (needs python3-matplotlib): %s\n",
                   command.c_str());
      faults = true;
    } else if (!a.quiet) {
      std::fprintf(stderr, "sluice-bench: plot written to %s (data: %s)\n", a.plot.c_str(),
                   data.c_str());
    }
  }
  return faults ? 3 : 0;
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) {
  try {
    const int status = sluice::bench::run(argc, argv);
    rte_eal_cleanup();  // after the runner let go of its pools
    return status;
  } catch (const sluice::ConfigError& e) {
    std::fprintf(stderr, "sluice-bench: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-bench: %s\n", e.what());
    return 1;
  }
}
