// sluicectl stats | top | drain, and reload over the control socket: a client of the daemon's
// line protocol (include/sluice/management.hpp). `stats` and `top` read the daemon's metrics
// (the same Prometheus exposition GET /metrics serves) and lay them out for people.
#include "sluicectl_ctl.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

namespace sluice::ctl {
namespace {

constexpr int kUsageError = 2;
constexpr int kNotReached = 1;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kStatsHelp = R"(usage: sluicectl stats [--socket PATH] [--timeout S]

  One table of the running sluice's numbers, from its control socket (default /run/sluice.sock):
  per port and direction packets, bytes and their rates over the last second; flows (active,
  open, created); requests admitted and denied, denials by status, responses cut and the
  decision time; the top identities by requests and by denials; the audit trail (written,
  dropped, lost); drops by reason; reloads and draining.

  --socket PATH   the daemon's control socket (management.socket in its config)
  --timeout S     give up when the daemon has not answered in S seconds (default 5)

Exit status: 0 shown, 1 the daemon could not be reached (not running, permission denied,
timeout), 2 bad usage.
)";

constexpr std::string_view kTopHelp =
    R"(usage: sluicectl top [--once | --iterations N] [--interval S] [--socket PATH] [--timeout S]

  A live view of the running sluice, refreshed every second (ANSI terminal): port and worker
  packet rates, flows, requests per second, the decision time, the top identities by requests
  and by denials, and the rules that matched (hits in the last refresh and in total).
  q or Ctrl-C quits.

  --once          print one view and exit (no screen control; for scripts and tests)
  --iterations N  print N views, one per interval, then exit
  --interval S    seconds between refreshes (default 1)
  --socket PATH   the daemon's control socket (default /run/sluice.sock)
  --timeout S     give up when the daemon has not answered in S seconds (default 5)

Exit status: 0 done, 1 the daemon could not be reached, 2 bad usage.
)";

constexpr std::string_view kDrainHelp =
    R"(usage: sluicectl drain [--no-wait] [--wait S] [--socket PATH] [--timeout S]
       sluicectl drain --cancel [--socket PATH]

  Stops the running sluice from taking new flows, lets the flows in progress finish, and
  reports when none is left:
    - from now on, a SYN that would open a new flow on an inspected port is answered with a
      RST (the client sees "connection refused") and counted (syns_refused_draining); other
      traffic follows inspect.other_traffic as before;
    - packets of flows already tracked carry on both ways, requests on them are decided as
      usual (keep-alive connections may send more);
    - the drain is complete when no flow is half-open or established: every remaining flow
      has seen a FIN or RST (it only waits out inspect.timeouts.closing). Idle keep-alive
      connections count as in progress until their clients close them or they time out
      (inspect.timeouts.established).
  sluice keeps draining until stopped or `sluicectl drain --cancel`.

  --no-wait       start draining and return at once
  --wait S        wait at most S seconds for the drain to complete (default 300); then exit 1
                  with the number of flows still open (sluice keeps draining)
  --cancel        take new flows again
  --socket PATH   the daemon's control socket (default /run/sluice.sock)
  --timeout S     per request to the daemon (default 5)

Exit status: 0 drained (or cancelled, or started with --no-wait), 1 not reached or not drained
in time, 2 bad usage.
)";

// What went wrong talking to the daemon, said for people; `status` is the exit status.
struct Failure {
  int status;
  std::string message;
};

volatile std::sig_atomic_t g_interrupted = 0;
void on_interrupt(int) {
  g_interrupted = 1;
}

std::string connect_error(const std::string& socket, int error) {
  std::string text = "cannot connect to " + socket + ": ";
  switch (error) {
    case ENOENT:
      return text +
             "no such file — is sluice running? (its config's management.socket; "
             "--socket PATH)";
    case ECONNREFUSED:
      return text +
             "connection refused — is sluice running? (the socket file is left from a "
             "daemon that is gone)";
    case EACCES:
    case EPERM:
      return text +
             "permission denied — the socket is root's (mode 0660): run as root or as "
             "a member of its group";
    case ENOTSOCK:
      return text + "not a socket (--socket PATH: the daemon's management.socket)";
    default:
      return text + std::strerror(error);
  }
}

