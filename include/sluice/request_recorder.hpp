// The dataplane's RequestObserver: passes every event on to the policy observer behind it
// (admission, which decides and audits), counts requests by final outcome — the assembler's
// reason, else the policy's — and responses cut by completion rules (per worker, read by the
// stats thread like the other counters), and, for `sluice replay --prompts FILE` only, writes what
// the scanner would see, one JSON line per request. API keys are never written; prompts only when
// that option is given.
#pragma once

#include <array>
#include <atomic>
#include <cstdio>
#include <string>
#include <unordered_map>

#include "sluice/counters.hpp"
#include "sluice/http_stage.hpp"
#include "sluice/metrics.hpp"
#include "sluice/request_reason.hpp"

namespace sluice {

struct RequestCounts {
  std::array<uint64_t, kRequestReasonCount> by_reason{};
  void add(RequestReason reason) {
    std::atomic_ref<uint64_t> slot(by_reason[static_cast<std::size_t>(reason)]);
    slot.store(slot.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  uint64_t get(std::size_t index) const {
    std::atomic_ref<uint64_t> slot(const_cast<uint64_t&>(by_reason[index]));
    return slot.load(std::memory_order_relaxed);
  }
};

class RequestRecorder final : public RequestObserver {
 public:
  // `next` and `prompts` may be null (every request admitted; nothing written). `decisions`
  // (may be null) gets the TSC cycles `next` took to decide each request (metrics.hpp).
  RequestRecorder(RequestCounts& counts, RequestObserver* next, std::FILE* prompts,
                  DecisionHistogram* decisions = nullptr)
      : counts_(counts), next_(next), prompts_(prompts), decisions_(decisions) {}

  void on_flow_open(uint32_t flow_id, const FlowEndpoints& endpoints) override;
  Refusal on_request_head(uint32_t flow_id, const RequestHead& head, uint64_t now_ns) override;
  void on_prompt_text(uint32_t flow_id, std::string_view canonical) override;
  void on_prompt_joined_text(uint32_t flow_id, std::string_view canonical) override;
  Refusal on_request_end(uint32_t flow_id, const RequestOutcome& outcome, uint64_t now_ns) override;
  bool on_header_field(uint32_t flow_id, std::string_view lower_name) override;
  void on_header_value(uint32_t flow_id, std::string_view bytes) override;
  void on_header_end(uint32_t flow_id) override;
  bool on_response_head(uint32_t flow_id, const ResponseHead& head) override;
  Refusal on_completion_text(uint32_t flow_id, std::string_view canonical) override;
  void on_completion_select(uint32_t flow_id, uint8_t text) override;
  Refusal on_completion_segment_end(uint32_t flow_id, std::string_view held) override;
  Refusal on_completion_end(uint32_t flow_id, bool readable) override;
  void on_response_end(uint32_t flow_id, const ResponseOutcome& response, uint64_t now_ns) override;
  void on_flow_close(uint32_t flow_id) override;

 private:
  void write_prompt_line(uint32_t flow_id, const RequestOutcome& outcome, RequestReason reason);

  RequestCounts& counts_;
  RequestObserver* next_;
  std::FILE* prompts_;
  DecisionHistogram* decisions_;
  // The requests being read, by flow (flows interleave in a capture).
  struct Pending {
    std::string method;
    std::string target;
    std::string text;
  };
  std::unordered_map<uint32_t, Pending> pending_;
};

// Appends `text` to `out` as the inside of a JSON string (RFC 8259 escapes).
void append_json_escaped(std::string& out, std::string_view text);

}  // namespace sluice
