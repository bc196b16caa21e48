// The L7 stage of a worker: a StreamConsumer that turns each inspected flow's in-order bytes
// into requests — HTTP/1.1 framing, Content-Encoding, JSON prompt extraction, canonical text —
// and reports them to a RequestObserver (admission, rules and audit plug in there). A request
// the assembler refuses is reported with its reason and ends the flow.
//
// A refused request is answered with the reason's status and an OpenAI-style error body
// (StreamVerdict::kDeny), then the flow ends.
// Per-flow state (≈ 3 KiB without zlib, see kFlowStateBytes) is allocated the first time a flow
// carries data and recycled through a free list when the flow closes, so memory follows the
// number of concurrently active flows and the steady state allocates nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "sluice/content_decoder.hpp"
#include "sluice/http_request.hpp"
#include "sluice/prompt_extractor.hpp"
#include "sluice/stream_consumer.hpp"

namespace sluice {

struct HttpStageConfig {
  HttpLimits limits;
  DecodeLimits decode;
  JsonLimits json;
};

struct RequestOutcome {
  uint64_t sequence = 0;  // 0 for the flow's first request
  RequestReason reason = RequestReason::ok;
  bool json = false;
  const RequestFields* fields = nullptr;  // when json; valid during the call
  uint64_t body_bytes = 0;                // decoded
  uint64_t token_estimate = 0;
};

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  // Headers complete. `head` and its views are valid during the call only.
  virtual void on_request_head(uint32_t flow_id, const RequestHead& head) = 0;
  // Canonical prompt text of the current request, in order, in pieces (fields separated by a
  // newline). This is what the scanner sees.
  virtual void on_prompt_text(uint32_t flow_id, std::string_view canonical) = 0;
  // The request ended (complete, or refused with outcome.reason).
  virtual void on_request_end(uint32_t flow_id, const RequestOutcome& outcome) = 0;
  // The response to the oldest open request ended.
  virtual void on_response_end(uint32_t flow_id, uint16_t status) = 0;
};

class HttpStage final : public StreamConsumer {
 public:
  HttpStage(const HttpStageConfig* config, RequestObserver& observer);
  ~HttpStage() override;

  void on_open(uint32_t flow_id) override;
  StreamVerdict on_data(uint32_t flow_id, Direction direction, std::span<const uint8_t> bytes,
                        uint64_t now_ns) override;
  void on_end(uint32_t flow_id, Direction direction) override;
  void on_close(uint32_t flow_id) override;
  // The HTTP error response to the flow's refused request (after kDeny).
  std::span<const uint8_t> denial(uint32_t flow_id) override;

  std::size_t states_allocated() const { return allocated_; }
  // Bytes of one flow's state (without zlib's, which exists only while a gzip body is read).
  static std::size_t flow_state_bytes();

  struct FlowState;

 private:
  FlowState* state_of(uint32_t flow_id, bool create);

  const HttpStageConfig* config_;
  RequestObserver& observer_;
  std::vector<FlowState*> by_flow_;  // indexed by flow id; nullptr when the flow has no state
  std::vector<std::unique_ptr<FlowState>> owned_;
  std::vector<FlowState*> free_;
  std::size_t allocated_ = 0;
};

}  // namespace sluice
