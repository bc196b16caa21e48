// Admission: who is asking, may they ask this, and is there budget left — the per-worker
// RequestObserver that turns a request's head and body into admit or deny, and writes one audit
// record per decision.
//
//   header fields → a field some `header:<name>` rule names is scanned as it streams, with
//                   every rule of that name (the tier is not known yet)
//   request head  → key (Authorization: Bearer | x-api-key | api-key) → verified-key cache →
//                   identity → tier (or the anonymous tier, or 401); path within the tier's
//                   `paths` (else 403); the tier's path rules, then its header rules' matches
//                   (403 content_policy_violation); Content-Length within every bucket's
//                   max_body_bytes (413)
//   prompt text   → the tier's prompt rules, one stream per request as the canonical text comes
//   request end   → the prompt rules' verdict (403); model within the tier's `models` (403);
//                   token-id prompts (400); body and
//                   requested completion within the model's bucket (413, 400); then the limits,
//                   each a lock-free GCRA or in-flight counter shared by every worker:
//                     requests (1 unit) → tokens (estimated prompt tokens + requested output,
//                     the tier's cap when the request names none) → in flight (1)
//                   a later limit's denial gives back what the earlier ones took (429)
//   response      → with a completion rule in the tier: the completion text scanned as it
//                   streams; a block cuts the response (the stage ends it), recorded as a denial
//                   with reason completion_policy_violation and the host's status — so is an
//                   answer that cannot be read: its coding, framing or JSON, or more texts
//                   interleaved than are read at once (completion_unreadable: fail closed;
//                   docs/normalisation.md, "Responses")
//   response end  → tokens reconciled with the reported `usage` (refund or charge), in-flight
//                   slot released, the admitted request's audit record written (as an access log
//                   is: with the host's status and the usage)
//   flow close    → in-flight slots of requests without a response released, their records
//                   written with status 0 and the reservation kept as the charge
//
// Denials are recorded when they are decided. Nothing here blocks or takes a lock, and a known,
// cached key allocates nothing (per-flow state and request slots come from free lists that grow
// to the peak); a key-cache miss does, inside OpenSSL 3's EVP (three mallocs for SHA-256 and the
// key id, perf/README.md). The only shared writes are the limiters' CAS words and, per flagged
// request, the identity's flag counter.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "sluice/admission_metrics.hpp"
#include "sluice/audit.hpp"
#include "sluice/http_stage.hpp"
#include "sluice/identity.hpp"
#include "sluice/policy.hpp"

namespace sluice {

// Where records go: a worker's ring in the live data path (a full ring is counted there), the
// writer itself in a replay (which must not lose any).
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  virtual void write(const AuditRecord& record) = 0;
  // Where captured prompt text goes (the worker ring's pool); null: capture is off.
  virtual AuditCapturePool* capture_pool() { return nullptr; }
};

struct AdmissionStats {
  uint64_t rule_blocks = 0;       // requests refused by an enforce-mode block rule
  uint64_t rule_flags = 0;        // requests an enforce-mode flag rule matched
  uint64_t rule_scan_errors = 0;  // scans Hyperscan refused (answered 503, fail closed)
  uint64_t responses_cut = 0;     // by a completion rule, or unreadable for one (fail closed)
  uint64_t escalations = 0;       // identities this worker demoted or suspended
  uint64_t key_cache_hits = 0;
  uint64_t key_cache_misses = 0;  // SHA-256 computed
  uint64_t responses_unmatched = 0;
  uint64_t release_errors = 0;  // should stay 0
  uint64_t policy_switches = 0;
};

class Admission final : public RequestObserver {
 public:
  // `audit` may be null (no records). `wall_offset_ns` turns the data path's `now` into the
  // Unix time records carry (0 when `now` already is, as in a replay).
  Admission(PolicySource& source, AuditSink* audit, uint16_t worker, int64_t wall_offset_ns,
            std::size_t key_cache_capacity = 4096);
  ~Admission() override;
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // Once per burst: takes a newly published policy (one relaxed load when there is none).
  void refresh();

