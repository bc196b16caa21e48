// sluice: the appliance (`sluice [options] [-- EAL args]`) and the offline replay
// (`sluice replay …`). Start-up stages: command line → config → EAL → ports → workers.
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <fstream>

#include "sluice/bridge.hpp"
#include "sluice/config.hpp"
#include "sluice/eal.hpp"
#include "sluice/policy.hpp"
#include "sluice/replay.hpp"

namespace {

constexpr int kExitUsage = 2;
constexpr std::string_view kVersion = "0.1.0";

constexpr std::string_view kMainHelp = R"(Usage: sluice [OPTIONS] [-- EAL_ARGS...]
       sluice replay --help

Sluice is an inline admission filter for LLM inference traffic: a transparent bridge between a
client-side port and a server-side port that follows every TCP flow on the inspected ports.

Options:
  -c, --config FILE         YAML configuration (default: the embedded default, see
                            --print-default-config; it bridges net_af_packet ports on the
                            interfaces sl-client and sl-server made by tools/topology.sh)
      --workers N           override dataplane.workers
      --duration SECONDS    stop by itself after SECONDS (default: run until SIGINT/SIGTERM)
      --stats-interval S    live stats line every S seconds, 0 for none (overrides stats.interval)
      --check-config        load and validate the configuration (and the identities file it
                            names, against its tiers), print it is valid, exit
      --pid-file FILE       write the process id to FILE while running, for `sluicectl reload`
                            (default: /run/sluice.pid)
      --no-pid-file         write none
      --print-default-config
                            print the embedded default configuration and exit
  -h, --help                this text
      --version             print the version

Arguments after `--` go to DPDK's EAL unchanged, after dataplane.eal_args (for example
`-- --lcores 0@0,1@1` or `-- --log-level=pmd.net.af_packet:debug`).

While running, one line per stats interval shows rx/tx packets per second and Mbit/s for each
side, active flows, drops by reason and requests admitted and denied (by status).

The main thread also serves management (config section `management`): Prometheus metrics on
GET http://127.0.0.1:9091/metrics (management.listen; "" for none) and the control socket
/run/sluice.sock (management.socket, mode 0660) that `sluicectl stats`, `top`, `reload` and
`drain` use. The start fails, naming it, when the address is in use or another sluice listens
on the socket. README.md, "Operating", lists every metric and the socket's commands.

SIGHUP (or `sluicectl reload`) reloads tiers, unknown_key, the identities file and the rule
database without a restart: the new set is built and validated off the data path and swapped in
whole; a bad file leaves the running set in place and the reason is printed (and, over the
socket, answered). Limiter levels and requests in flight carry over. Other sections of the
config take effect at the next start. `sluicectl drain` stops new connections on inspected
ports (their SYNs are answered with a RST) and lets flows in progress finish.
SIGINT or SIGTERM stops the workers, flushes what is buffered (the audit trail included) and
prints a summary table of every counter; the exit status is 0 when every mbuf was returned to
the pool, 3 when some were not, 1 on a start-up error, 2 on a usage or config error.
)";

constexpr std::string_view kReplayHelp =
    R"(Usage: sluice replay --in CAPTURE.pcap --out-client TO_CLIENT.pcap --out-server TO_SERVER.pcap
                    [--config FILE] [--server-net CIDR]... [--audit FILE] [--prompts FILE]
                    [--reload-at N[:CONFIG]]... [--arrived-on N:SIDE]... [--quiet]

Runs Sluice's worker pipeline over a capture, in order, on one worker, with time taken from the
packet timestamps, and writes what Sluice emits toward each side. The same capture and config
always give byte-identical outputs.