// One exchange: sends `command`, returns what follows "ok\n". Throws Failure: not reached
// (1), or the daemon's own "error: …" (status `refused_status`).
std::string ask(const std::string& socket, std::string_view command, double timeout_s,
                int refused_status = kNotReached) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket.empty() || socket.size() >= sizeof address.sun_path)
    throw Failure{kUsageError, "--socket: '" + socket + "' is not a usable socket path (1 to " +
                                   std::to_string(sizeof address.sun_path - 1) + " bytes)"};
  std::memcpy(address.sun_path, socket.data(), socket.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Failure{kNotReached, std::string("socket: ") + std::strerror(errno)};
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    int error = errno;
    struct stat status {};
    if (error == ECONNREFUSED && ::stat(socket.c_str(), &status) == 0 && !S_ISSOCK(status.st_mode))
      error = ENOTSOCK;
    throw Failure{kNotReached, connect_error(socket, error)};
  }

  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_s));
  const auto timed_out = [&] {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", timeout_s);
    return Failure{kNotReached, "no answer from " + socket + " within " + seconds +
                                    " s (timeout) — is sluice stuck? (--timeout S)"};
  };
  const auto wait_for = [&](short events) {
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) throw timed_out();
      pollfd p{fd, events, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 200)));
      if (g_interrupted) throw Failure{kNotReached, "interrupted"};
      if (ready > 0) return;
    }
  };
  std::string line = std::string(command) + "\n";
  std::size_t sent = 0;
  while (sent < line.size()) {
    wait_for(POLLOUT);
    const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      throw Failure{kNotReached, "sending to " + socket + ": " + std::strerror(errno)};
    }
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  char buffer[16384];
  while (true) {
    wait_for(POLLIN);
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      throw Failure{kNotReached, "reading from " + socket + ": " + std::strerror(errno)};
    }
    if (n == 0) break;
    answer.append(buffer, static_cast<std::size_t>(n));
    if (answer.size() > (64u << 20)) throw Failure{kNotReached, "answer over 64 MiB"};
  }
  if (answer.starts_with("ok\n")) return answer.substr(3);
  if (answer.starts_with("error: ")) {
    std::string message = answer.substr(7);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    throw Failure{refused_status, message};
  }
  throw Failure{kNotReached, socket + ": not a sluice control socket (unexpected answer '" +
                                 answer.substr(0, 40) + "')"};
}

// ---------------------------------------------------------------- the exposition
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string_view text) {
    std::size_t start = 0;
    while (start < text.size()) {
      std::size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      parse_line(text.substr(start, end - start));
      start = end + 1;
    }
  }

  // The sum of the samples of `name` whose labels include `match`.
  double sum(std::string_view name, const std::map<std::string, std::string>& match = {}) const {
    double total = 0;
    for (const Sample* s : of(name)) {
      if (matches(*s, match)) total += s->value;
    }
    return total;
  }
  uint64_t count(std::string_view name,
                 const std::map<std::string, std::string>& match = {}) const {
    return static_cast<uint64_t>(std::llround(sum(name, match)));
  }
  std::vector<const Sample*> of(std::string_view name) const {
    std::vector<const Sample*> found;
    for (const Sample& s : samples_)
      if (s.name == name) found.push_back(&s);
    return found;
  }

 private:
  static bool matches(const Sample& s, const std::map<std::string, std::string>& match) {
    for (const auto& [key, value] : match) {
      const auto it = s.labels.find(key);
      if (it == s.labels.end() || it->second != value) return false;
    }
    return true;
  }
  void parse_line(std::string_view line) {
    if (line.empty() || line.front() == '#') return;
    Sample sample;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    sample.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const std::size_t eq = line.find('=', i);
        if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') return;
        const std::string key(line.substr(i, eq - i));
        std::string value;
        std::size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value += line[j] == 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        sample.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;
    }
    while (i < line.size() && line[i] == ' ') ++i;
    const std::string value(line.substr(i, line.find(' ', i) - i));
    if (value == "+Inf")
      sample.value = INFINITY;
    else
      sample.value = std::strtod(value.c_str(), nullptr);
    samples_.push_back(std::move(sample));
  }

  std::vector<Sample> samples_;
};

// ---------------------------------------------------------------- formatting
std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

