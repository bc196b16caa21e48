#include "sluice/admission.hpp"

#include <algorithm>
#include <optional>

#include "sluice/stage_clock.hpp"

namespace sluice {

struct Admission::Retained {
  std::shared_ptr<const AdmissionPolicy> policy;
  uint32_t users = 0;  // requests between head and end that decided under it
};

struct Admission::Request {
  AuditRecord record;
  Retained* policy = nullptr;  // while it is read (head → end)
  const IdentityPolicy* identity = nullptr;
  std::optional<Bucket> bucket;  // once admitted under limits: what to reconcile and release
  uint64_t tokens_reserved = 0;
  bool holds_in_flight = false;
  const TierSelection* rules = nullptr;  // the rules of its tier (null: none), once known
  // One stream, reused across requests on the same database, scans each part in turn: header
  // fields (before the tier is known: every rule of the field's name, judged at the head), the
  // prompt, and after admission the completion.
  RuleStream scan;
  // A streamed answer's other texts (choices' fields and tool calls, blocks, items
  // 1..kMaxTexts-1), each its own scan:
  // begun when first selected, kept with the request object (no allocation once they exist).
  std::array<RuleStream, CompletionExtractor::kMaxTexts - 1> texts;
  uint8_t texts_begun = 0;  // bit t-1: texts[t-1] is scanning this response
  static_assert(CompletionExtractor::kMaxTexts - 1 <= 8, "texts_begun has a bit per text");
  uint8_t text = 0;  // the completion text being fed
  RuleStream& completion_scan() { return text == 0 ? scan : texts[text - 1]; }
  void cancel_texts() {
    for (std::size_t t = 0; t < texts.size(); ++t) {
      if ((texts_begun >> t & 1) != 0) texts[t].cancel();
    }
    texts_begun = 0;
    text = 0;
  }
  enum class Scanning : uint8_t { kNone, kHeader, kPrompt, kCompletion } scanning = Scanning::kNone;
  bool prompt_unscanned = false;  // no prompt rule applies: its text is not looked at
  // The prompt's second view: each content's parts joined with nothing (a chat template may join
  // them so), scanned by its own stream with the same rules; its matches join the prompt's
  // verdict. Begun only by a request whose body has a parts array.
  RuleStream joined_scan;
  bool joined_scanning = false;
  bool reads_completion = false;  // a completion rule applies: the policy is kept until the end
  bool header_scan_failed = false;
  std::vector<uint32_t> header_matches;  // rules matched in header fields, in order
  uint16_t response_status = 0;          // of the response whose completion is scanned
  Request* next = nullptr;               // the flow's admitted requests, oldest first