Options:
  -c, --config FILE       YAML configuration (default: the embedded default). The inspect, http,
                          tiers, unknown_key and identities settings and dataplane.flow_capacity
                          apply; ports, workers, EAL arguments and audit.path are ignored.
      --in FILE           input capture (pcap or pcapng, Ethernet link type)
      --out-client FILE   pcap of what Sluice sends toward the client side
      --out-server FILE   pcap of what Sluice sends toward the server side
      --server-net CIDR   addresses in CIDR are on the server side (repeatable; e.g. 198.18.1.0/24)
      --audit FILE        write the audit trail: one JSON line per request decision, exactly as
                          the appliance writes them (admitted requests when their response
                          ends), with the packets' timestamps
      --prompts FILE      write, per request, one JSON line of what the rule scanner sees: method,
                          target, outcome (reason and HTTP status), model, token estimate and the
                          canonical prompt text. Prompts are sensitive: only written when asked;
                          API keys are never written.
      --reload-at N[:CONFIG]
                          just before packet N (1-based), load the policy again as SIGHUP does
                          live: from CONFIG, or the --config file re-read, with the identities
                          file and rule database it names; tiers, unknown_key, identities, rules
                          and disclose_rule_id are taken from it, limiter levels carry over, and
                          requests whose head was read before packet N are decided under the old
                          policy. A bad file is reported (FILE:LINE:COL) and the running policy
                          stays. Repeatable, N increasing.
      --arrived-on N:SIDE packet N (1-based) arrived on SIDE (client or server), whatever the
                          rule below says: how a capture holds a frame whose addresses claim
                          the other side than the port it came in on (repeatable)
      --quiet             no summary table (and no line per reload done)
  -h, --help              this text

Which side a packet arrived on: TCP packets by their flow's initiator (the SYN sender is the
client); other packets by source address: addresses that answered a SYN on an inspected port
(sent a SYN-ACK) and addresses inside any --server-net are on the server side, all others
(and frames without an address) on the client side. Frames with bad checksums are read like any
other; on inspected flows inspect.bad_checksum decides (counted either way).
The summary counts policy_reloads (done), policy_reload_failures and policy_switches (policies
the worker took), and ends with mbufs_in_use_after_run, which must be 0; the exit status is 0 on
success (a failed reload included), 3 if mbufs were lost, 1 on an error with the files, 2 on a
usage or config error.
)";

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

void on_signal(int) {
  g_stop.store(true);
}

void on_hangup(int) {
  g_reload.store(true);
}

// Removes the pid file it wrote when it goes.
class PidFile {
 public:
  explicit PidFile(std::string path) : path_(std::move(path)) {
    if (path_.empty()) return;
    std::ofstream out(path_);
    out << getpid() << '\n';
    if (!out) {
      std::fprintf(stderr,
                   "sluice: warning: cannot write pid file %s; `sluicectl reload` will "
                   "need --pid\n",
                   path_.c_str());
      path_.clear();
    }
  }
  ~PidFile() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::string path_;
};

[[noreturn]] void usage_error(const std::string& message, std::string_view command) {
  std::fprintf(stderr, "sluice: %s\nTry '%s --help'.\n", message.c_str(), command.data());
  std::exit(kExitUsage);
}

// Returns the value of an option that takes one; accepts "--opt value" and "--opt=value".
class Arguments {
 public:
  Arguments(int argc, char** argv, int first, std::string_view command)
      : args_(argv + first, argv + argc), command_(command) {}

  bool done() const { return index_ >= args_.size(); }
  std::string next() { return args_[index_++]; }
  std::string value(const std::string& option, const std::string& inline_value) {
    if (!inline_value.empty()) return inline_value;
    if (done()) usage_error("option " + option + " needs a value", command_);
    return next();
  }
  std::vector<std::string> rest() {
    std::vector<std::string> remaining(args_.begin() + static_cast<long>(index_), args_.end());
    index_ = args_.size();
    return remaining;
  }

 private:
  std::vector<std::string> args_;
  std::size_t index_ = 0;
  std::string_view command_;
};

double parse_seconds(const std::string& option, const std::string& text, std::string_view command) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= 0) || value > 1e7) {
    usage_error(option + ": expected a number of seconds, got '" + text + "'", command);
  }
  return value;
}