// 950, 1.2 k, 3.4 M, 5.6 G
std::string si(double value) {
  if (value >= 1e9) return fixed(value / 1e9, 2) + " G";
  if (value >= 1e6) return fixed(value / 1e6, 2) + " M";
  if (value >= 1e3) return fixed(value / 1e3, 2) + " k";
  return fixed(value, value == std::floor(value) ? 0 : 1);
}

// "950 pps", "1.20 kpps"
std::string per(double value, const char* unit) {
  const std::string number = si(value);
  return number + (std::isalpha(static_cast<unsigned char>(number.back())) ? "" : " ") + unit;
}

std::string bytes(double value) {
  if (value >= 1e9) return fixed(value / 1e9, 2) + " GB";
  if (value >= 1e6) return fixed(value / 1e6, 2) + " MB";
  if (value >= 1e3) return fixed(value / 1e3, 2) + " kB";
  return fixed(value, 0) + " B";
}

std::string duration(double seconds) {
  const auto total = static_cast<uint64_t>(seconds);
  const uint64_t days = total / 86400, hours = total / 3600 % 24, minutes = total / 60 % 60;
  char text[64];
  if (days > 0)
    std::snprintf(text, sizeof text, "%llud %lluh %llum", static_cast<unsigned long long>(days),
                  static_cast<unsigned long long>(hours), static_cast<unsigned long long>(minutes));
  else if (hours > 0)
    std::snprintf(text, sizeof text, "%lluh %llum", static_cast<unsigned long long>(hours),
                  static_cast<unsigned long long>(minutes));
  else
    std::snprintf(text, sizeof text, "%llum %llus", static_cast<unsigned long long>(minutes),
                  static_cast<unsigned long long>(total % 60));
  return text;
}

std::string ago(double unix_time) {
  if (unix_time <= 0) return "never";
  const double now = static_cast<double>(std::time(nullptr));
  return duration(std::max(0.0, now - unix_time)) + " ago";
}

std::string time_of_bound(double seconds) {
  if (std::isinf(seconds)) return "> 4 ms";
  if (seconds < 1e-6) return fixed(seconds * 1e9, 0) + " ns";
  if (seconds < 1e-3) return fixed(seconds * 1e6, 0) + " µs";
  return fixed(seconds * 1e3, 0) + " ms";
}

// "p50 ≤ 1 µs, p99 ≤ 4 µs (20 decisions)" from the decision histogram.
std::string decision_line(const Metrics& m) {
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative)
  for (const Sample* s : m.of("sluice_decision_duration_seconds_bucket")) {
    const auto it = s->labels.find("le");
    if (it == s->labels.end()) continue;
    buckets.emplace_back(it->second == "+Inf" ? INFINITY : std::strtod(it->second.c_str(), nullptr),
                         s->value);
  }
  std::sort(buckets.begin(), buckets.end());
  const double count = m.sum("sluice_decision_duration_seconds_count");
  if (count <= 0 || buckets.empty()) return "no decisions yet";
  const auto quantile = [&](double q) {
    for (const auto& [le, cumulative] : buckets)
      if (cumulative >= q * count) return time_of_bound(le);
    return time_of_bound(INFINITY);
  };
  const double mean = m.sum("sluice_decision_duration_seconds_sum") / count;
  return "p50 ≤ " + quantile(0.5) + ", p99 ≤ " + quantile(0.99) + ", mean " +
         (mean < 1e-6 ? fixed(mean * 1e9, 0) + " ns" : fixed(mean * 1e6, 1) + " µs") + " (" +
         si(count) + " decisions)";
}

