#include "sluice/management.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include "sluice/metrics.hpp"

namespace sluice {
namespace {

using Clock = std::chrono::steady_clock;

std::string error_text(int error) {
  return std::strerror(error);
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

enum class Kind : uint8_t { kHttp, kControl };

struct Connection {
  Fd fd;
  Kind kind;
  Clock::time_point deadline;
  std::string in;
  std::string out;
  std::size_t written = 0;
  bool responding = false;  // `out` is the whole answer
  bool closing = false;     // answered and shut down for writing: reading until EOF
  bool peer_done = false;   // the client shut its side already
};

std::string http_response(int status, std::string_view reason, std::string_view content_type,
                          const std::string& body, bool head_only, std::string_view extra = {}) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                    "\r\nContent-Type: " + std::string(content_type) +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nCache-Control: no-store\r\nConnection: close\r\n";
  out += extra;
  out += "\r\n";
  if (!head_only) out += body;
  return out;
}

std::string http_error(int status, std::string_view reason, std::string_view extra = {}) {
  return http_response(status, reason, "text/plain; charset=utf-8",
                       std::to_string(status) + " " + std::string(reason) + "\n", false, extra);
}

// The answer to one request head (request line and header fields).
std::string answer_http(std::string_view head, ManagementHandler& handler) {
  const std::size_t line_end = head.find('\n');
  std::string_view line = head.substr(0, line_end);
  if (line.ends_with('\r')) line.remove_suffix(1);
  const std::size_t first = line.find(' ');
  const std::size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (first == 0 || second == std::string_view::npos || second == first + 1)
    return http_error(400, "Bad Request");
  const std::string_view method = line.substr(0, first);
  const std::string_view target = line.substr(first + 1, second - first - 1);
  const std::string_view version = line.substr(second + 1);
  if (!version.starts_with("HTTP/1.") || version.size() != 8) return http_error(400, "Bad Request");
  const std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return http_error(404, "Not Found");
  if (method != "GET" && method != "HEAD")
    return http_error(405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
  std::string body;
  try {
    body = handler.metrics();
  } catch (const std::exception&) {
    return http_error(500, "Internal Server Error");
  }
  return http_response(200, "OK", kPrometheusContentType, body, method == "HEAD");
}

std::string answer_control(std::string_view line, ManagementHandler& handler) {
  if (line.ends_with('\r')) line.remove_suffix(1);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
  if (line.empty()) return "error: empty command (try 'help')\n";
  const std::size_t space = line.find(' ');
  const std::string_view command = line.substr(0, space);
  std::string_view argument = space == std::string_view::npos ? "" : line.substr(space + 1);
  while (!argument.empty() && argument.front() == ' ') argument.remove_prefix(1);
  ControlReply reply;
  try {
    reply = handler.control(command, argument);
  } catch (const std::exception& e) {
    reply = {false, std::string("internal error: ") + e.what()};
  }
  if (!reply.ok) {
    std::string out = "error: " + reply.text;
    if (!out.ends_with('\n')) out += '\n';
    return out;
  }
  std::string out = "ok\n" + reply.text;
  if (!reply.text.empty() && !out.ends_with('\n')) out += '\n';
  return out;
}

Fd open_tcp(const std::string& listen, std::string& bound) {
  const std::optional<ListenAddress> address = parse_listen_address(listen, true);
  const std::string where = "management.listen " + listen;
  if (!address) throw ManagementError(where + ": expected HOST:PORT with an IP address");
  Fd fd(
      ::socket(address->ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw ManagementError(where + ": cannot open a socket: " + error_text(errno));
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (address->ipv6) {
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(address->port);
    ::inet_pton(AF_INET6, address->host.c_str(), &in6->sin6_addr);
    length = sizeof *in6;
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(address->port);
    ::inet_pton(AF_INET, address->host.c_str(), &in4->sin_addr);
    length = sizeof *in4;
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    const int error = errno;
    throw ManagementError(
        where + ": cannot listen: " + error_text(error) +
        (error == EADDRINUSE ? " (another sluice? set management.listen, or \"\" for none)" : ""));
  }
  if (::listen(fd.get(), 16) != 0)
    throw ManagementError(where + ": cannot listen: " + error_text(errno));
  sockaddr_storage actual{};
  socklen_t actual_length = sizeof actual;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&actual), &actual_length);
  const uint16_t port = ntohs(address->ipv6 ? reinterpret_cast<sockaddr_in6*>(&actual)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&actual)->sin_port);
  bound = (address->ipv6 ? "[" + address->host + "]" : address->host) + ":" + std::to_string(port);
  return fd;
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

Fd open_unix(const std::string& path) {
  const std::string where = "management.socket " + path;
  if (path.size() > kMaxSocketPath)
    throw ManagementError(where + ": longer than " + std::to_string(kMaxSocketPath) + " bytes");
  const sockaddr_un address = unix_address(path);
  struct stat status {};
  if (::lstat(path.c_str(), &status) == 0) {
    if (!S_ISSOCK(status.st_mode))
      throw ManagementError(where +
                            ": exists and is not a socket (remove it or choose another "
                            "path)");
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe &&
        ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
      throw ManagementError(where +
                            ": another process is listening there (is sluice already running? "
                            "stop it, or set management.socket)");
    }
    ::unlink(path.c_str());  // stale: its daemon is gone
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw ManagementError(where + ": cannot open a socket: " + error_text(errno));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    throw ManagementError(where + ": cannot bind: " + error_text(errno));
  // Root and its group only: the socket can reload the policy and drain the appliance.
  if (::chmod(path.c_str(), 0660) != 0) {
    const int error = errno;
    ::unlink(path.c_str());
    throw ManagementError(where + ": cannot set mode 0660: " + error_text(error));
  }
  if (::listen(fd.get(), 16) != 0) {
    const int error = errno;
    ::unlink(path.c_str());
    throw ManagementError(where + ": cannot listen: " + error_text(error));
  }
  return fd;
}

}  // namespace

std::optional<ListenAddress> parse_listen_address(std::string_view text, bool allow_port_zero) {
  ListenAddress address;
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    address.ipv6 = true;
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  address.host = std::string(host);
  unsigned char buffer[sizeof(in6_addr)];
  if (::inet_pton(address.ipv6 ? AF_INET6 : AF_INET, address.host.c_str(), buffer) != 1)
    return std::nullopt;
  uint32_t number = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() ||
      (number == 0 && !allow_port_zero) || number > 65535)
    return std::nullopt;
  address.port = static_cast<uint16_t>(number);
  return address;
}

struct ManagementServer::Impl {
  Fd http;
  Fd control;
  std::string http_address;
  std::string socket_path;
  std::vector<Connection> connections;

