// sluicectl: the operator's tool next to the appliance: keys hash, identities check, reload,
// rules (compile, test, scan, lint: sluicectl_rules.cpp), audit (verify, review:
// sluicectl_audit.cpp), stats, top and drain over the control socket (sluicectl_ctl.cpp).
// Exit status: 0 done, 1 the daemon could not be reached (or lint findings, a broken audit chain,
// a drain not done in time), 2 bad usage or bad input (the message says what was expected).
#include <signal.h>
#include <sys/types.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/identities.hpp"
#include "sluice/identity.hpp"
#include "sluice/policy.hpp"
#include "sluicectl_audit.hpp"
#include "sluicectl_ctl.hpp"
#include "sluicectl_rules.hpp"

namespace {

constexpr int kUsageError = 2;
constexpr int kNotReached = 1;

constexpr std::string_view kHelp = R"(usage: sluicectl COMMAND [ARGS]

Commands:
  keys hash               read one API key on stdin, print its digest for the identities file
  identities check FILE [--config CONFIG]
                          load and validate an identities file (against CONFIG's tiers), print
                          a summary
  reload [--config CONFIG] [--socket PATH | --pid-file FILE | --pid PID]
                          validate CONFIG and its identities file, then tell the running sluice
                          to reload them (over its control socket, and print its answer; or
                          SIGHUP)
  stats [--socket PATH]   one table of the running sluice's numbers: ports, flows, requests by
                          verdict and status, top identities, audit trail, drops
  top [--once | --iterations N] [--socket PATH]
                          a live view, refreshed every second: rates per port and worker, top
                          identities by requests and denials, recent rule hits; q quits
  drain [--no-wait | --wait S | --cancel] [--socket PATH]
                          refuse new connections on inspected ports, let flows in progress
                          finish, report when none is left
  rules compile|test|scan|lint ...
                          compile rule files into the database the appliance loads, test
                          them on their examples and on corpora, scan JSON Lines with a
                          database, lint rule files ('sluicectl rules --help')
  audit verify FILE... [--partial | --after DIGEST]
                          check the audit trail's hash chain (oldest file first): OK with the
                          record count, or the first line that was edited, removed or reordered
  audit review FILE... [--rules NEW.db] [--bucket 1h] [--json]
                          summaries by identity, tier, verdict and reason, rule and time; with
                          --rules, the admitted requests whose captured prompts a newer rule
                          database would now block ('sluicectl audit --help')
  help, --help            show this help; 'sluicectl COMMAND --help' explains a command

The daemon's control socket is /run/sluice.sock unless --socket PATH says otherwise (its config's
management.socket). Exit status: 0 on success, 1 when the daemon cannot be reached (not
running, permission denied, timeout; rules lint: findings; audit verify: a broken chain; drain:
not drained in time), 2 on bad usage or bad input (the message names what was expected).
)";

constexpr std::string_view kReloadHelp =
    R"(usage: sluicectl reload [--config CONFIG] [--socket PATH] [--timeout S]
       sluicectl reload [--config CONFIG] --pid-file FILE | --pid PID

  Asks the running sluice to reload its tiers, unknown_key, identities file and rule database.
  The daemon builds the new set off the data path, validates it and swaps it in whole; if a file
  is bad it keeps the running set and says why.

  By default the request goes over the control socket (--socket PATH, default /run/sluice.sock)
  and the daemon's own answer is printed: 'sluice: reloaded: …' (exit 0) or 'sluice: reload
  failed, the running policy stays: FILE:LINE:COL: …' (exit 2). --timeout S bounds the wait
  (default 60). With --pid-file FILE or --pid PID, SIGHUP is sent to that process instead (the
  daemon prints the outcome on its own output).

  With --config, the files are validated here first, the way the daemon will (the config, the
  identities file it names, every identity's tier against the config's tiers); on an error
  nothing is sent and the error is printed as FILE:LINE:COLUMN: key: what was expected.

Exit status: 0 reloaded (or signal sent), 1 no such daemon (not running, no pid file, stale
pid, permission denied, timeout), 2 bad usage or an invalid file.
)";

