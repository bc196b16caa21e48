// Test tool: parses stdin as a client→server byte stream with Sluice's HTTP/1.1 request parser
// and prints one JSON object: the requests (method, target, key status, keep-alive, body as hex,
// complete) and the outcome (a RequestReason name, whether the parser is idle or closed). Used by
// the differential test against h11.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "sluice/http_request.hpp"

namespace {

struct Printer final : sluice::HttpRequestSink {
  std::string json = "[";
  bool first = true;
  bool open = false;  // the last request's body string is still open
  void on_head(const sluice::RequestHead& head) override {
    if (!first) json += "},";
    first = false;
    static constexpr const char* kKeyStatus[] = {"absent", "present", "duplicated", "conflicting"};
    json += "{\"method\":\"" + std::string(head.method) + "\",\"target\":\"" + hex(head.target) +
            "\",\"key_status\":\"" + kKeyStatus[static_cast<int>(head.key_status)] +
            "\",\"keep_alive\":" + (head.keep_alive ? "true" : "false") + ",\"body\":\"";
    open = true;
  }
  void on_body(std::span<const uint8_t> bytes) override {
    json += hex({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
  }
  void on_complete() override {
    json += "\",\"complete\":true";
    open = false;
  }
  static std::string hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out += kDigits[c >> 4];
      out += kDigits[c & 15];
    }
    return out;
  }
};

}  // namespace

int main() {
  const std::string input{std::istreambuf_iterator<char>(std::cin), {}};
  sluice::HttpLimits limits;
  limits.methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  sluice::HttpRequestParser parser(&limits);
  Printer printer;
  const sluice::RequestReason reason =
      parser.feed({reinterpret_cast<const uint8_t*>(input.data()), input.size()}, printer);
  std::string json = printer.json;
  if (!printer.first) {
    if (printer.open) json += "\",\"complete\":false";
    json += "}";
  }
  json += "]";
  std::printf("{\"requests\":%s,\"reason\":\"%s\",\"idle\":%s,\"closed\":%s}\n", json.c_str(),
              std::string(sluice::info_of(reason).name).c_str(), parser.idle() ? "true" : "false",
              parser.closed() ? "true" : "false");
  return 0;
}