  void accept_all(const Fd& listener, Kind kind) {
    while (true) {
      Fd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) return;  // EAGAIN, or an error that the next poll shows again
      if (connections.size() >= kMaxConnections) continue;  // closed at once
      connections.push_back(
          {std::move(fd), kind, Clock::now() + kDeadline, {}, {}, 0, false, false, false});
    }
  }

  // Reads what is there; false when the connection is done with (EOF, error).
  bool read_some(Connection& c, ManagementHandler& handler) {
    char buffer[4096];
    while (true) {
      const ssize_t n = ::recv(c.fd.get(), buffer, sizeof buffer, 0);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      if (n == 0) {
        // The client shut its side: the answer still goes out. A control line without its
        // newline is still a line.
        c.peer_done = true;
        if (c.closing) return false;
        if (c.responding) return true;
        if (c.kind == Kind::kControl && !c.in.empty()) {
          respond(c, answer_control(c.in, handler));
          return true;
        }
        return false;
      }
      if (c.closing || c.responding) continue;  // whatever follows the request is ignored
      c.in.append(buffer, static_cast<std::size_t>(n));
      if (c.kind == Kind::kHttp) {
        std::size_t end = c.in.find("\r\n\r\n");
        if (end == std::string::npos) end = c.in.find("\n\n");
        if (end != std::string::npos && end < kMaxHttpHead) {
          respond(c, answer_http(std::string_view(c.in).substr(0, end), handler));
        } else if (c.in.size() > kMaxHttpHead) {
          respond(c, http_error(431, "Request Header Fields Too Large"));
        }
      } else {
        const std::size_t end = c.in.find('\n');
        if (end != std::string::npos && end <= kMaxControlLine) {
          respond(c, answer_control(std::string_view(c.in).substr(0, end), handler));
        } else if (c.in.size() > kMaxControlLine) {
          respond(
              c, "error: command line longer than " + std::to_string(kMaxControlLine) + " bytes\n");
        }
      }
    }
  }

