// The management listeners, served by the main (non-worker) thread between its other duties:
//
//   HTTP on `management.listen` (default 127.0.0.1:9091): GET or HEAD /metrics answers the
//   Prometheus text exposition; other paths 404, other methods 405, a malformed request 400, a
//   request head over 8 KiB 431. One request per connection (Connection: close).
//
//   The control socket on `management.socket` (default /run/sluice.sock, mode 0660): a line
//   protocol. The client sends one line, `COMMAND [ARGUMENT]\n` (at most 1 KiB); the daemon
//   answers `ok\n` followed by the command's output, or `error: MESSAGE\n`, and closes the
//   connection — the end of the answer is the end of the stream. Commands: ping, version,
//   metrics (the exposition), reload, drain, resume, drain-status, help (README.md,
//   "Operating").
//
// Everything is non-blocking: poll() waits at most its timeout, reads and writes only what the
// sockets take, and every connection has a deadline (5 s from accept) after which it is closed;
// at most 16 connections are served at once, more are accepted and closed at once. A slow or
// broken client can only hold its own connection, never the data path (the workers never see
// any of this) nor, for longer than its deadline, a connection slot.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sluice {

// "127.0.0.1:9091", "0.0.0.0:9091", "[::1]:9091": an IP literal and a port in [1, 65535]
// (port 0, "any free port", only when allowed: the server takes it, tests use it).
struct ListenAddress {
  std::string host;  // without brackets
  uint16_t port = 0;
  bool ipv6 = false;
};
std::optional<ListenAddress> parse_listen_address(std::string_view text,
                                                  bool allow_port_zero = false);

// Longest path a Unix socket address holds (sun_path less its terminating NUL).
inline constexpr std::size_t kMaxSocketPath = 107;

struct ControlReply {
  bool ok = true;
  std::string text;  // after "ok\n"; or the message after "error: "
};

// What the listeners serve; called on the thread that calls poll().
class ManagementHandler {
 public:
  virtual ~ManagementHandler() = default;
  virtual std::string metrics() = 0;
  virtual ControlReply control(std::string_view command, std::string_view argument) = 0;
};

class ManagementError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ManagementServer {
 public:
  static constexpr std::size_t kMaxConnections = 16;
  static constexpr std::size_t kMaxHttpHead = 8192;
  static constexpr std::size_t kMaxControlLine = 1024;
  static constexpr std::chrono::milliseconds kDeadline{5000};

  // Opens the listeners; an empty `listen` or `socket_path` opens none of that kind. Throws
  // ManagementError naming the address and the reason (in use, not permitted, another daemon on
  // the socket, a path that is not a socket). A stale socket file (nobody listening) is
  // replaced; the new one gets mode 0660.
  ManagementServer(const std::string& listen, const std::string& socket_path);
  ~ManagementServer();  // closes everything and removes the socket file it made
  ManagementServer(const ManagementServer&) = delete;
  ManagementServer& operator=(const ManagementServer&) = delete;

  // Waits up to `timeout` for activity and serves what is ready.
  void poll(std::chrono::milliseconds timeout, ManagementHandler& handler);

  // The HTTP listener's address as bound ("127.0.0.1:9091"; the port filled in when 0 was
  // asked), or "" when none.
  std::string http_address() const;
  const std::string& socket_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