// Columns padded to the widest cell: left-aligned where `align` has 'l' (by default the first
// column), right-aligned elsewhere (numbers).
class Table {
 public:
  explicit Table(std::string align = "l") : align_(std::move(align)) {}
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  std::string render(const std::string& indent = "") const {
    std::vector<std::size_t> widths;
    for (const auto& r : rows_) {
      for (std::size_t i = 0; i < r.size(); ++i) {
        if (widths.size() <= i) widths.push_back(0);
        widths[i] = std::max(widths[i], display_width(r[i]));
      }
    }
    std::string out;
    for (const auto& r : rows_) {
      std::string line = indent;
      for (std::size_t i = 0; i < r.size(); ++i) {
        const std::string pad(widths[i] - display_width(r[i]), ' ');
        const bool left = i < align_.size() && align_[i] == 'l';
        line += (i == 0 ? "" : "  ") + (left ? r[i] + pad : pad + r[i]);
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }

 private:
  static std::size_t display_width(const std::string& text) {
    std::size_t width = 0;
    for (const unsigned char c : text)
      if ((c & 0xC0) != 0x80) ++width;  // one column per UTF-8 sequence
    return width;
  }
  std::string align_;
  std::vector<std::vector<std::string>> rows_;
};

std::string header_line(const Metrics& m) {
  std::string version = "?";
  for (const Sample* s : m.of("sluice_info"))
    if (s->labels.contains("version")) version = s->labels.at("version");
  const uint64_t workers = m.count("sluice_workers");
  return "sluice " + version + ", up " + duration(m.sum("sluice_uptime_seconds")) + ", " +
         std::to_string(workers) + (workers == 1 ? " worker" : " workers") +
         ", policy generation " + std::to_string(m.count("sluice_policy_generation")) +
         ", draining " + (m.count("sluice_draining") != 0 ? "YES" : "no");
}

struct IdentityRow {
  std::string name;
  uint64_t requests = 0;
  uint64_t denials = 0;
};

std::vector<IdentityRow> identities(const Metrics& m) {
  std::map<std::string, IdentityRow> rows;
  for (const Sample* s : m.of("sluice_identity_requests_total")) {
    const std::string& name = s->labels.at("identity");
    rows[name].name = name;
    rows[name].requests = static_cast<uint64_t>(s->value);
  }
  for (const Sample* s : m.of("sluice_identity_denials_total")) {
    const std::string& name = s->labels.at("identity");
    rows[name].name = name;
    rows[name].denials = static_cast<uint64_t>(s->value);
  }
  std::vector<IdentityRow> list;
  for (auto& [name, row] : rows) list.push_back(row);
  return list;
}

// Graduated response: the identities demoted or suspended now, soonest to expire first.
std::string escalations_table(const Metrics& m) {
  std::vector<const Sample*> rows = m.of("sluice_identity_escalation_expiry_timestamp_seconds");
  if (rows.empty()) return "";
  std::sort(rows.begin(), rows.end(),
            [](const Sample* a, const Sample* b) { return a->value < b->value; });
  Table table;
  table.row({"ESCALATED", "NOW", "EXPIRES IN"});
  const double now = static_cast<double>(std::time(nullptr));
  for (const Sample* s : rows) {
    const std::string& tier = s->labels.at("tier");
    table.row({s->labels.at("identity"), tier.empty() ? "suspended" : "demoted to " + tier,
               duration(std::max(0.0, s->value - now))});
  }
  return table.render() + "\n";
}

std::string render_stats(const Metrics& m) {
  std::string out = header_line(m) + "\n";
  out += "reloads: " + std::to_string(m.count("sluice_reloads_total", {{"result", "success"}})) +
         " ok (last " +
         ago(m.sum("sluice_last_reload_timestamp_seconds", {{"result", "success"}})) + "), " +
         std::to_string(m.count("sluice_reloads_total", {{"result", "failure"}})) +
         " failed (last " +
         ago(m.sum("sluice_last_reload_timestamp_seconds", {{"result", "failure"}})) + ")\n\n";

  Table ports("ll");
  ports.row({"PORT", "DIR", "PACKETS", "BYTES", "PPS", "BYTES/S"});
  for (const char* port : {"client", "server"}) {
    for (const char* direction : {"rx", "tx"}) {
      const std::map<std::string, std::string> at = {{"port", port}, {"direction", direction}};
      ports.row({port, direction, std::to_string(m.count("sluice_port_packets_total", at)),
                 std::to_string(m.count("sluice_port_bytes_total", at)),
                 si(m.sum("sluice_port_packets_per_second", at)),
                 bytes(m.sum("sluice_port_bytes_per_second", at))});
    }
  }
  out += ports.render() + "\n";

  out += "flows: " + std::to_string(m.count("sluice_flows_active")) + " active, " +
         std::to_string(m.count("sluice_flows_open")) + " open (half-open or established), " +
         std::to_string(m.count("sluice_flows_created_total")) + " created, " +
         std::to_string(m.count("sluice_flows_expired_total")) + " expired, " +
         std::to_string(m.count("sluice_flows_evicted_total")) + " evicted, " +
         std::to_string(m.count("sluice_syns_refused_draining_total")) +
         " new connections refused while draining\n\n";

  Table requests;
  requests.row({"REQUESTS", "COUNT"});
  requests.row(
      {"admitted", std::to_string(m.count("sluice_requests_total", {{"verdict", "admit"}}))});
  requests.row({"denied", std::to_string(m.count("sluice_requests_total", {{"verdict", "deny"}}))});
  std::map<std::string, uint64_t> by_status;
  std::vector<std::pair<std::string, uint64_t>> by_reason;
  for (const Sample* s : m.of("sluice_requests_total")) {
    if (s->labels.at("verdict") != "deny" || s->value == 0) continue;
    by_status[s->labels.at("status")] += static_cast<uint64_t>(s->value);
    by_reason.emplace_back(s->labels.at("reason"), static_cast<uint64_t>(s->value));
  }
  for (const auto& [status, n] : by_status) requests.row({"  status " + status, std::to_string(n)});
  std::sort(by_reason.begin(), by_reason.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [reason, n] : by_reason) requests.row({"  " + reason, std::to_string(n)});
  requests.row(
      {"responses cut", std::to_string(m.count("sluice_requests_total", {{"verdict", "cut"}}))});
  out += requests.render();
  out += "decision time: " + decision_line(m) + "\n\n";

  std::vector<IdentityRow> rows = identities(m);
  std::sort(rows.begin(), rows.end(), [](const IdentityRow& a, const IdentityRow& b) {
    return a.requests != b.requests ? a.requests > b.requests : a.name < b.name;
  });
  Table top;
  top.row({"TOP IDENTITIES", "REQUESTS", "DENIED"});
  for (const IdentityRow& row : rows)
    top.row({row.name, std::to_string(row.requests), std::to_string(row.denials)});
  if (rows.empty()) top.row({"(none yet)", "", ""});
  out += top.render() + "\n";
  out += escalations_table(m);

  Table audit;
  audit.row({"AUDIT", "WRITTEN", "DROPPED", "LOST", "WRITE ERRORS"});
  audit.row({m.count("sluice_audit_enabled") != 0 ? "on" : "off",
             std::to_string(m.count("sluice_audit_records_total", {{"result", "written"}})),
             std::to_string(m.count("sluice_audit_records_total", {{"result", "dropped"}})),
             std::to_string(m.count("sluice_audit_records_total", {{"result", "lost"}})),
             std::to_string(m.count("sluice_audit_write_errors_total"))});
  out += audit.render() + "\n";

  std::string drops;
  for (const Sample* s : m.of("sluice_drops_total")) {
    if (s->value != 0)
      drops += " " + s->labels.at("reason") + "=" + std::to_string(static_cast<uint64_t>(s->value));
  }
  out += "drops:" + (drops.empty() ? std::string(" none") : drops) + "\n";
  return out;
}

// ---------------------------------------------------------------- options
struct CommonOptions {
  std::string socket = std::string(kDefaultSocket);
  double timeout_s = 5;
};

std::optional<double> seconds_of(std::string_view text) {
  const std::string copy(text);
  char* end = nullptr;
  const double value = std::strtod(copy.c_str(), &end);
  if (copy.empty() || *end != '\0' || !(value > 0) || value > 86400) return std::nullopt;
  return value;
}

int usage(const std::string& message, std::string_view help) {
  std::cerr << "sluicectl: " << message << "\n\n" << help;
  return kUsageError;
}

int fail(std::string_view command, const Failure& failure) {
  std::cerr << "sluicectl " << command << ": " << failure.message << "\n";
  return failure.status;
}

int stats(const std::vector<std::string_view>& args) {
  CommonOptions options;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kStatsHelp;
      return 0;
    }
    if (i + 1 >= args.size())
      return usage("stats: '" + std::string(arg) + "' needs a value or is unknown", kStatsHelp);
    const std::string_view value = args[++i];
    if (arg == "--socket") {
      options.socket = value;
    } else if (arg == "--timeout") {
      const auto s = seconds_of(value);
      if (!s) return usage("stats: --timeout: expected seconds in (0, 86400]", kStatsHelp);
      options.timeout_s = *s;
    } else {
      return usage("stats: unknown option '" + std::string(arg) + "'", kStatsHelp);
    }
  }
  try {
    std::cout << render_stats(Metrics(ask(options.socket, "metrics", options.timeout_s)));
    return 0;
  } catch (const Failure& failure) {
    return fail("stats", failure);
  }
}