  void respond(Connection& c, std::string out) {
    c.out = std::move(out);
    c.in.clear();
    c.responding = true;
  }

  // Writes what the socket takes; false when the connection is done with.
  bool write_some(Connection& c) {
    while (c.written < c.out.size()) {
      const ssize_t n =
          ::send(c.fd.get(), c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      c.written += static_cast<std::size_t>(n);
    }
    // All sent: no more from us; wait for the client's EOF (unless it came already) so that
    // closing with unread bytes does not reset the answer away.
    if (c.peer_done) return false;
    ::shutdown(c.fd.get(), SHUT_WR);
    c.responding = false;
    c.closing = true;
    return true;
  }
};

ManagementServer::ManagementServer(const std::string& listen, const std::string& socket_path)
    : impl_(std::make_unique<Impl>()) {
  if (!listen.empty()) impl_->http = open_tcp(listen, impl_->http_address);
  if (!socket_path.empty()) {
    impl_->control = open_unix(socket_path);
    impl_->socket_path = socket_path;
  }
}

ManagementServer::~ManagementServer() {
  if (impl_ && !impl_->socket_path.empty()) ::unlink(impl_->socket_path.c_str());
}

std::string ManagementServer::http_address() const {
  return impl_->http_address;
}

const std::string& ManagementServer::socket_path() const {
  return impl_->socket_path;
}

void ManagementServer::poll(std::chrono::milliseconds timeout, ManagementHandler& handler) {
  Impl& m = *impl_;
  std::vector<pollfd> fds;
  fds.reserve(2 + m.connections.size());
  const auto now = Clock::now();
  for (const Connection& c : m.connections) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now);
    if (left < timeout) timeout = std::max(left, std::chrono::milliseconds(0));
  }
  if (m.http) fds.push_back({m.http.get(), POLLIN, 0});
  if (m.control) fds.push_back({m.control.get(), POLLIN, 0});
  const std::size_t first_connection = fds.size();
  for (const Connection& c : m.connections)
    fds.push_back({c.fd.get(), static_cast<short>(c.responding ? POLLOUT : POLLIN), 0});
  const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
  if (ready < 0) return;  // EINTR: a signal; the caller looks at its flags and comes back

  // Connections first (the indexes in `fds` hold until new ones are appended).
  std::vector<bool> done(m.connections.size(), false);
  for (std::size_t i = 0; i < m.connections.size(); ++i) {
    Connection& c = m.connections[i];
    const short events = fds[first_connection + i].revents;
    bool keep = true;
    if (events & (POLLIN | POLLHUP | POLLERR)) keep = m.read_some(c, handler);
    if (keep && c.responding) keep = m.write_some(c);
    if (keep && Clock::now() >= c.deadline) keep = false;  // slow or silent: cut off
    done[i] = !keep;
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < m.connections.size(); ++i) {
    if (!done[i]) {
      if (kept != i) m.connections[kept] = std::move(m.connections[i]);
      ++kept;
    }
  }
  m.connections.erase(m.connections.begin() + static_cast<std::ptrdiff_t>(kept),
                      m.connections.end());
  for (std::size_t i = 0; i < first_connection; ++i) {
    if ((fds[i].revents & POLLIN) == 0) continue;
    if (fds[i].fd == m.http.get()) m.accept_all(m.http, Kind::kHttp);
    if (fds[i].fd == m.control.get()) m.accept_all(m.control, Kind::kControl);
  }
}

}  // namespace sluice