// `--reload-at N[:CONFIG]`: N a packet index from 1; CONFIG may hold ':' itself.
sluice::ReplayReload parse_reload_at(const std::string& text, std::string_view command) {
  const std::size_t colon = text.find(':');
  const std::string digits = text.substr(0, colon);
  sluice::ReplayReload point;
  const auto [end, error] =
      std::from_chars(digits.data(), digits.data() + digits.size(), point.packet);
  if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() ||
      point.packet == 0) {
    usage_error(
        "--reload-at: expected N[:CONFIG] with N a packet number from 1, got '" + text + "'",
        command);
  }
  if (colon != std::string::npos) {
    point.config = text.substr(colon + 1);
    if (point.config.empty()) usage_error("--reload-at '" + text + "': CONFIG is empty", command);
  }
  return point;
}

sluice::Config load(const std::string& path) {
  if (path.empty())
    return sluice::load_config_text(sluice::embedded_default_config(), "<embedded default>");
  return sluice::load_config_file(path);
}

int main_bridge(int argc, char** argv) {
  constexpr std::string_view command = "sluice";
  Arguments args(argc, argv, 1, command);
  std::string config_path;
  sluice::BridgeOptions options;
  double stats_interval = -1;
  long workers = 0;
  bool check_only = false;
  std::string pid_file = "/run/sluice.pid";
  while (!args.done()) {
    const std::string arg = args.next();
    const std::size_t equals = arg.find('=');
    const std::string name = arg.starts_with("--") ? arg.substr(0, equals) : arg;
    const std::string inline_value =
        arg.starts_with("--") && equals != std::string::npos ? arg.substr(equals + 1) : "";
    if (name == "-h" || name == "--help") {
      std::fputs(kMainHelp.data(), stdout);
      return 0;
    } else if (name == "--version") {
      std::printf("sluice %s\n", kVersion.data());
      return 0;
    } else if (name == "--print-default-config") {
      std::fputs(sluice::embedded_default_config().data(), stdout);
      return 0;
    } else if (name == "-c" || name == "--config") {
      config_path = args.value(name, inline_value);
    } else if (name == "--duration") {
      options.duration_s = parse_seconds(name, args.value(name, inline_value), command);
    } else if (name == "--stats-interval") {
      stats_interval = parse_seconds(name, args.value(name, inline_value), command);
    } else if (name == "--workers") {
      const std::string text = args.value(name, inline_value);
      workers = std::strtol(text.c_str(), nullptr, 10);
      if (workers < 1 || workers > 64 ||
          text.find_first_not_of("0123456789") != std::string::npos) {
        usage_error("--workers: expected an integer in [1, 64], got '" + text + "'", command);
      }
    } else if (name == "--check-config") {
      check_only = true;
    } else if (name == "--pid-file") {
      pid_file = args.value(name, inline_value);
    } else if (name == "--no-pid-file") {
      pid_file.clear();
    } else if (name == "--") {
      options.extra_eal_args = args.rest();
    } else {
      usage_error("unknown option '" + arg + "'", command);
    }
  }

  sluice::Config config;
  sluice::LimiterStore limiter_states;
  std::shared_ptr<const sluice::AdmissionPolicy> policy;
  try {
    config = load(config_path);
    if (workers > 0) config.dataplane.workers = static_cast<uint32_t>(workers);
    if (stats_interval >= 0) config.stats.interval_s = stats_interval;
    policy = sluice::load_policy(config, limiter_states, config.dataplane.workers);
  } catch (const sluice::ConfigError& e) {
    std::fprintf(stderr, "sluice: %s\n", e.what());
    return kExitUsage;
  }
  if (check_only) {
    std::printf("%s: valid (%s)\n", config.source.c_str(), policy->summary().c_str());
    return 0;
  }

  sluice::PolicySource policy_source(policy);
  options.policy = &policy_source;
  options.reload_requested = &g_reload;
  options.limiters = &limiter_states;
  options.version = std::string(kVersion);
  options.reload = [&config_path, &limiter_states, &policy_source, &config] {
    // Only the admission part of the config (tiers, unknown_key, identities, rules) is taken
    // from the new file; each worker gets a scratch fitting the new rules and the running ones.
    return sluice::load_policy(load(config_path), limiter_states, config.dataplane.workers,
                               policy_source.current().get());
  };
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_hangup);
  const PidFile pid(pid_file);
  try {
    return sluice::run_bridge(config, options, g_stop);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice: %s\n", e.what());
    return 1;
  }
}