// ---------------------------------------------------------------- top
// The terminal in non-canonical mode without echo while `top` runs (a key reads at once);
// restored when it goes.
class RawTerminal {
 public:
  RawTerminal() {
    if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

std::string render_top(const Metrics& m, const std::map<std::string, uint64_t>* previous_hits,
                       std::map<std::string, uint64_t>& hits) {
  std::string out = header_line(m) + "\n";
  std::string ports = "ports  ";
  for (const char* port : {"client", "server"}) {
    ports += std::string(port == std::string_view("client") ? " " : " | ") + port;
    for (const char* direction : {"rx", "tx"}) {
      const std::map<std::string, std::string> at = {{"port", port}, {"direction", direction}};
      ports += std::string(" ") + direction + " " +
               per(m.sum("sluice_port_packets_per_second", at), "pps") + " " +
               bytes(m.sum("sluice_port_bytes_per_second", at)) + "/s";
    }
  }
  out += ports + "\n";
  std::string workers = "workers";
  for (const Sample* s : m.of("sluice_worker_packets_per_second"))
    workers += "  " + s->labels.at("worker") + ": " + per(s->value, "pps");
  out += workers + "\n";
  out += "flows   active " + std::to_string(m.count("sluice_flows_active")) + ", open " +
         std::to_string(m.count("sluice_flows_open")) + " | requests " +
         si(m.sum("sluice_requests_per_second")) + "/s, admitted " +
         std::to_string(m.count("sluice_requests_total", {{"verdict", "admit"}})) + ", denied " +
         std::to_string(m.count("sluice_requests_total", {{"verdict", "deny"}})) + ", cut " +
         std::to_string(m.count("sluice_requests_total", {{"verdict", "cut"}})) + "\n";
  out += "decision time  " + decision_line(m) + "\n\n";

  std::vector<IdentityRow> rows = identities(m);
  std::vector<IdentityRow> by_denials = rows;
  std::sort(rows.begin(), rows.end(), [](const IdentityRow& a, const IdentityRow& b) {
    return a.requests != b.requests ? a.requests > b.requests : a.name < b.name;
  });
  std::sort(by_denials.begin(), by_denials.end(), [](const IdentityRow& a, const IdentityRow& b) {
    return a.denials != b.denials ? a.denials > b.denials : a.name < b.name;
  });
  std::erase_if(by_denials, [](const IdentityRow& r) { return r.denials == 0; });
  Table identities_table("lrrlr");
  identities_table.row({"TOP BY REQUESTS", "REQUESTS", "DENIED", "  TOP BY DENIALS", "DENIED"});
  const std::size_t lines = std::min<std::size_t>(10, std::max(rows.size(), by_denials.size()));
  for (std::size_t i = 0; i < lines; ++i) {
    std::vector<std::string> cells(5);
    if (i < rows.size()) {
      cells[0] = rows[i].name;
      cells[1] = std::to_string(rows[i].requests);
      cells[2] = std::to_string(rows[i].denials);
    }
    if (i < by_denials.size()) {
      cells[3] = "  " + by_denials[i].name;  // a gap between the two lists
      cells[4] = std::to_string(by_denials[i].denials);
    }
    identities_table.row(cells);
  }
  if (lines == 0) identities_table.row({"(none yet)", "", "", "", ""});
  out += identities_table.render() + "\n";
  out += escalations_table(m);

  struct Hit {
    std::string rule;
    uint64_t recent;
    uint64_t total;
  };
  std::vector<Hit> rule_rows;
  for (const Sample* s : m.of("sluice_rule_hits_total")) {
    const std::string& rule = s->labels.at("rule");
    const auto total = static_cast<uint64_t>(s->value);
    hits[rule] = total;
    if (total == 0) continue;
    uint64_t recent = 0;
    if (previous_hits != nullptr) {
      const auto it = previous_hits->find(rule);
      recent = it == previous_hits->end() || it->second > total ? total : total - it->second;
    }
    rule_rows.push_back({rule, recent, total});
  }
  std::sort(rule_rows.begin(), rule_rows.end(), [](const Hit& a, const Hit& b) {
    return a.recent != b.recent ? a.recent > b.recent
                                : (a.total != b.total ? a.total > b.total : a.rule < b.rule);
  });
  Table rules_table;
  rules_table.row({"RULE HITS", "LAST REFRESH", "TOTAL"});
  for (std::size_t i = 0; i < rule_rows.size() && i < 10; ++i) {
    rules_table.row({rule_rows[i].rule,
                     previous_hits != nullptr ? std::to_string(rule_rows[i].recent) : "-",
                     std::to_string(rule_rows[i].total)});
  }
  if (rule_rows.empty()) rules_table.row({"(none yet)", "", ""});
  out += rules_table.render();
  return out;
}

int top(const std::vector<std::string_view>& args) {
  CommonOptions options;
  long iterations = 0;  // 0: until q or Ctrl-C
  double interval = 1;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kTopHelp;
      return 0;
    }
    if (arg == "--once") {
      iterations = 1;
      continue;
    }
    if (i + 1 >= args.size())
      return usage("top: '" + std::string(arg) + "' needs a value or is unknown", kTopHelp);
    const std::string value(args[++i]);
    if (arg == "--socket") {
      options.socket = value;
    } else if (arg == "--timeout" || arg == "--interval") {
      const auto s = seconds_of(value);
      if (!s)
        return usage("top: " + std::string(arg) + ": expected seconds in (0, 86400]", kTopHelp);
      (arg == "--timeout" ? options.timeout_s : interval) = *s;
    } else if (arg == "--iterations") {
      char* end = nullptr;
      iterations = std::strtol(value.c_str(), &end, 10);
      if (*end != '\0' || iterations < 1 || iterations > 1000000)
        return usage("top: --iterations: expected an integer in [1, 1000000], got '" + value + "'",
                     kTopHelp);
    } else {
      return usage("top: unknown option '" + std::string(arg) + "'", kTopHelp);
    }
  }
  const bool screen = iterations != 1 && ::isatty(STDOUT_FILENO);
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  std::optional<RawTerminal> raw;
  if (screen) raw.emplace();
  std::map<std::string, uint64_t> previous;
  bool have_previous = false;
  int status = 0;
  for (long n = 0; iterations == 0 || n < iterations; ++n) {
    if (n > 0) {
      // Wait one interval, watching the keyboard (q quits) and the signals.
      const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(interval));
      bool quit = false;
      while (!quit && !g_interrupted && Clock::now() < until) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        pollfd in{STDIN_FILENO, POLLIN, 0};
        const int ready = screen ? ::poll(&in, 1, static_cast<int>(std::max<long long>(left, 1)))
                                 : (std::this_thread::sleep_for(std::chrono::milliseconds(
                                        std::min<long long>(std::max<long long>(left, 1), 100))),
                                    0);
        if (ready > 0) {
          char key = 0;
          if (::read(STDIN_FILENO, &key, 1) == 1 && (key == 'q' || key == 'Q')) quit = true;
        }
      }
      if (quit || g_interrupted) break;
    }
    std::string text;
    try {
      text = ask(options.socket, "metrics", options.timeout_s);
    } catch (const Failure& failure) {
      if (g_interrupted) break;
      if (screen) std::cout << "\x1b[H\x1b[2J" << std::flush;
      status = fail("top", failure);
      break;
    }
    std::map<std::string, uint64_t> hits;
    const std::string view = render_top(Metrics(text), have_previous ? &previous : nullptr, hits);
    previous = std::move(hits);
    have_previous = true;
    if (screen) {
      char clock[16];
      const std::time_t now = std::time(nullptr);
      std::strftime(clock, sizeof clock, "%H:%M:%S", std::localtime(&now));
      std::cout << "\x1b[H\x1b[2J"
                << "sluicectl top — " << clock << "   (q or Ctrl-C quits)\n"
                << view << std::flush;
    } else {
      std::cout << view << (iterations == 1 || n + 1 == iterations ? "" : "\n") << std::flush;
    }
  }
  return status;
}

