// The L7 stage of a worker: a StreamConsumer that turns each inspected flow's in-order bytes
// into requests — HTTP/1.1 framing, Content-Encoding, JSON prompt extraction, canonical text —
// and reports them to a RequestObserver (admission, rules and audit plug in there). A request
// the assembler refuses is reported with its reason and ends the flow.
//
// A request refused — by the assembler, or by the observer at its head or its end — is answered
// with the refusal's status and an OpenAI-style error body (StreamVerdict::kDeny, denial.hpp),
// then the flow ends. The observer decides at request end, inside the call that delivered the
// request's last bytes, so the segment that would complete the request at the host is the one
// that is dropped. After a request that closes the connection the client's later bytes are not
// the host's to read: they are answered StreamVerdict::kDiscard (dropped, the flow kept).
// Responses are framed to tie each to its request and to read its `usage`; gzip and deflate
// bodies are inflated for that. When the observer asks (a completion rule applies), the
// completion text is extracted and canonicalised like a prompt and handed over as it streams;
// a response the observer refuses is cut at the segment that decided it (see on_completion_text).
// Every string a client shows is text (completion_extractor.hpp); each choice, block or item of a
// stream is a text of its own (on_completion_select); each segment's text is judged as if it
// ended there (on_completion_segment_end); an answer that cannot be read is cut
// (on_completion_end). docs/normalisation.md, "Responses", lists what Sluice reads and refuses.
// Per-flow state (≈ 5.5 KiB without zlib, see flow_state_bytes; 8 completion canonicalisers) is
// allocated the first time a flow carries data and recycled through a free list when the flow
// closes, so memory follows the number of concurrently active flows and the steady state allocates
// nothing.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/completion_extractor.hpp"
#include "sluice/content_decoder.hpp"
#include "sluice/denial.hpp"
#include "sluice/http_request.hpp"
#include "sluice/http_response.hpp"
#include "sluice/prompt_extractor.hpp"
#include "sluice/stream_consumer.hpp"
#include "sluice/usage_scanner.hpp"

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

struct ResponseOutcome {
  uint16_t status = 0;  // 0: the flow closed before a response head
  TokenUsage usage;     // what the body's `usage` reported (JSON body or the SSE events)
};

// What the L7 stage tells the policy layers (admission, rules and audit), per flow, in order:
// on_flow_open; then per request its header fields (on_header_field, and the values asked for),
// on_request_head → on_prompt_text… → on_request_end; each response's on_response_head, its
// completion text when asked for (on_completion_text… → on_completion_end) and on_response_end
// (oldest request first); and finally on_flow_close.
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void on_flow_open(uint32_t, const FlowEndpoints&) {}
  // A header field of the request being read, by its lower-case name, before on_request_head
  // (fields that can carry keys never are: is_secret_field). True asks for its value: pieces in
  // on_header_value (views valid during the call), then on_header_end.
  virtual bool on_header_field(uint32_t, std::string_view /*lower_name*/) { return false; }
  virtual void on_header_value(uint32_t, std::string_view) {}
  virtual void on_header_end(uint32_t) {}
  // Headers complete. `head` and its views are valid during the call only. A refusal ends the
  // flow here: the body is not read, and on_request_end is not called for this request.
  virtual Refusal on_request_head(uint32_t flow_id, const RequestHead& head, uint64_t now_ns) = 0;
  // Canonical prompt text of the current request, in order, in pieces (fields separated by a
  // newline). This is what the scanner sees.
  virtual void on_prompt_text(uint32_t flow_id, std::string_view canonical) = 0;
  // The prompt's second view, interleaved with on_prompt_text: the parts of each content (an
  // array under content, system, output, ...) joined with nothing, canonical, one field per
  // content. A chat template may join parts so; a rule must match whichever way the host joins
  // them, so both views are scanned. Only requests with parts arrays produce it.
  virtual void on_prompt_joined_text(uint32_t /*flow_id*/, std::string_view /*canonical*/) {}
  // The request ended: complete (outcome.reason ok), or refused by the assembler with
  // outcome.reason. For a complete request the observer's refusal, if any, is sent; for one the
  // assembler refused the return value is ignored.
  virtual Refusal on_request_end(uint32_t flow_id, const RequestOutcome& outcome,
                                 uint64_t now_ns) = 0;
  // The head of the response to the oldest open request. True asks for its completion text.
  virtual bool on_response_head(uint32_t, const ResponseHead&) { return false; }
  // Canonical completion text of that response, in order, in pieces (fields separated by a
  // newline), as the body streams through. A refusal cuts the response at the segment that
  // carried the text: a streamed one ends with an SSE error event and a FIN to the client, any
  // other is reset both ways; the server is reset. No on_response_end follows it.
  virtual Refusal on_completion_text(uint32_t, std::string_view) { return {}; }
  // The completion text that follows (on_completion_text, on_completion_segment_end) is text
  // `text`'s (0 .. CompletionExtractor::kMaxTexts-1): each field and tool call of a choice,
  // content block or output item of a stream is scanned as its own text. Text 0 is current after
  // on_response_head.
  virtual void on_completion_select(uint32_t, uint8_t /*text*/) {}
  // The end of each segment while completion text is read: `held` is the text the canonicaliser
  // still holds back (Canonicalizer::flush_copy), so that the scan decides on everything the
  // client holds as if the text ended here — no byte that completes a match is forwarded. A
  // refusal cuts the response at this segment, as on_completion_text's does.
  virtual Refusal on_completion_segment_end(uint32_t, std::string_view /*held*/) { return {}; }
  // The completion text ended with the body (readable), or cannot be read (a coding Sluice does
  // not decode, one that fails to decode, framing the parser refuses, JSON the extractor calls
  // malformed): then at the segment that showed it. A refusal cuts the response there.
  virtual Refusal on_completion_end(uint32_t, bool /*readable*/) { return {}; }
  // The response to the oldest open request ended.
  virtual void on_response_end(uint32_t flow_id, const ResponseOutcome& response,
                               uint64_t now_ns) = 0;
  // The flow is gone (closed, expired, reset or evicted); its id will be reused.
  virtual void on_flow_close(uint32_t) {}
};

class HttpStage final : public StreamConsumer {
 public:
  HttpStage(const HttpStageConfig* config, RequestObserver& observer);
  ~HttpStage() override;

  void on_open(uint32_t flow_id, const FlowEndpoints& endpoints) override;
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
  std::array<char, kMaxDenialBytes> denial_{};  // the last denial() formatted
  // Completion text canonicalised while one segment is read, handed over once per segment.
  static constexpr std::size_t kCompletionBatchBytes = 4096;
  std::string completion_batch_;
  // A refused response's end, formatted when it was refused (the tracker asks for it next).
  uint32_t stream_denial_flow_ = 0;
  std::size_t stream_denial_length_ = 0;
};

}  // namespace sluice
