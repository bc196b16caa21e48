#include "sluice/http_stage.hpp"

#include <algorithm>
#include <utility>

#include "sluice/canonicalizer.hpp"
#include "sluice/http_response.hpp"
#include "sluice/stage_clock.hpp"

namespace sluice {

// Everything the stage keeps for one flow; it is its own sink at every step of the chain
// request parser → content decoder → prompt extractor → canonicaliser → observer.
struct HttpStage::FlowState final : HttpRequestSink,
                                    HttpResponseSink,
                                    DecodedSink,
                                    PromptSink,
                                    CanonicalSink {
  FlowState(const HttpStageConfig* stage_config, RequestObserver& request_observer,
            std::string& completion_batch)
      : config(stage_config),
        observer(request_observer),
        batch(completion_batch),
        request(&stage_config->limits),
        decoder(stage_config->decode),
        extractor(stage_config->json),
        response_decoder(stage_config->decode),
        completion_path(*this),
        joined_path(*this) {}

  // The response direction's chain: decoded body → usage scanner and completion extractor →
  // canonicaliser → observer. Its own sinks, apart from the request's. A stream's texts
  // (choices' fields and tool calls, content blocks, output items: CompletionExtractor::kMaxTexts)
  // each have their own canonicaliser, and the observer its own scan for each.
  struct CompletionPath final : DecodedSink, CompletionSink, CanonicalSink {
    static constexpr std::size_t kTexts = CompletionExtractor::kMaxTexts;
    static_assert(kTexts <= 8, "texts_fed has a bit per text");
    explicit CompletionPath(FlowState& flow_state) : state(flow_state) {}
    void on_decoded(std::span<const uint8_t> bytes) override { state.on_response_text(bytes); }
    void on_completion_select(uint8_t selected, bool fresh) override {
      text = selected;
      // The slot's earlier text has ended: the new one is a field of its own.
      if (fresh && field_open[text]) {
        canonicalizers[text].end_field(*this);
        field_open[text] = false;
      }
    }
    void on_completion_text(std::string_view utf8) override {
      texts_fed |= static_cast<uint8_t>(1u << text);  // (held back or not: probed)
      if (!field_open[text]) {
        canonicalizers[text].begin_field(*this);
        field_open[text] = true;
      }
      canonicalizers[text].feed(utf8, *this);
    }
    // A stream's deltas are pieces of one text (a word may be cut between two): only a plain
    // body's fields are separate. What a delta ends with is scanned before the next comes.
    void on_completion_field_end() override {
      if (state.completion_extractor.streamed()) {
        if (field_open[text]) canonicalizers[text].flush(*this);
        return;
      }
      if (!field_open[text]) canonicalizers[text].begin_field(*this);
      canonicalizers[text].end_field(*this);
      field_open[text] = false;
    }
    // Batched per segment (a stream hands over a few characters per delta): the scan's cost is
    // per call, and the verdict is the segment's anyway.
    void on_canonical(std::string_view utf8) override {
      if (state.batch_text != text) state.flush_completion();
      state.batch_text = text;
      if (state.batch.size() + utf8.size() > state.batch.capacity()) state.flush_completion();
      if (utf8.size() > state.batch.capacity()) {
        state.select_text(text);
        if (!state.response_refused())
          state.refuse_response(state.observer.on_completion_text(state.flow_id, utf8));
        return;
      }
      state.batch.append(utf8);
    }
    void reset() {
      for (Canonicalizer& canonicalizer : canonicalizers) canonicalizer.reset();
      field_open.fill(false);
      text = 0;
      texts_fed = 0;
    }
    FlowState& state;
    std::array<Canonicalizer, kTexts> canonicalizers;
    std::array<bool, kTexts> field_open{};
    uint8_t text = 0;       // the text being fed
    uint8_t texts_fed = 0;  // bit per text: canonical text came since the last probe
  };

  void reset(uint32_t id) {
    flow_id = id;
    request = HttpRequestParser(&config->limits);
    response = HttpResponseParser();
    sequence = 0;
    in_body = reported = field_open = json = false;
    failure = refused = RequestReason::ok;
    refusal = Refusal{};
    response_refusal = Refusal{};
    status = 0;
    now_ns = 0;
    completion = false;
    field_offered = false;
    joined_path.sequence = UINT64_MAX;  // a reused state: the join restarts with the flow
    framing_failed = false;
  }

  // The request failed or ended: tells the observer once. A refusal ends the flow: nothing
  // after it — not even the rest of the segment that carried it — is read as a request.
  void report(RequestReason reason) {
    if (reported || refused != RequestReason::ok) return;
    reported = true;
    if (field_open) {
      canonicalizer.end_field(*this);
      field_open = false;
    }
    RequestOutcome outcome;
    outcome.sequence = sequence;
    outcome.reason = reason;
    outcome.json = json;
    outcome.fields = json ? &extractor.fields() : nullptr;
    outcome.body_bytes = in_body ? decoder.decoded_bytes() : 0;
    outcome.token_estimate = in_body ? canonicalizer.token_estimate() : 0;
    const Refusal verdict = observer.on_request_end(flow_id, outcome, now_ns);
    refuse(reason != RequestReason::ok ? Refusal{reason} : verdict);
  }

  void refuse(const Refusal& r) {
    if (!r.refused() || refused != RequestReason::ok) return;
    refusal = r;
    refused = r.reason;
  }

  // HttpRequestSink
  bool on_field_name(std::string_view name) override {
    if (refused != RequestReason::ok) return false;
    field_offered = observer.on_header_field(flow_id, name);
    return field_offered;
  }
  void on_field_value(std::span<const uint8_t> bytes) override {
    if (field_offered)
      observer.on_header_value(flow_id,
                               {reinterpret_cast<const char*>(bytes.data()), bytes.size()});
  }
  void on_field_end() override {
    if (field_offered) observer.on_header_end(flow_id);
    field_offered = false;
  }
  void on_head(const RequestHead& head) override {
    if (refused != RequestReason::ok) return;
    reported = field_open = false;
    failure = RequestReason::ok;
    // Every body is read as one JSON document whatever its Content-Type (absent, text/plain,
    // a form type…): FastAPI, vLLM, LiteLLM and llama.cpp parse it as JSON anyway, so a declared
    // type must not take a body past the rules, the model list, the token cap and reservation.
    // A body that is not one JSON object is refused (json_invalid, …). head.json is not read.
    json = true;
    in_body = true;
    decoder.begin(head.content_encoding);
    extractor.reset();
    canonicalizer.reset();
    response.expect_response(head.method == "HEAD");
    refuse(observer.on_request_head(flow_id, head, now_ns));
  }
  void on_body(std::span<const uint8_t> bytes) override {
    if (failure != RequestReason::ok || refused != RequestReason::ok) return;
    failure = decoder.feed(bytes, *this);
  }
  void on_complete() override {
    if (refused != RequestReason::ok) return;
    if (failure == RequestReason::ok) failure = decoder.finish();
    // An empty body (the OpenAI SDK's GET /v1/models, with or without a JSON content type) has
    // no document.
    if (failure == RequestReason::ok && json && decoder.decoded_bytes() == 0) json = false;
    if (failure == RequestReason::ok && json) failure = extractor.finish(*this);
    report(failure);
    in_body = false;
    reported = false;
    ++sequence;
  }

  // DecodedSink: only JSON bodies carry prompts.
  void on_decoded(std::span<const uint8_t> bytes) override {
    if (!json || failure != RequestReason::ok) return;
    failure = extractor.feed(bytes, *this);
  }

  // The prompt's second view (RequestObserver::on_prompt_joined_text): the text of each
  // content's parts, nested ones included, fed to a canonicaliser of its own as one field. Costs
  // nothing for a body without parts arrays; text in parts is canonicalised and scanned twice.
  struct JoinedPath final : CanonicalSink {
    explicit JoinedPath(FlowState& flow_state) : state(flow_state) {}
    void on_canonical(std::string_view utf8) override {
      state.observer.on_prompt_joined_text(state.flow_id, utf8);
    }
    FlowState& state;
    Canonicalizer canonicalizer;
    uint64_t sequence = UINT64_MAX;  // of the request it was last reset for
    uint32_t parts_open = 0;         // nesting of the parts arrays being read
  };

  // PromptSink
  void on_text(PromptField, std::string_view utf8) override {
    if (!field_open) {
      canonicalizer.begin_field(*this);
      field_open = true;
    }
    canonicalizer.feed(utf8, *this);
    if (joined_path.parts_open > 0) joined_path.canonicalizer.feed(utf8, joined_path);
  }
  void on_field_end(PromptField) override {
    if (!field_open) canonicalizer.begin_field(*this);  // an empty string is still a field
    canonicalizer.end_field(*this);
    field_open = false;
  }
  void on_parts_begin() override {
    if (joined_path.sequence != sequence) {  // the first parts of this request
      joined_path.sequence = sequence;
      joined_path.canonicalizer.reset();
      joined_path.parts_open = 0;
    }
    if (joined_path.parts_open++ == 0) joined_path.canonicalizer.begin_field(joined_path);
  }
  void on_parts_end() override {
    if (--joined_path.parts_open == 0) joined_path.canonicalizer.end_field(joined_path);
  }

  // CanonicalSink
  void on_canonical(std::string_view utf8) override { observer.on_prompt_text(flow_id, utf8); }

  // HttpResponseSink
  void on_response_head(const ResponseHead& head) override {
    status = head.status;
    event_stream = head.event_stream;
    body_readable = !head.coded;
    identity_coded = head.encoding == ContentEncoding::kIdentity;
    usage.begin(head.event_stream);
    response_decoder.begin(head.encoding);
    completion = observer.on_response_head(flow_id, head);
    if (!completion) return;
    completion_extractor.begin(head.event_stream, head.ndjson);
    completion_path.reset();
    batch_text = observer_text = 0;  // the observer begins with text 0
    if (!body_readable) end_completion(false);
  }
  void on_response_body(std::span<const uint8_t> bytes) override {
    if (!body_readable || response_refused()) return;
    if (response_decoder.feed(bytes, completion_path) != RequestReason::ok) {
      body_readable = false;  // no usage; a completion that cannot be read is refused
      if (completion) end_completion(false);
    }
  }
  void on_response_complete() override {
    if (response_refused()) return;
    if (body_readable && response_decoder.finish() != RequestReason::ok) body_readable = false;
    if (completion) {
      if (body_readable) completion_extractor.finish(completion_path);
      end_completion(body_readable && !completion_extractor.malformed());
      if (response_refused()) return;  // cut at its last segment: no response end
    }
    ResponseOutcome outcome;
    outcome.status = status;
    if (body_readable) outcome.usage = usage.finish();
    observer.on_response_end(flow_id, outcome, now_ns);
  }
  // Decoded response bytes.
  void on_response_text(std::span<const uint8_t> bytes) {
    if (bytes.empty()) return;
    usage.feed(bytes);
    if (!completion || response_refused()) return;
    completion_extractor.feed(bytes, completion_path);
    event_stream = completion_extractor.event_stream();  // as the body's first byte said
    // What cannot be read is not forwarded: cut at the segment that showed it.
    if (completion_extractor.malformed()) end_completion(false);
  }
  // The response framing failed: the completion being read is cut as unreadable, and so is the
  // next response when its head is what failed and its request reads completions.
  void unframeable() {
    if (framing_failed) return;
    framing_failed = true;
    if (!completion) {
      event_stream = false;
      completion = observer.on_response_head(flow_id, ResponseHead{});
      if (!completion) return;
    }
    end_completion(false);
  }
  // The completion text batched during this segment goes to the observer.
  void flush_completion() {
    if (!batch.empty() && !response_refused()) {
      select_text(batch_text);
      refuse_response(observer.on_completion_text(flow_id, batch));
    }
    batch.clear();
  }
  void select_text(uint8_t text) {
    if (text == observer_text) return;
    observer_text = text;
    observer.on_completion_select(flow_id, text);
  }
  // The text handed out so far is judged as if it ended with this segment (see
  // on_completion_segment_end): what the canonicaliser holds back goes to the scan's copy only.
  void probe_completion() {
    struct Held final : CanonicalSink {
      // Held back: ≤ kMaxHeldCodePoints code points, composed, each folded to ≤ a few bytes.
      std::array<char, 1024> bytes;
      std::size_t size = 0;
      void on_canonical(std::string_view utf8) override {
        const std::size_t n = std::min(utf8.size(), bytes.size() - size);
        std::copy_n(utf8.data(), n, bytes.data() + size);
        size += n;
      }
    } held;
    for (uint8_t text = 0; text < CompletionPath::kTexts && !response_refused(); ++text) {
      if ((completion_path.texts_fed >> text & 1) == 0) continue;  // judged at an earlier end
      held.size = 0;
      if (completion_path.field_open[text]) completion_path.canonicalizers[text].flush_copy(held);
      select_text(text);
      refuse_response(observer.on_completion_segment_end(flow_id, {held.bytes.data(), held.size}));
    }
    completion_path.texts_fed = 0;
  }
  void end_completion(bool readable) {
    for (uint8_t text = 0; text < CompletionPath::kTexts; ++text) {
      if (!completion_path.field_open[text]) continue;
      completion_path.text = text;
      completion_path.canonicalizers[text].end_field(completion_path);
      completion_path.field_open[text] = false;
    }
    flush_completion();
    completion = false;
    if (!response_refused()) refuse_response(observer.on_completion_end(flow_id, readable));
  }
  bool response_refused() const { return response_refusal.refused(); }
  void refuse_response(const Refusal& r) {
    if (r.refused() && !response_refused()) response_refusal = r;
  }

  const HttpStageConfig* config;
  RequestObserver& observer;
  std::string& batch;  // the stage's: completion text of the segment being read
  uint32_t flow_id = 0;
  HttpRequestParser request;
  HttpResponseParser response;
  ContentDecoder decoder;
  PromptExtractor extractor;
  Canonicalizer canonicalizer;
  UsageScanner usage;
  ContentDecoder response_decoder;
  CompletionExtractor completion_extractor;
  CompletionPath completion_path;
  JoinedPath joined_path;
  Refusal response_refusal;  // the response the observer refused (the flow ends with it)
  CompletionExtractor extractor_before;  // as it was before the segment being read
  uint64_t sequence = 0;
  uint64_t now_ns = 0;                        // of the on_data call being handled
  RequestReason failure = RequestReason::ok;  // of the current request's body
  RequestReason refused = RequestReason::ok;  // sticky: the flow's first refusal
  Refusal refusal;                            // and how to answer it
  uint16_t status = 0;
  bool body_readable = false;   // the response body can be decoded (usage, completion)
  bool identity_coded = false;  // and is sent as is (an SSE error event can follow it)
  bool event_stream = false;
  bool completion = false;  // the observer reads this response's completion text
  bool framing_failed = false;
  uint8_t batch_text = 0;     // the text the batch holds
  uint8_t observer_text = 0;  // the text the observer was last told (on_completion_select)
  bool field_offered = false;
  bool in_body = false;
  bool reported = false;
  bool field_open = false;
  bool json = false;
};

HttpStage::HttpStage(const HttpStageConfig* config, RequestObserver& observer)
    : config_(config), observer_(observer) {
  completion_batch_.reserve(kCompletionBatchBytes);
  // The canonicaliser's Unicode table (≈ 150 KB, ≈ 55 ms) is built by the first instance: here,
  // at worker start, not when the first flow carries data.
  const Canonicalizer warm_up;
}

HttpStage::~HttpStage() = default;

HttpStage::FlowState* HttpStage::state_of(uint32_t flow_id, bool create) {
  if (flow_id >= by_flow_.size()) {
    if (!create) return nullptr;
    by_flow_.resize(flow_id + 1, nullptr);
  }
  FlowState*& slot = by_flow_[flow_id];
  if (slot == nullptr && create) {
    if (free_.empty()) {
      owned_.push_back(std::make_unique<FlowState>(config_, observer_, completion_batch_));
      free_.push_back(owned_.back().get());
      ++allocated_;
    }
    slot = free_.back();
    free_.pop_back();
    slot->reset(flow_id);
  }
  return slot;
}

std::size_t HttpStage::flow_state_bytes() {
  return sizeof(FlowState);
}

void HttpStage::on_open(uint32_t flow_id, const FlowEndpoints& endpoints) {
  SLUICE_STAGE(kHttp);
  observer_.on_flow_open(flow_id, endpoints);
}

StreamVerdict HttpStage::on_data(uint32_t flow_id, Direction direction,
                                 std::span<const uint8_t> bytes, uint64_t now_ns) {
  SLUICE_STAGE(kHttp);
  FlowState& state = *state_of(flow_id, true);
  state.now_ns = now_ns;
  if (direction == Direction::kToClient) {
    if (state.response_refused()) return StreamVerdict::kKill;
    // Where the client's view stands before these bytes — the body framing and the event being
    // streamed — for the SSE error event that replaces them if a rule cuts the response here.
    const BodyPosition position = state.response.body_position();
    const bool snapshot = state.completion && state.event_stream && state.identity_coded;
    if (snapshot) state.extractor_before = state.completion_extractor;
    // A response it cannot frame is no longer followed: cut when its completion is read.
    if (!state.response.feed(bytes, state) && !state.response_refused()) state.unframeable();
    state.flush_completion();
    // No byte that completes a match is forwarded: the segment is judged as the text's end.
    if (state.completion && !state.response_refused()) state.probe_completion();
    if (!state.response_refused()) return StreamVerdict::kContinue;
    stream_denial_length_ = 0;
    if (state.event_stream && state.identity_coded) {
      // The client's event in progress is finished first, so that it parses.
      std::array<char, 256> event_end;
      const long end_length = snapshot ? state.extractor_before.write_event_end(event_end) : 0;
      if (end_length >= 0) {
        stream_denial_flow_ = flow_id;
        stream_denial_length_ =
            write_stream_denial(state.response_refusal, position,
                                {event_end.data(), static_cast<std::size_t>(end_length)}, denial_);
      }
    }
    return stream_denial_length_ > 0 ? StreamVerdict::kDeny : StreamVerdict::kKill;
  }
  if (state.refused != RequestReason::ok) return StreamVerdict::kDeny;
  // After a request that closes the connection the host reads nothing more (RFC 9112 §9.6):
  // these bytes are neither forwarded nor read as a request. (Bytes after it in the piece that
  // completed it made the parser refuse it: http_data_after_close.)
  if (state.request.closed()) return StreamVerdict::kDiscard;
  const RequestReason framing = state.request.feed(bytes, state);
  // A refusal ends the flow at the segment that showed it, before the request can complete
  // at the host.
  if (framing != RequestReason::ok) state.report(framing);
  if (state.failure != RequestReason::ok) state.report(state.failure);
  return state.refused == RequestReason::ok ? StreamVerdict::kContinue : StreamVerdict::kDeny;
}

std::span<const uint8_t> HttpStage::denial(uint32_t flow_id) {
  SLUICE_STAGE(kEnforce);
  if (stream_denial_length_ > 0 && stream_denial_flow_ == flow_id) {
    const std::size_t length = std::exchange(stream_denial_length_, 0);
    return {reinterpret_cast<const uint8_t*>(denial_.data()), length};
  }
  const FlowState* state = state_of(flow_id, false);
  if (state == nullptr || !state->refusal.refused()) return {};
  const std::size_t length = write_denial(state->refusal, denial_);
  return {reinterpret_cast<const uint8_t*>(denial_.data()), length};
}

void HttpStage::on_end(uint32_t flow_id, Direction direction) {
  SLUICE_STAGE(kHttp);
  FlowState* state = state_of(flow_id, false);
  if (state != nullptr && direction == Direction::kToClient) state->response.end_of_stream(*state);
}

void HttpStage::on_close(uint32_t flow_id) {
  SLUICE_STAGE(kHttp);
  observer_.on_flow_close(flow_id);
  FlowState* state = state_of(flow_id, false);
  if (state == nullptr) return;
  free_.push_back(state);
  by_flow_[flow_id] = nullptr;
}

}  // namespace sluice