int main_replay(int argc, char** argv) {
  constexpr std::string_view command = "sluice replay";
  Arguments args(argc, argv, 2, command);
  std::string config_path;
  sluice::ReplayOptions options;
  while (!args.done()) {
    const std::string arg = args.next();
    const std::size_t equals = arg.find('=');
    const std::string name = arg.starts_with("--") ? arg.substr(0, equals) : arg;
    const std::string inline_value =
        arg.starts_with("--") && equals != std::string::npos ? arg.substr(equals + 1) : "";
    if (name == "-h" || name == "--help") {
      std::fputs(kReplayHelp.data(), stdout);
      return 0;
    } else if (name == "-c" || name == "--config") {
      config_path = args.value(name, inline_value);
    } else if (name == "--in") {
      options.input = args.value(name, inline_value);
    } else if (name == "--out-client") {
      options.out_client = args.value(name, inline_value);
    } else if (name == "--out-server") {
      options.out_server = args.value(name, inline_value);
    } else if (name == "--server-net") {
      try {
        options.server_nets.push_back(sluice::parse_cidr(args.value(name, inline_value)));
      } catch (const std::invalid_argument& e) {
        usage_error("--server-net: " + std::string(e.what()), command);
      }
    } else if (name == "--prompts") {
      options.prompts = args.value(name, inline_value);
    } else if (name == "--audit") {
      options.audit = args.value(name, inline_value);
    } else if (name == "--arrived-on") {
      const std::string text = args.value(name, inline_value);
      const std::size_t colon = text.find(':');
      const std::string digits = text.substr(0, colon);
      const std::string side = colon == std::string::npos ? "" : text.substr(colon + 1);
      sluice::ReplayArrival arrival;
      const auto [end, error] =
          std::from_chars(digits.data(), digits.data() + digits.size(), arrival.packet);
      if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() ||
          arrival.packet == 0 || (side != "client" && side != "server")) {
        usage_error(
            "--arrived-on: expected N:client or N:server with N a packet number from 1, "
            "got '" +
                text + "'",
            command);
      }
      arrival.server = side == "server";
      options.arrivals.push_back(arrival);
    } else if (name == "--reload-at") {
      sluice::ReplayReload point = parse_reload_at(args.value(name, inline_value), command);
      if (!options.reloads.empty() && point.packet <= options.reloads.back().packet) {
        usage_error("--reload-at: packet " + std::to_string(point.packet) + " after packet " +
                        std::to_string(options.reloads.back().packet) +
                        "; reload points must increase",
                    command);
      }
      options.reloads.push_back(std::move(point));
    } else if (name == "--quiet") {
      options.quiet = true;
    } else {
      usage_error("unknown option '" + arg + "'", command);
    }
  }
  if (options.input.empty()) usage_error("--in is required", command);
  if (options.out_client.empty()) usage_error("--out-client is required", command);
  if (options.out_server.empty()) usage_error("--out-server is required", command);

  sluice::Config config;
  sluice::LimiterStore limiter_states;  // outlives the policy whose buckets live in it
  try {
    config = load(config_path);
    options.policy = sluice::load_policy(config, limiter_states);
  } catch (const sluice::ConfigError& e) {
    std::fprintf(stderr, "sluice: %s\n", e.what());
    return kExitUsage;
  }
  options.reload = [&config_path, &limiter_states](const sluice::ReplayReload& point,
                                                   const sluice::AdmissionPolicy& running) {
    // As on SIGHUP: the same limiter store, and a scratch that fits the old rules and the new.
    return sluice::load_policy(load(point.config.empty() ? config_path : point.config),
                               limiter_states, 1, &running);
  };
  try {
    return sluice::run_replay(config, options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice replay: %s\n", e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "replay") return main_replay(argc, argv);
  return main_bridge(argc, argv);
}