constexpr std::string_view kKeysHelp = R"(usage: sluicectl keys hash

  Reads ONE API key on stdin -- the token exactly as clients send it after 'Bearer ' in the
  Authorization header -- and prints 'sha256:<64 lowercase hex digits>', the form the
  identities file's 'keys' lists take. Keys are never stored in clear on the appliance.

  One trailing newline is removed (so 'echo KEY' and 'printf KEY' agree); nothing else is
  trimmed. Refused, with exit status 2: an empty key, more than one line, and control
  characters (a carriage return, say), which an HTTP header cannot carry.

  Example:  printf '%s' "$KEY" | sluicectl keys hash
            (reading from a pipe keeps the key out of the shell history and 'ps')
)";

constexpr std::string_view kIdentitiesHelp =
    R"(usage: sluicectl identities check FILE [--config CONFIG]

  Loads FILE as an identities file and validates it the way the appliance will: known keys
  only, name, tier and keys present, names unique, every key digest in the form
  'sha256:<64 lowercase hex digits>' and listed once, limits positive integers.
  Prints 'FILE: N identities, M keys, tiers: a, b' or the first error as
  FILE:LINE:COLUMN: key.path: what was expected (exit status 2).
  With --config, every identity's tier is checked against CONFIG's tiers and each identity's
  limits against what the limiter can represent, as the appliance does when it loads both.
)";

bool wants_help(std::string_view arg) {
  return arg == "--help" || arg == "-h" || arg == "help";
}

int usage_error(const std::string& message, std::string_view help) {
  std::cerr << "sluicectl: " << message << "\n\n" << help;
  return kUsageError;
}

int keys_hash() {
  std::string key((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (key.empty()) {
    std::cerr << "sluicectl keys hash: no key on stdin (expected one key, e.g. "
                 "printf '%s' \"$KEY\" | sluicectl keys hash)\n";
    return kUsageError;
  }
  if (key.find('\n') != std::string::npos) {
    std::cerr << "sluicectl keys hash: more than one line on stdin (expected exactly one key; "
                 "hash keys one at a time)\n";
    return kUsageError;
  }
  for (unsigned char c : key) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      std::cerr << "sluicectl keys hash: the key contains a control character"
                << (c == '\r' ? " (a carriage return: CRLF line ending?)" : "")
                << "; an HTTP header cannot carry it, so no client could present this key\n";
      return kUsageError;
    }
  }
  std::cout << sluice::sha256_of(key).to_string() << "\n";
  return 0;
}

int identities_check(const std::string& path, const std::string& config_path) {
  try {
    const auto table = sluice::load_identities_file(path);
    if (!config_path.empty()) {
      sluice::LimiterStore scratch;
      sluice::build_policy(sluice::load_config_file(config_path), table, scratch);
    }
    std::string tiers;
    for (const std::string& tier : table->tiers()) tiers += (tiers.empty() ? "" : ", ") + tier;
    const size_t n = table->identities().size();
    const size_t m = table->key_count();
    std::cout << path << ": " << n << (n == 1 ? " identity, " : " identities, ") << m
              << (m == 1 ? " key" : " keys") << ", tiers: " << (tiers.empty() ? "none" : tiers)
              << "\n";
    return 0;
  } catch (const sluice::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return kUsageError;
  }
}

// The pid of the running daemon, or 0 with the reason printed.
pid_t daemon_pid(const std::string& pid_file, long pid_option) {
  long pid = pid_option;
  if (pid == 0) {
    std::ifstream in(pid_file);
    if (!in) {
      std::cerr << "sluicectl reload: " << pid_file << ": " << std::strerror(errno)
                << " (is sluice running? it writes this file unless started with --no-pid-file; "
                   "give --pid-file or --pid)\n";
      return 0;
    }
    if (!(in >> pid) || pid <= 0) {
      std::cerr << "sluicectl reload: " << pid_file << ": expected a process id\n";
      return 0;
    }
  }
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!comm || !std::getline(comm, name)) {
    std::cerr << "sluicectl reload: no process " << pid
              << (pid_option == 0 ? " (stale " + pid_file + "; sluice is not running)" : "")
              << "\n";
    return 0;
  }
  // DPDK renames the main thread; the process name stays the executable's.
  if (name.rfind("sluice", 0) != 0) {
    std::cerr << "sluicectl reload: process " << pid << " is '" << name << "', not sluice\n";
    return 0;
  }
  return static_cast<pid_t>(pid);
}