  void on_flow_open(uint32_t flow_id, const FlowEndpoints& endpoints) override;
  bool on_header_field(uint32_t flow_id, std::string_view lower_name) override;
  void on_header_value(uint32_t flow_id, std::string_view bytes) override;
  void on_header_end(uint32_t flow_id) override;
  Refusal on_request_head(uint32_t flow_id, const RequestHead& head, uint64_t now_ns) override;
  void on_prompt_text(uint32_t flow_id, std::string_view canonical) override;
  void on_prompt_joined_text(uint32_t flow_id, std::string_view canonical) override;
  Refusal on_request_end(uint32_t flow_id, const RequestOutcome& outcome, uint64_t now_ns) override;
  bool on_response_head(uint32_t flow_id, const ResponseHead& head) override;
  Refusal on_completion_text(uint32_t flow_id, std::string_view canonical) override;
  void on_completion_select(uint32_t flow_id, uint8_t text) override;
  Refusal on_completion_segment_end(uint32_t flow_id, std::string_view held) override;
  Refusal on_completion_end(uint32_t flow_id, bool readable) override;
  void on_response_end(uint32_t flow_id, const ResponseOutcome& response, uint64_t now_ns) override;
  void on_flow_close(uint32_t flow_id) override;

  const AdmissionStats& stats() const { return stats_; }
  // Decisions by identity, tier, reason and rule (may be null: not counted). Set once, before
  // the first packet.
  void set_metrics(AdmissionMetrics* metrics);
  const AdmissionPolicy& policy() const;

  // At most this many admitted requests of one flow may await their responses (pipelining);
  // one more is answered 429 concurrency_limited.
  static constexpr uint32_t kMaxPendingPerFlow = 16;

  struct Request;
  struct Retained;
  struct FlowState;

 private:
  FlowState* flow(uint32_t flow_id);
  Request* start_reading(FlowState& state);
  Request* take_request();
  void give_back(Request* request);
  Refusal deny(FlowState& flow, Refusal refusal);
  void emit(AuditRecord& record);
  void emit(Request& request);  // with its captured prompt, when capture selects it
  void capture_prompt(Request& request, std::string_view canonical);
  void release_capture(Request& request);
  void finish(FlowState& flow, Request& request, const ResponseOutcome* response, uint64_t now_ns);
  void let_go(Retained*& retained);
  // Rule results into the record; the refusal when a rule blocks (or the scan failed).
  Refusal apply_rules(Request& request, const RuleDatabase& db, const RuleVerdict& verdict);
  void count_flag(Request& request);

  PolicySource& source_;
  AuditSink* audit_;
  AuditCapturePool* capture_;  // audit_'s, when prompt capture is on
  uint16_t worker_;
  int64_t wall_offset_ns_;
  KeyCache key_cache_;
  std::unique_ptr<RuleScratch> scratch_;  // this worker's, from the policy in force
  RuleStream path_scan_;                  // path scope: scanned whole at the head
  uint64_t seen_generation_ = 0;
  std::vector<std::unique_ptr<Retained>> retained_;  // policies still referenced; back() current
  Retained* current_ = nullptr;
  std::vector<FlowState*> by_flow_;
  std::vector<std::unique_ptr<FlowState>> flows_owned_;
  std::vector<FlowState*> flows_free_;
  std::vector<std::unique_ptr<Request>> requests_owned_;
  std::vector<Request*> requests_free_;
  uint64_t sequence_ = 0;
  AdmissionStats stats_;
  AdmissionMetrics* metrics_ = nullptr;
  std::array<char, 128> detail_{};  // the disclosed rule id of the last refusal
  uint64_t now_ns_ = 0;             // of the latest event that carried a time
};

}  // namespace sluice