  // Prompt capture (audit.capture): the slot holding its text so far, or why it has none.
  int32_t capture_slot = AuditCapturePool::kNoSlot;
  bool capture_missed = false;  // no slot was free for it
};

struct Admission::FlowState {
  FlowEndpoints endpoints;
  Request* reading = nullptr;  // head seen, no decision yet
  Request* oldest = nullptr;   // admitted, awaiting a response
  Request* newest = nullptr;
  uint32_t pending = 0;
};

namespace {

constexpr bool every_reason_fits_the_audit_record() {
  for (const RequestReasonInfo& info : kRequestReasons) {
    if (info.name.size() > sizeof(AuditRecord{}.reason.bytes)) return false;
  }
  return true;
}
static_assert(every_reason_fits_the_audit_record(), "a reason name would be cut in the audit");

// The path of a request target: origin-form up to '?', or the path of an absolute-form target.
std::string_view path_of(std::string_view target) {
  if (!target.starts_with('/')) {
    const std::size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) return target;
    const std::size_t slash = target.find('/', scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  return target.substr(0, target.find('?'));
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

// A path the host might read as another one: dot segments, empty segments, encoded '.' or '/'
// (RFC 3986 §5.2.4 removal happens at the host, not here). Such a path is never "within" an
// allowed prefix.
bool ambiguous_path(std::string_view path) {
  for (std::size_t i = 0; i + 2 < path.size(); ++i) {
    if (path[i] == '%') {
      const std::string_view code = path.substr(i, 3);
      if (equals_ignoring_case(code, "%2e") || equals_ignoring_case(code, "%2f") ||
          equals_ignoring_case(code, "%5c"))
        return true;
    }
  }
  std::size_t start = 1;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    const std::string_view segment = path.substr(start, end - start);
    if (segment == "." || segment == ".." || (segment.empty() && end < path.size())) return true;
    start = end + 1;
  }
  return path.find('\\') != std::string_view::npos;
}

// `prefix` allows `path` when path is the prefix or continues it with a new segment.
bool within(std::string_view path, std::string_view prefix) {
  if (!path.starts_with(prefix)) return false;
  return path.size() == prefix.size() || prefix.ends_with('/') || path[prefix.size()] == '/';
}

bool path_allowed(const TierPolicy& tier, std::string_view target) {
  const std::string_view path = path_of(target);
  if (!path.starts_with('/') || ambiguous_path(path)) return false;
  return std::any_of(tier.paths.begin(), tier.paths.end(),
                     [path](const std::string& prefix) { return within(path, prefix); });
}

bool model_allowed(const TierPolicy& tier, std::string_view model, bool has_body) {
  const bool everything = tier.models.size() == 1 && tier.models[0] == "*";
  // A restricted tier needs a model named: a host serving one model answers any request.
  if (model.empty()) return everything || !has_body;
  return std::any_of(tier.models.begin(), tier.models.end(),
                     [model](const std::string& glob) { return glob_match(glob, model); });
}

// The completion size the request asks for: the first of max_completion_tokens, max_tokens,
// max_output_tokens it names.
std::optional<uint64_t> requested_output(const RequestFields& fields) {
  if (fields.max_completion_tokens) return fields.max_completion_tokens;
  if (fields.max_tokens) return fields.max_tokens;
  return fields.max_output_tokens;
}

Refusal limit_refusal(RequestReason reason, LimitKind kind, uint64_t limit,
                      const GcraDecision& decision) {
  Refusal refusal{
      reason, kind, limit, decision.remaining, decision.reset_after_ns, decision.retry_after_ns};
  return refusal;
}

}  // namespace

Admission::Admission(PolicySource& source, AuditSink* audit, uint16_t worker,
                     int64_t wall_offset_ns, std::size_t key_cache_capacity)
    : source_(source),
      audit_(audit),
      capture_(audit != nullptr ? audit->capture_pool() : nullptr),
      worker_(worker),
      wall_offset_ns_(wall_offset_ns),
      key_cache_(key_cache_capacity) {
  refresh();
}

Admission::~Admission() = default;

const AdmissionPolicy& Admission::policy() const {
  return *current_->policy;
}

void Admission::refresh() {
  const uint64_t generation = source_.generation();
  if (generation == seen_generation_ && current_ != nullptr) return;
  seen_generation_ = generation;
  retained_.push_back(std::make_unique<Retained>(Retained{source_.current(), 0}));
  Retained* previous = current_;
  current_ = retained_.back().get();
  const AdmissionPolicy& policy = *current_->policy;
  if (policy.rules()) {
    // Built with the policy, off the data path, to fit the old database too; only a worker
    // whose scratch was taken already (two instances on one worker id: tests) allocates here.
    std::unique_ptr<RuleScratch> scratch = policy.take_scratch(worker_);
    if (!scratch) {
      scratch = std::make_unique<RuleScratch>(*policy.rules());
      if (scratch_ && previous && previous->policy->rules())
        scratch->reserve_for(*previous->policy->rules());
    }
    scratch_ = std::move(scratch);
  }
  // Idle streams let go of an old database, so it can be freed.
  for (Request* idle : requests_free_) {
    if (idle->scan.database() != policy.rules().get()) idle->scan.release();
    if (idle->joined_scan.database() != policy.rules().get()) idle->joined_scan.release();
    for (RuleStream& text : idle->texts) {
      if (text.database() != policy.rules().get()) text.release();
    }
  }
  if (path_scan_.database() != policy.rules().get()) path_scan_.release();
  if (metrics_ != nullptr) metrics_->use_rules(policy.rules());
  if (previous != nullptr) {
    ++stats_.policy_switches;
    if (previous->users == 0) let_go(previous);
  }
}

void Admission::set_metrics(AdmissionMetrics* metrics) {
  metrics_ = metrics;
  if (metrics_ != nullptr && current_ != nullptr) metrics_->use_rules(current_->policy->rules());
}

void Admission::let_go(Retained*& retained) {
  if (retained == nullptr) return;
  if (retained->users > 0) --retained->users;
  if (retained->users == 0 && retained != current_) {
    std::erase_if(retained_, [retained](const auto& r) { return r.get() == retained; });
  }
  retained = nullptr;
}

Admission::FlowState* Admission::flow(uint32_t flow_id) {
  if (flow_id >= by_flow_.size()) by_flow_.resize(flow_id + 1, nullptr);
  FlowState*& slot = by_flow_[flow_id];
  if (slot == nullptr) {
    if (flows_free_.empty()) {
      flows_owned_.push_back(std::make_unique<FlowState>());
      flows_free_.push_back(flows_owned_.back().get());
    }
    slot = flows_free_.back();
    flows_free_.pop_back();
    *slot = FlowState{};
  }
  return slot;
}

Admission::Request* Admission::take_request() {
  if (requests_free_.empty()) {
    requests_owned_.push_back(std::make_unique<Request>());
    requests_free_.push_back(requests_owned_.back().get());
  }
  Request* request = requests_free_.back();
  requests_free_.pop_back();
  // A copy of one fresh record: `= AuditRecord{}` would zero a temporary first and then copy it
  // (perf/README.md, ≈ 20 ns of a 126 ns decision).
  static const AuditRecord kFresh{};
  request->record = kFresh;
  request->policy = nullptr;
  request->identity = nullptr;
  request->bucket.reset();
  request->tokens_reserved = 0;
  request->holds_in_flight = false;
  request->prompt_unscanned = false;
  request->reads_completion = false;
  request->header_scan_failed = false;
  request->header_matches.clear();
  request->response_status = 0;
  request->capture_missed = false;
  request->next = nullptr;
  return request;
}

void Admission::give_back(Request* request) {
  if (request->scanning != Request::Scanning::kNone) {
    request->cancel_texts();
    request->scan.cancel();
    request->scan.set_stop_at_block(true);
    request->scanning = Request::Scanning::kNone;
  }
  if (request->joined_scanning) {
    request->joined_scan.cancel();
    request->joined_scanning = false;
  }
  request->rules = nullptr;
  release_capture(*request);
  let_go(request->policy);
  requests_free_.push_back(request);
}

void Admission::emit(AuditRecord& record) {
  SLUICE_STAGE(kEnforce);
  if (audit_ == nullptr) return;
  record.sequence = sequence_++;
  record.worker = worker_;
  audit_->write(record);
}

void Admission::emit(Request& request) {
  if (audit_ == nullptr) return;
  AuditRecord& record = request.record;
  // Captured text goes with the record when capture selects it: every request (all), or one a
  // rule of any action or mode matched, in any scope (flagged).
  if (capture_ != nullptr && (request.capture_slot >= 0 || request.capture_missed) &&
      (capture_->mode() == AuditCapture::kAll || !record.rules.empty())) {
    if (request.capture_slot >= 0) {
      record.prompt = AuditPrompt::kCaptured;
      record.prompt_slot = static_cast<uint16_t>(request.capture_slot);
      request.capture_slot = AuditCapturePool::kNoSlot;  // the writer returns it
    } else {
      record.prompt = AuditPrompt::kDropped;
      capture_->count_dropped();
    }
  }
  emit(record);
}

void Admission::capture_prompt(Request& request, std::string_view canonical) {
  if (request.capture_slot < 0) {
    if (request.capture_missed) return;
    request.capture_slot = capture_->acquire();
    if (request.capture_slot < 0) {
      request.capture_missed = true;
      return;
    }
  }
  capture_->append(static_cast<uint16_t>(request.capture_slot), canonical);
}

void Admission::release_capture(Request& request) {
  if (request.capture_slot >= 0) capture_->release(static_cast<uint16_t>(request.capture_slot));
  request.capture_slot = AuditCapturePool::kNoSlot;
}

// The request being read gets its record and the policy in force: at its first header field a
// rule looks at, at its head, or at a framing refusal before any.
Admission::Request* Admission::start_reading(FlowState& state) {
  if (state.reading == nullptr) {
    Request* request = state.reading = take_request();
    request->policy = current_;
    ++current_->users;
    request->record.src = state.endpoints.client;
    request->record.dst = state.endpoints.server;
  }
  return state.reading;
}

bool Admission::on_header_field(uint32_t flow_id, std::string_view lower_name) {
  SLUICE_STAGE(kLimit);
  FlowState& state = *flow(flow_id);
  const Retained* policy = state.reading != nullptr ? state.reading->policy : current_;
  const RuleDatabase* db = policy->policy->rules().get();
  if (db == nullptr || !db->applies(db->selection_all(), RuleScope::kHeader, lower_name))
    return false;
  Request& request = *start_reading(state);
  // The tier is not known yet (the key may come in a later field): every rule of the field's
  // name is looked for, and the head judges the matches with the tier's selection.
  request.scan.set_stop_at_block(false);
  request.scan.begin(*db, db->selection_all(), RuleScope::kHeader, lower_name);
  request.scanning = Request::Scanning::kHeader;
  return true;
}

void Admission::on_header_value(uint32_t flow_id, std::string_view bytes) {
  SLUICE_STAGE(kLimit);
  Request* request = flow(flow_id)->reading;
  if (request != nullptr && request->scanning == Request::Scanning::kHeader)
    request->scan.feed(bytes, *scratch_);
}

void Admission::on_header_end(uint32_t flow_id) {
  SLUICE_STAGE(kLimit);
  Request* request = flow(flow_id)->reading;
  if (request == nullptr || request->scanning != Request::Scanning::kHeader) return;
  request->scanning = Request::Scanning::kNone;
  const RuleVerdict verdict = request->scan.end(*scratch_);
  request->scan.set_stop_at_block(true);
  request->header_scan_failed = request->header_scan_failed || verdict.error;
  for (const uint32_t rule : request->scan.matches()) {
    if (std::find(request->header_matches.begin(), request->header_matches.end(), rule) ==
        request->header_matches.end())
      request->header_matches.push_back(rule);
  }
}

bool Admission::on_response_head(uint32_t flow_id, const ResponseHead& head) {
  SLUICE_STAGE(kLimit);
  Request* request = flow(flow_id)->oldest;
  if (request == nullptr || !request->reads_completion) return false;
  request->response_status = head.status;
  request->scan.begin(*request->policy->policy->rules(), *request->rules, RuleScope::kCompletion);
  request->scanning = Request::Scanning::kCompletion;
  request->texts_begun = 0;
  request->text = 0;
  return true;
}

void Admission::on_completion_select(uint32_t flow_id, uint8_t text) {
  SLUICE_STAGE(kLimit);
  Request* request = flow(flow_id)->oldest;
  if (request == nullptr || request->scanning != Request::Scanning::kCompletion ||
      text >= CompletionExtractor::kMaxTexts)
    return;
  request->text = text;
  if (text == 0 || (request->texts_begun >> (text - 1) & 1) != 0) return;
  request->texts_begun |= static_cast<uint8_t>(1u << (text - 1));
  request->texts[text - 1].begin(*request->policy->policy->rules(), *request->rules,
                                 RuleScope::kCompletion);
}

Refusal Admission::on_completion_text(uint32_t flow_id, std::string_view canonical) {
  SLUICE_STAGE(kLimit);
  FlowState& state = *flow(flow_id);
  Request* request = state.oldest;
  if (request == nullptr || request->scanning != Request::Scanning::kCompletion) return {};
  RuleStream& scan = request->completion_scan();
  scan.feed(canonical, *scratch_);
  const RuleVerdict& so_far = scan.verdict();
  if (!so_far.blocked() && !so_far.error) return {};  // flags and logs are recorded at the end
  return on_completion_end(flow_id, true);
}

Refusal Admission::on_completion_segment_end(uint32_t flow_id, std::string_view held) {
  SLUICE_STAGE(kLimit);
  Request* request = flow(flow_id)->oldest;
  if (request == nullptr || request->scanning != Request::Scanning::kCompletion) return {};
  RuleStream& scan = request->completion_scan();
  if (!scan.probe_end(held, *scratch_) && !scan.verdict().error) return {};
  return on_completion_end(flow_id, true);
}

Refusal Admission::on_completion_end(uint32_t flow_id, bool readable) {
  SLUICE_STAGE(kLimit);
  FlowState& state = *flow(flow_id);
  Request* request = state.oldest;
  if (request == nullptr || request->scanning != Request::Scanning::kCompletion) return {};
  request->scanning = Request::Scanning::kNone;
  Refusal refusal{RequestReason::completion_unreadable};
  if (readable) {
    // The texts' verdicts as one: every rule matched in any, the first block found.
    const RuleDatabase& db = *request->policy->policy->rules();
    RuleVerdict verdict = request->scan.end(*scratch_);
    for (std::size_t t = 0; t < request->texts.size(); ++t) {
      if ((request->texts_begun >> t & 1) == 0) continue;
      const RuleVerdict text = request->texts[t].end(*scratch_);
      verdict.error = verdict.error || text.error;
      if (text.blocked() && !verdict.blocked()) verdict.blocking_rule = text.blocking_rule;
      for (uint8_t i = 0; i < std::min<std::size_t>(text.matched_count, RuleVerdict::kMaxMatched);
           ++i) {
        const uint32_t rule = text.matched[i];
        const auto seen = verdict.matched +
                          std::min<std::size_t>(verdict.matched_count, RuleVerdict::kMaxMatched);
        if (std::find(verdict.matched, seen, rule) == seen) add_to_verdict(verdict, db, rule);
      }
    }
    request->texts_begun = 0;
    refusal = apply_rules(*request, db, verdict);
    if (refusal.reason == RequestReason::content_policy_violation)
      refusal.reason = RequestReason::completion_policy_violation;
  } else {
    request->cancel_texts();
    request->scan.cancel();
  }
  if (!refusal.refused()) return {};
  // The response is cut: the request's life ends here, recorded with the host's status.
  ++stats_.responses_cut;
  if (metrics_ != nullptr) metrics_->decided(request->identity, refusal.reason);
  AuditRecord& record = request->record;
  record.verdict = AuditVerdict::deny;
  record.reason.assign(info_of(refusal.reason).name);
  state.oldest = request->next;
  if (state.oldest == nullptr) state.newest = nullptr;
  --state.pending;
  record.status = request->response_status;
  finish(state, *request, nullptr, 0);
  give_back(request);
  return refusal;
}

void Admission::on_flow_open(uint32_t flow_id, const FlowEndpoints& endpoints) {
  SLUICE_STAGE(kLimit);
  flow(flow_id)->endpoints = endpoints;
}

// The request being read is refused: its record is written now, and it is forgotten.
Refusal Admission::deny(FlowState& state, Refusal refusal) {
  Request* request = state.reading;
  state.reading = nullptr;
  if (metrics_ != nullptr)
    metrics_->decided(request != nullptr ? request->identity : nullptr, refusal.reason);
  if (request != nullptr) {
    AuditRecord& record = request->record;
    record.verdict = AuditVerdict::deny;
    record.status = info_of(refusal.reason).status;
    record.reason.assign(info_of(refusal.reason).name);
    emit(*request);
    give_back(request);
  }
  return refusal;
}

Refusal Admission::on_request_head(uint32_t flow_id, const RequestHead& head, uint64_t now_ns) {
  SLUICE_STAGE(kLimit);
  now_ns_ = now_ns;
  FlowState& state = *flow(flow_id);
  // Started at its first header field a rule looks at, or here.
  Request* request = start_reading(state);
  const AdmissionPolicy& policy = *request->policy->policy;

  AuditRecord& record = request->record;
  record.ts_ns = static_cast<int64_t>(now_ns) + wall_offset_ns_;
  record.method.assign(head.method);
  record.set_path(head.target);
  const RuleDatabase* db = policy.rules().get();
  // Once the tier is known: the path is scanned whole, here, and the header fields' matches
  // judged with the tier's selection; the prompt is scanned as its text comes.
  const auto scan_head = [&](const TierSelection* selection) -> Refusal {
    request->rules = selection;
    if (db == nullptr || selection == nullptr) return {};
    if (db->applies(*selection, RuleScope::kPath)) {
      path_scan_.begin(*db, *selection, RuleScope::kPath);
      path_scan_.feed(head.target, *scratch_);
      if (const Refusal by_path = apply_rules(*request, *db, path_scan_.end(*scratch_));
          by_path.refused())
        return by_path;
    }
    if (request->header_matches.empty() && !request->header_scan_failed) return {};
    RuleVerdict verdict;
    verdict.error = request->header_scan_failed;
    for (const uint32_t rule : request->header_matches) {
      if (selection->contains(rule)) add_to_verdict(verdict, *db, rule);
    }
    return apply_rules(*request, *db, verdict);
  };
  if (!policy.enforcing()) {
    const Refusal by_rules = scan_head(policy.untiered_rules());
    return by_rules.refused() ? deny(state, by_rules) : Refusal{};
  }

  switch (head.key_status) {
    case KeyStatus::kAbsent:
      return deny(state, Refusal{RequestReason::missing_api_key});
    case KeyStatus::kConflicting:
      return deny(state, Refusal{RequestReason::conflicting_api_keys});
    case KeyStatus::kPresent:
    case KeyStatus::kDuplicated:
      break;
  }
  const Resolved resolved = [&] {
    SLUICE_STAGE(kIdentity);
    return resolve(head.key, *policy.identities(), key_cache_);
  }();
  ++(resolved.was_cache_hit ? stats_.key_cache_hits : stats_.key_cache_misses);
  record.has_key_id = true;
  record.key_id = resolved.key_id;
  const IdentityPolicy* identity =
      resolved.identity != nullptr ? policy.of(resolved.identity) : policy.anonymous();
  if (identity == nullptr) return deny(state, Refusal{RequestReason::invalid_api_key});
  // Graduated response: an escalation in force puts a demoted view in the identity's place, or
  // suspends it (one relaxed load of the identity's own line).
  const uint64_t escalation =
      identity->escalation_state().escalation.load(std::memory_order_relaxed);
  if (escalation != 0 && now_ns < (escalation >> 8)) {
    const uint64_t level = escalation & 0xff;
    if (level == kSuspendedLevel) {
      record.identity.assign(identity->name);
      record.tier.assign(identity->tier->name);
      Refusal suspended{RequestReason::identity_suspended};
      suspended.retry_after_ns = (escalation >> 8) - now_ns;
      return deny(state, suspended);
    }
    if (level >= 1 && level <= identity->demotions.size())
      identity = identity->demotions[level - 1];
  }
  request->identity = identity;
  record.identity.assign(identity->name);
  record.tier.assign(identity->tier->name);

  if (!path_allowed(*identity->tier, head.target))
    return deny(state, Refusal{RequestReason::endpoint_not_allowed});
  if (const Refusal by_rules = scan_head(identity->tier->rules); by_rules.refused())
    return deny(state, by_rules);
  if (head.framing == BodyFraming::kContentLength) {
    uint64_t largest = 0;
    for (const Bucket& bucket : identity->buckets)
      largest = std::max(largest, bucket.limits.max_body_bytes);
    if (head.content_length > largest)
      return deny(state, Refusal{RequestReason::tier_body_too_large});
  }
  return {};
}

Refusal Admission::on_request_end(uint32_t flow_id, const RequestOutcome& outcome,
                                  uint64_t now_ns) {
  SLUICE_STAGE(kLimit);
  now_ns_ = now_ns;
  FlowState& state = *flow(flow_id);
  Request* request = state.reading;
  if (request == nullptr) {
    // Refused before its head was complete (framing: a bad request line or header, both
    // Content-Length and Transfer-Encoding, …): recorded with what is known.
    if (outcome.reason == RequestReason::ok) return {};  // cannot happen: no end without a head
    request = start_reading(state);
  }
  if (request->record.ts_ns == 0)
    request->record.ts_ns = static_cast<int64_t>(now_ns) + wall_offset_ns_;
  AuditRecord& record = request->record;
  record.request_bytes = outcome.body_bytes;
  record.prompt_tokens_est = outcome.token_estimate;
  std::optional<uint64_t> requested;
  if (outcome.fields != nullptr) {
    record.set_model(outcome.fields->model);
    requested = requested_output(*outcome.fields);
    if (requested)
      record.max_output_tokens = static_cast<int64_t>(std::min<uint64_t>(*requested, INT64_MAX));
  }
  if (outcome.reason != RequestReason::ok) return deny(state, Refusal{outcome.reason});

  if (request->scanning == Request::Scanning::kPrompt || request->joined_scanning) {
    const RuleDatabase& db = *request->policy->policy->rules();
    RuleVerdict verdict;
    std::span<const uint32_t> seen;
    if (request->scanning == Request::Scanning::kPrompt) {
      request->scanning = Request::Scanning::kNone;
      verdict = request->scan.end(*scratch_);
      seen = request->scan.matches();
    }
    if (request->joined_scanning) {
      // A rule matched in either view counts once, as if the prompt were one text.
      request->joined_scanning = false;
      const RuleVerdict joined = request->joined_scan.end(*scratch_);
      verdict.error = verdict.error || joined.error;
      for (const uint32_t rule : request->joined_scan.matches()) {
        if (std::find(seen.begin(), seen.end(), rule) == seen.end())
          add_to_verdict(verdict, db, rule);
      }
    }
    const Refusal by_rules = apply_rules(*request, db, verdict);
    if (by_rules.refused()) return deny(state, by_rules);
  }

  const IdentityPolicy* identity = request->identity;
  if (identity != nullptr) {
    const std::string_view model =
        outcome.fields != nullptr ? std::string_view(outcome.fields->model) : std::string_view();
    if (!model_allowed(*identity->tier, model, outcome.json))
      return deny(state, Refusal{RequestReason::model_not_allowed});
    if (outcome.fields != nullptr && outcome.fields->prompt_token_ids)
      return deny(state, Refusal{RequestReason::prompt_token_ids});
    const Bucket& bucket = identity->bucket_for(model);
    if (outcome.body_bytes > bucket.limits.max_body_bytes)
      return deny(state, Refusal{RequestReason::tier_body_too_large});
    const uint64_t cap = bucket.limits.max_output_tokens;
    if (requested && *requested > cap)
      return deny(state, Refusal{RequestReason::max_output_tokens_over_cap});
    // Only requests that can produce tokens reserve them for the output.
    const uint64_t output = outcome.json ? requested.value_or(cap) : 0;
    const uint64_t cost = outcome.token_estimate + output;
    if (cost > bucket.limits.token_burst)
      return deny(state, Refusal{RequestReason::tokens_over_burst});
    if (state.pending >= kMaxPendingPerFlow)
      return deny(state, Refusal{RequestReason::concurrency_limited, LimitKind::kConcurrent,
                                 kMaxPendingPerFlow, 0, 0, 0});

    LimiterStates& limiter = *bucket.state;
    const GcraDecision by_requests = bucket.requests.try_acquire(limiter.requests, now_ns, 1);
    if (!by_requests.admitted)
      return deny(state, limit_refusal(RequestReason::rate_limited_requests, LimitKind::kRequests,
                                       bucket.limits.burst, by_requests));
    const GcraDecision by_tokens = bucket.tokens.try_acquire(limiter.tokens, now_ns, cost);
    if (!by_tokens.admitted) {
      bucket.requests.refund(limiter.requests, now_ns, 1);
      return deny(state, limit_refusal(RequestReason::rate_limited_tokens, LimitKind::kTokens,
                                       bucket.limits.token_burst, by_tokens));
    }
    if (!bucket.in_flight.try_acquire(limiter.in_flight).admitted) {
      bucket.requests.refund(limiter.requests, now_ns, 1);
      bucket.tokens.refund(limiter.tokens, now_ns, cost);
      return deny(state, Refusal{RequestReason::concurrency_limited, LimitKind::kConcurrent,
                                 bucket.limits.max_concurrent, 0, 0, 0});
    }
    request->bucket.emplace(bucket);
    request->tokens_reserved = cost;
    request->holds_in_flight = true;
    record.tokens_reserved = cost;
  }

  // Admitted: it waits for its response. The policy it was read under stays with it only when a
  // completion rule applies (its database scans the response).
  record.verdict = AuditVerdict::admit;
  record.reason.assign(info_of(RequestReason::ok).name);
  if (metrics_ != nullptr) metrics_->decided(identity, RequestReason::ok);
  const RuleDatabase* db = request->policy->policy->rules().get();
  request->reads_completion = db != nullptr && request->rules != nullptr &&
                              db->applies(*request->rules, RuleScope::kCompletion);
  if (!request->reads_completion) let_go(request->policy);
  // Flagged capture: a request no rule matched, and none will, lets its text go now.
  if (capture_ != nullptr && capture_->mode() == AuditCapture::kFlagged &&
      !request->reads_completion && record.rules.empty())
    release_capture(*request);
  state.reading = nullptr;
  if (state.newest != nullptr) {
    state.newest->next = request;
  } else {
    state.oldest = request;
  }
  state.newest = request;
  ++state.pending;
  return {};
}

// The admitted request's life ends: with its response (reconciled against the reported usage)
// or without one (flow closed: the reservation stands).
void Admission::finish(FlowState&, Request& request, const ResponseOutcome* response,
                       uint64_t now_ns) {
  AuditRecord& record = request.record;
  record.tokens_charged = request.tokens_reserved;
  if (response != nullptr) {
    record.status = response->status;
    const TokenUsage& usage = response->usage;
    if (usage.reported()) {
      record.usage_reported = true;
      record.usage_prompt_tokens = usage.prompt_tokens;
      record.usage_completion_tokens = usage.completion_tokens;
      record.usage_total_tokens = usage.total_tokens;
      record.tokens_charged = usage.used();
    }
  }
  if (request.bucket) {
    const Bucket& bucket = *request.bucket;
    const uint64_t used = record.tokens_charged;
    if (used < request.tokens_reserved) {
      bucket.tokens.refund(bucket.state->tokens, now_ns, request.tokens_reserved - used);
    } else if (used > request.tokens_reserved) {
      bucket.tokens.charge(bucket.state->tokens, now_ns, used - request.tokens_reserved);
    }
    if (request.holds_in_flight && !bucket.in_flight.release(bucket.state->in_flight))
      ++stats_.release_errors;
  }
  emit(request);
}

void Admission::on_prompt_text(uint32_t flow_id, std::string_view canonical) {
  SLUICE_STAGE(kLimit);
  if (flow_id >= by_flow_.size() || by_flow_[flow_id] == nullptr) return;
  Request* request = by_flow_[flow_id]->reading;
  if (request == nullptr) return;
  if (capture_ != nullptr) capture_prompt(*request, canonical);
  if (request->rules == nullptr || request->prompt_unscanned) return;
  if (request->scanning != Request::Scanning::kPrompt) {
    const RuleDatabase& db = *request->policy->policy->rules();
    if (!db.applies(*request->rules, RuleScope::kPrompt)) {
      request->prompt_unscanned = true;  // nothing to look for in this request's prompt
      return;
    }
    request->scan.begin(db, *request->rules, RuleScope::kPrompt);
    request->scanning = Request::Scanning::kPrompt;
  }
  request->scan.feed(canonical, *scratch_);
}

void Admission::on_prompt_joined_text(uint32_t flow_id, std::string_view canonical) {
  SLUICE_STAGE(kLimit);
  if (flow_id >= by_flow_.size() || by_flow_[flow_id] == nullptr) return;
  Request* request = by_flow_[flow_id]->reading;
  if (request == nullptr || request->rules == nullptr || request->prompt_unscanned) return;
  if (!request->joined_scanning) {
    const RuleDatabase& db = *request->policy->policy->rules();
    if (!db.applies(*request->rules, RuleScope::kPrompt)) return;
    request->joined_scan.begin(db, *request->rules, RuleScope::kPrompt);
    request->joined_scanning = true;
  }
  request->joined_scan.feed(canonical, *scratch_);
}

Refusal Admission::apply_rules(Request& request, const RuleDatabase& db,
                               const RuleVerdict& verdict) {
  AuditRecord& record = request.record;
  if (metrics_ != nullptr) metrics_->rule_hits(db, verdict);
  if (verdict.blocked()) record.add_rule(db.rule(static_cast<uint32_t>(verdict.blocking_rule)).id);
  for (uint8_t i = 0; i < std::min<std::size_t>(verdict.matched_count, RuleVerdict::kMaxMatched);
       ++i) {
    if (static_cast<int32_t>(verdict.matched[i]) != verdict.blocking_rule)
      record.add_rule(db.rule(verdict.matched[i]).id);
  }
  if (verdict.flagged) {
    ++stats_.rule_flags;
    if (request.identity != nullptr) count_flag(request);
  }
  if (verdict.error) {
    ++stats_.rule_scan_errors;
    return Refusal{RequestReason::rule_scan_failed};
  }
  if (!verdict.blocked()) return {};
  ++stats_.rule_blocks;
  Refusal refusal{RequestReason::content_policy_violation};
  if (request.policy != nullptr && request.policy->policy->disclose_rule_id()) {
    // Copied: the database may go with the request's policy before the answer is written.
    const std::string& id = db.rule(static_cast<uint32_t>(verdict.blocking_rule)).id;
    const std::size_t length = std::min(id.size(), detail_.size());
    std::copy_n(id.begin(), length, detail_.begin());
    refusal.detail = {detail_.data(), length};
  }
  return refusal;
}

// A flag against the requester: counted, and when its tier escalates and the flag budget is
// spent, the identity goes one step down its chain (or is suspended) — decided by one CAS, so
// concurrent workers escalate it once — and the change is recorded.
void Admission::count_flag(Request& request) {
  const IdentityPolicy& who = *request.identity;
  LimiterStates& state = who.escalation_state();
  state.flagged.fetch_add(1, std::memory_order_relaxed);
  const std::optional<Escalation>& step = who.tier->escalation;
  if (!step || who.identity().name.empty()) return;  // the anonymous tier is everybody's
  const uint64_t now = std::min(now_ns_, kMaxNowNs);
  uint64_t current = state.escalation.load(std::memory_order_relaxed);
  // An escalation that has expired is cleared by the first flag after it, with the flags it
  // left in the budget: the identity's own step starts afresh (one CAS; its winner resets).
  if (current != 0 && now >= (current >> 8) &&
      state.escalation.compare_exchange_strong(current, 0, std::memory_order_relaxed)) {
    state.flag_budget.tat_ticks.store(0, std::memory_order_relaxed);
    current = 0;
  }
  const uint64_t in_force = current != 0 && now < (current >> 8) ? current & 0xff : 0;
  // Read under a step no longer in force (its head came before an escalation or an expiry):
  // counted above, but kept out of the budget of the step in force, which starts afresh.
  if (in_force != who.level) return;
  if (step->flags && step->flags->try_acquire(state.flag_budget, now, 1).admitted) return;
  const uint64_t level = step->suspend ? kSuspendedLevel : who.level + 1u;
  const uint64_t until = std::min(now + step->duration_ns, (uint64_t{1} << 56) - 1);
  if (!state.escalation.compare_exchange_strong(current, until << 8 | level,
                                                std::memory_order_relaxed))
    return;
  state.flag_budget.tat_ticks.store(0, std::memory_order_relaxed);  // the next step counts afresh
  ++stats_.escalations;
  static const AuditRecord kFresh{};
  AuditRecord escalated = kFresh;
  const AuditRecord& trigger = request.record;
  escalated.ts_ns = static_cast<int64_t>(now) + wall_offset_ns_;
  escalated.until_ns = static_cast<int64_t>(until) + wall_offset_ns_;
  escalated.verdict = AuditVerdict::escalate;
  escalated.src = trigger.src;
  escalated.dst = trigger.dst;
  escalated.has_key_id = trigger.has_key_id;
  escalated.key_id = trigger.key_id;
  escalated.identity.assign(who.identity().name);
  if (level != kSuspendedLevel)
    escalated.tier.assign(who.identity().demotions[level - 1]->tier->name);
  escalated.reason.assign(level == kSuspendedLevel ? "suspended" : "demoted");
  escalated.method = trigger.method;
  escalated.path = trigger.path;
  escalated.path_truncated = trigger.path_truncated;
  escalated.rules = trigger.rules;
  emit(escalated);
}

void Admission::on_response_end(uint32_t flow_id, const ResponseOutcome& response,
                                uint64_t now_ns) {
  SLUICE_STAGE(kLimit);
  now_ns_ = now_ns;
  FlowState& state = *flow(flow_id);
  Request* request = state.oldest;
  if (request == nullptr) {
    ++stats_.responses_unmatched;  // an answer to a request that was never admitted whole
    return;
  }
  state.oldest = request->next;
  if (state.oldest == nullptr) state.newest = nullptr;
  --state.pending;
  finish(state, *request, &response, now_ns);
  give_back(request);
}

void Admission::on_flow_close(uint32_t flow_id) {
  SLUICE_STAGE(kLimit);
  if (flow_id >= by_flow_.size() || by_flow_[flow_id] == nullptr) return;
  FlowState& state = *by_flow_[flow_id];
  // No clock here: a refund needs none that matters (an unanswered request keeps its charge).
  for (Request* request = state.oldest; request != nullptr;) {
    Request* next = request->next;
    finish(state, *request, nullptr, 0);
    give_back(request);
    request = next;
  }
  if (state.reading != nullptr) give_back(state.reading);  // cut off before its end: no decision
  flows_free_.push_back(&state);
  by_flow_[flow_id] = nullptr;
}

}  // namespace sluice