int reload(const std::vector<std::string_view>& args) {
  std::string config_path;
  std::string pid_file = "/run/sluice.pid";
  long pid = 0;
  bool by_signal = false;
  std::string socket(sluice::ctl::kDefaultSocket);
  double timeout_s = 60;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (wants_help(arg)) {
      std::cout << kReloadHelp;
      return 0;
    }
    if (i + 1 >= args.size())
      return usage_error("reload: '" + std::string(arg) + "' needs a value or is unknown",
                         kReloadHelp);
    const std::string value(args[++i]);
    if (arg == "--config") {
      config_path = value;
    } else if (arg == "--pid-file") {
      pid_file = value;
      by_signal = true;
    } else if (arg == "--socket") {
      socket = value;
    } else if (arg == "--timeout") {
      char* end = nullptr;
      timeout_s = std::strtod(value.c_str(), &end);
      if (*end != '\0' || !(timeout_s > 0) || timeout_s > 86400)
        return usage_error("reload: --timeout: expected seconds in (0, 86400], got '" + value + "'",
                           kReloadHelp);
    } else if (arg == "--pid") {
      by_signal = true;
      char* end = nullptr;
      pid = std::strtol(value.c_str(), &end, 10);
      if (*end != '\0' || pid <= 0)
        return usage_error("reload: --pid: expected a process id, got '" + value + "'",
                           kReloadHelp);
    } else {
      return usage_error("reload: unknown option '" + std::string(arg) + "'", kReloadHelp);
    }
  }
  if (!config_path.empty()) {
    try {
      sluice::LimiterStore scratch;
      const auto policy = sluice::load_policy(sluice::load_config_file(config_path), scratch);
      std::cout << config_path << ": valid (" << policy->summary() << ")\n";
    } catch (const sluice::ConfigError& e) {
      std::cerr << e.what() << "\nsluicectl reload: nothing sent; the running set stays\n";
      return kUsageError;
    }
  }
  if (!by_signal) return sluice::ctl::reload_over_socket(socket, timeout_s);
  const pid_t target = daemon_pid(pid_file, pid);
  if (target == 0) return kNotReached;
  if (kill(target, SIGHUP) != 0) {
    std::cerr << "sluicectl reload: cannot signal process " << target << ": "
              << std::strerror(errno) << (errno == EPERM ? " (run as the daemon's user)" : "")
              << "\n";
    return kNotReached;
  }
  std::cout << "sluicectl reload: sent SIGHUP to sluice (pid " << target
            << "); it prints 'sluice: reloaded: …' or why it kept the running set\n";
  return 0;
}

int run(const std::vector<std::string_view>& args) {
  if (args.empty()) return usage_error("missing command", kHelp);
  if (wants_help(args[0])) {
    std::cout << kHelp;
    return 0;
  }
  if (args[0] == "keys") {
    if (args.size() >= 2 && wants_help(args[1])) {
      std::cout << kKeysHelp;
      return 0;
    }
    if (args.size() == 2 && args[1] == "hash") return keys_hash();
    if (args.size() == 3 && args[1] == "hash" && wants_help(args[2])) {
      std::cout << kKeysHelp;
      return 0;
    }
    if (args.size() >= 2 && args[1] == "hash")
      return usage_error("keys hash takes no arguments (the key is read from stdin)", kKeysHelp);
    return usage_error("expected 'keys hash'", kKeysHelp);
  }
  if (args[0] == "identities") {
    if (args.size() >= 2 && wants_help(args[1])) {
      std::cout << kIdentitiesHelp;
      return 0;
    }
    if (args.size() >= 2 && args[1] == "check") {
      if (args.size() == 3 && wants_help(args[2])) {
        std::cout << kIdentitiesHelp;
        return 0;
      }
      if (args.size() == 3) return identities_check(std::string(args[2]), "");
      if (args.size() == 5 && args[3] == "--config")
        return identities_check(std::string(args[2]), std::string(args[4]));
      return usage_error("expected 'identities check FILE [--config CONFIG]'", kIdentitiesHelp);
    }
    return usage_error("expected 'identities check FILE [--config CONFIG]'", kIdentitiesHelp);
  }
  if (args[0] == "reload") return reload(args);
  if (args[0] == "rules") return sluice::ctl::rules_command(args);
  if (args[0] == "audit") return sluice::ctl::audit_command(args);
  if (args[0] == "stats" || args[0] == "top" || args[0] == "drain")
    return sluice::ctl::control_command(args);
  return usage_error("unknown command '" + std::string(args[0]) + "'", kHelp);
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  return run(std::vector<std::string_view>(argv + 1, argv + argc));
}
