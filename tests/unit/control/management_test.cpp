// The management listeners over real sockets (loopback and a Unix socket in a temporary
// folder): the HTTP side of GET /metrics with its errors, the control socket's line protocol,
// clients that are slow or silent, and how the listeners are opened; plus the config section.
#include "sluice/management.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "sluice/config.hpp"

namespace sluice {
namespace {

class FakeHandler final : public ManagementHandler {
 public:
  std::string metrics() override {
    ++metrics_calls;
    return "# HELP x X.\n# TYPE x gauge\nx 1\n";
  }
  ControlReply control(std::string_view command, std::string_view argument) override {
    if (command == "ping") return {true, "pong\n"};
    if (command == "echo") return {true, std::string(argument)};
    if (command == "fail") return {false, "it failed"};
    return {false, "unknown command '" + std::string(command) + "'"};
  }
  std::atomic<int> metrics_calls{0};
};

std::string temp_dir() {
  char pattern[] = "/tmp/sluice-mgmt-test.XXXXXX";
  const char* dir = ::mkdtemp(pattern);
  return dir != nullptr ? dir : "/tmp";
}

// A server polled by its own thread while the test talks to it with blocking sockets.
class Running {
 public:
  Running(const std::string& listen, const std::string& socket)
      : server(listen, socket), thread([this] {
          while (!stop.load()) server.poll(std::chrono::milliseconds(10), handler);
        }) {}
  ~Running() {
    stop.store(true);
    thread.join();
  }
  FakeHandler handler;
  ManagementServer server;
  std::atomic<bool> stop{false};
  std::thread thread;
};

int connect_tcp(const std::string& address) {
  const auto parsed = parse_listen_address(address);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(parsed->port);
  ::inet_pton(AF_INET, parsed->host.c_str(), &in.sin_addr);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  return fd;
}

int connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::snprintf(un.sun_path, sizeof un.sun_path, "%s", path.c_str());
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
  return fd;
}

// Sends `request` (then shuts the writing side when asked) and reads until EOF.
std::string exchange(int fd, const std::string& request, bool shut = true) {
  EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  if (shut) ::shutdown(fd, SHUT_WR);
  std::string answer;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::recv(fd, buffer, sizeof buffer, 0)) > 0)
    answer.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  return answer;
}

TEST(ListenAddress, AcceptsIpLiteralsWithAPort) {
  EXPECT_EQ(parse_listen_address("127.0.0.1:9091")->port, 9091);
  EXPECT_EQ(parse_listen_address("0.0.0.0:1")->host, "0.0.0.0");
  const auto v6 = parse_listen_address("[::1]:65535");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->ipv6);
  EXPECT_EQ(v6->host, "::1");
  for (const char* bad :
       {"", "9091", "localhost:9091", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:90x", "::1:9091", "[::1]9091", "[::1]:", "256.0.0.1:80"})
    EXPECT_FALSE(parse_listen_address(bad)) << bad;
}

TEST(ManagementHttp, ServesMetricsWithThePrometheusContentType) {
  Running running("127.0.0.1:0", "");
  const std::string answer = exchange(connect_tcp(running.server.http_address()),
                                      "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 OK\r\n")) << answer;
  EXPECT_NE(answer.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos);
  EXPECT_NE(answer.find("Content-Length: 31\r\n"), std::string::npos) << answer;
  EXPECT_TRUE(answer.ends_with("\r\n\r\n# HELP x X.\n# TYPE x gauge\nx 1\n")) << answer;
}

TEST(ManagementHttp, HeadGivesTheLengthWithoutTheBodyAndAQueryIsIgnored) {
  Running running("127.0.0.1:0", "");
  const std::string answer =
      exchange(connect_tcp(running.server.http_address()), "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 OK\r\n")) << answer;
  EXPECT_NE(answer.find("Content-Length: 31\r\n"), std::string::npos);
  EXPECT_TRUE(answer.ends_with("\r\n\r\n")) << answer;
}