// ---------------------------------------------------------------- drain
std::map<std::string, std::string> fields_of(const std::string& text) {
  std::map<std::string, std::string> fields;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const std::size_t space = line.find(' ');
    if (space != std::string::npos) fields[line.substr(0, space)] = line.substr(space + 1);
  }
  return fields;
}

int drain(const std::vector<std::string_view>& args) {
  CommonOptions options;
  bool wait = true;
  bool cancel = false;
  double wait_s = 300;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kDrainHelp;
      return 0;
    }
    if (arg == "--no-wait") {
      wait = false;
      continue;
    }
    if (arg == "--cancel") {
      cancel = true;
      continue;
    }
    if (i + 1 >= args.size())
      return usage("drain: '" + std::string(arg) + "' needs a value or is unknown", kDrainHelp);
    const std::string_view value = args[++i];
    if (arg == "--socket") {
      options.socket = value;
    } else if (arg == "--timeout" || arg == "--wait") {
      const auto s = seconds_of(value);
      if (!s)
        return usage("drain: " + std::string(arg) + ": expected seconds in (0, 86400]", kDrainHelp);
      (arg == "--timeout" ? options.timeout_s : wait_s) = *s;
    } else {
      return usage("drain: unknown option '" + std::string(arg) + "'", kDrainHelp);
    }
  }
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  try {
    if (cancel) {
      const auto fields = fields_of(ask(options.socket, "resume", options.timeout_s));
      std::cout << "sluicectl drain: taking new connections again (" << fields.at("open_flows")
                << " flows open)\n";
      return 0;
    }
    const std::string first = ask(options.socket, "drain", options.timeout_s);
    auto fields = fields_of(first);
    std::cout << "sluicectl drain: draining: new connections on inspected ports are refused; "
              << fields["open_flows"] << " flows open\n"
              << std::flush;
    if (!wait) return 0;
    const auto started = Clock::now();
    auto last_report = started;
    while (fields["drained"] != "yes") {
      if (g_interrupted) {
        std::cerr << "sluicectl drain: interrupted; sluice keeps draining (sluicectl drain "
                     "--cancel to take new connections again)\n";
        return kNotReached;
      }
      const double waited = std::chrono::duration<double>(Clock::now() - started).count();
      if (waited >= wait_s) {
        std::cerr << "sluicectl drain: not drained after " << fixed(wait_s, 0)
                  << " s: " << fields["open_flows"]
                  << " flows still open; sluice keeps draining (sluicectl drain --cancel to take "
                     "new connections again)\n";
        return kNotReached;
      }
      if (std::chrono::duration<double>(Clock::now() - last_report).count() >= 5) {
        std::cout << "sluicectl drain: waiting: " << fields["open_flows"] << " flows open, "
                  << fields["syns_refused"] << " new connections refused\n"
                  << std::flush;
        last_report = Clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      fields = fields_of(ask(options.socket, "drain-status", options.timeout_s));
      if (fields["draining"] != "yes") {
        std::cerr << "sluicectl drain: the drain was cancelled (sluicectl drain --cancel)\n";
        return kNotReached;
      }
    }
    std::cout << "sluicectl drain: drained: no flows open (" << fields["syns_refused"]
              << " new connections refused, "
              << fixed(std::chrono::duration<double>(Clock::now() - started).count(), 1)
              << " s); sluice can be stopped\n";
    return 0;
  } catch (const Failure& failure) {
    return fail("drain", failure);
  }
}

}  // namespace

int control_command(const std::vector<std::string_view>& args) {
  if (args[0] == "stats") return stats(args);
  if (args[0] == "top") return top(args);
  return drain(args);
}

int reload_over_socket(const std::string& socket, double timeout_s) {
  try {
    const std::string answer = ask(socket, "reload", timeout_s, kUsageError);
    std::cout << "sluice: " << answer << (answer.ends_with('\n') ? "" : "\n");
    return 0;
  } catch (const Failure& failure) {
    std::cerr << (failure.status == kUsageError ? "sluice: " : "sluicectl reload: ")
              << failure.message << "\n";
    return failure.status;
  }
}

}  // namespace sluice::ctl