TEST(ManagementHttp, OtherPathsMethodsAndMalformedRequestsAreRefused) {
  Running running("127.0.0.1:0", "");
  const std::string address = running.server.http_address();
  EXPECT_TRUE(exchange(connect_tcp(address), "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
  EXPECT_TRUE(
      exchange(connect_tcp(address), "GET /metricsx HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
  const std::string post = exchange(connect_tcp(address), "POST /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(post.starts_with("HTTP/1.1 405")) << post;
  EXPECT_NE(post.find("Allow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_TRUE(exchange(connect_tcp(address), "hello\r\n\r\n").starts_with("HTTP/1.1 400"));
  EXPECT_TRUE(
      exchange(connect_tcp(address), "GET /metrics HTTP/2.0\r\n\r\n").starts_with("HTTP/1.1 400"));
  const std::string huge = "GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n";
  EXPECT_TRUE(exchange(connect_tcp(address), huge).starts_with("HTTP/1.1 431"));
  EXPECT_EQ(running.handler.metrics_calls.load(), 0);
}

TEST(ManagementHttp, ASilentClientDoesNotHoldUpOthers) {
  Running running("127.0.0.1:0", "");
  const std::string address = running.server.http_address();
  const int silent = connect_tcp(address);
  const int partial = connect_tcp(address);
  ASSERT_GT(::send(partial, "GET /met", 8, 0), 0);  // and then nothing more
  const std::string answer = exchange(connect_tcp(address), "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 OK")) << answer;
  ::close(silent);
  ::close(partial);
}

TEST(ManagementHttp, AClientThatSendsItsHeadInPiecesIsServed) {
  Running running("127.0.0.1:0", "");
  const int fd = connect_tcp(running.server.http_address());
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  for (const char c : request) {
    ASSERT_EQ(::send(fd, &c, 1, 0), 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(exchange(fd, "", false).starts_with("HTTP/1.1 200 OK"));
}

TEST(ManagementControl, AnswersOkWithTheOutputOrAnError) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/ctl.sock";
  {
    Running running("", path);
    EXPECT_EQ(exchange(connect_unix(path), "ping\n"), "ok\npong\n");
    EXPECT_EQ(exchange(connect_unix(path), "  echo   a b \r\n"), "ok\na b\n");
    EXPECT_EQ(exchange(connect_unix(path), "fail\n"), "error: it failed\n");
    EXPECT_EQ(exchange(connect_unix(path), "nope\n"), "error: unknown command 'nope'\n");
    EXPECT_EQ(exchange(connect_unix(path), "\n"), "error: empty command (try 'help')\n");
    // A last line without its newline is still a line once the client shuts its side.
    EXPECT_EQ(exchange(connect_unix(path), "ping"), "ok\npong\n");
    EXPECT_TRUE(exchange(connect_unix(path), std::string(2000, 'x'))
                    .starts_with("error: command line longer than 1024 bytes"));
    // Not shut: the newline alone ends the command.
    EXPECT_EQ(exchange(connect_unix(path), "ping\n", false), "ok\npong\n");
  }
  EXPECT_FALSE(std::filesystem::exists(path)) << "the socket file outlived the server";
  std::filesystem::remove_all(dir);
}

TEST(ManagementControl, SocketIsRootsAndItsGroupsOnly) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/ctl.sock";
  {
    ManagementServer server("", path);
    struct stat status {};
    ASSERT_EQ(::stat(path.c_str(), &status), 0);
    EXPECT_TRUE(S_ISSOCK(status.st_mode));
    EXPECT_EQ(status.st_mode & 0777, 0660u);
  }
  std::filesystem::remove_all(dir);
}

TEST(ManagementControl, AStaleSocketIsReplacedALiveOneOrAFileIsNot) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/ctl.sock";
  {
    // Stale: bound, then its owner went without removing it.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::snprintf(un.sun_path, sizeof un.sun_path, "%s", path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
    ::close(fd);
    ASSERT_TRUE(std::filesystem::exists(path));
    ManagementServer first("", path);
    try {
      ManagementServer second("", path);
      ADD_FAILURE() << "a second server took a live socket";
    } catch (const ManagementError& e) {
      EXPECT_NE(std::string(e.what()).find("another process is listening there"), std::string::npos)
          << e.what();
    }
  }
  const std::string file = dir + "/plain";
  ::close(::creat(file.c_str(), 0600));
  try {
    ManagementServer server("", file);
    ADD_FAILURE() << "a plain file was replaced";
  } catch (const ManagementError& e) {
    EXPECT_NE(std::string(e.what()).find("exists and is not a socket"), std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST(ManagementHttp, AnAddressInUseIsAnErrorNamingIt) {
  ManagementServer first("127.0.0.1:0", "");
  const std::string address = first.http_address();
  try {
    ManagementServer second(address, "");
    ADD_FAILURE() << "bound twice";
  } catch (const ManagementError& e) {
    EXPECT_NE(std::string(e.what()).find("management.listen " + address + ": cannot listen: "),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
}

std::string config_error(const std::string& yaml) {
  try {
    load_config_text(yaml, "m.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ManagementConfig, DefaultsAndValues) {
  const Config defaults = load_config_text("", "m.yaml");
  EXPECT_EQ(defaults.management.listen, "127.0.0.1:9091");
  EXPECT_EQ(defaults.management.socket, "/run/sluice.sock");
  const Config config = load_config_text(
      "management: { listen: \"[::1]:9100\", socket: run/ctl.sock }\n", "/etc/sluice/m.yaml");
  EXPECT_EQ(config.management.listen, "[::1]:9100");
  EXPECT_EQ(config.management.socket, "/etc/sluice/run/ctl.sock");  // beside the config
  const Config off = load_config_text("management: { listen: \"\", socket: \"\" }\n", "m.yaml");
  EXPECT_EQ(off.management.listen, "");
  EXPECT_EQ(off.management.socket, "");
}

TEST(ManagementConfig, ErrorsNameFileLineColumnAndKey) {
  EXPECT_EQ(config_error("management:\n  listen: localhost:9091\n"),
            "m.yaml:2:11: management.listen: expected HOST:PORT with an IP address and a port in "
            "[1, 65535] (127.0.0.1:9091, [::1]:9091), or \"\" for none, got 'localhost:9091'");
  EXPECT_EQ(config_error("management: { lisen: x }\n").rfind("m.yaml:1:", 0), 0u);
  EXPECT_NE(config_error("management: { lisen: x }\n").find("lisen"), std::string::npos);
  const std::string long_path = "/" + std::string(120, 's');
  const std::string error = config_error("management:\n  socket: " + long_path + "\n");
  EXPECT_EQ(error.rfind("m.yaml:2:11: management.socket: expected a path of at most 107 bytes", 0),
            0u)
      << error;
  EXPECT_EQ(config_error("management: 3\n").rfind("m.yaml:1:13: ", 0), 0u);
}

}  // namespace
}  // namespace sluice
