// Admission as the HTTP stage drives it: identity, tier checks, the three limits with their
// refusals, reservation and reconciliation, in-flight release, reload, and the audit records.
#include "sluice/admission.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sluice/identities.hpp"

namespace sluice {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;

class Records final : public AuditSink {
 public:
  void write(const AuditRecord& record) override { records.push_back(record); }
  std::vector<AuditRecord> records;
};

const char* const kConfig = R"(
identities: identities.yaml
tiers:
  free:     { requests_per_second: 1, burst: 2, tokens_per_minute: 600, token_burst: 300,
              max_concurrent: 2, max_body_bytes: 1000, max_output_tokens: 100,
              models: ["small-*"] }
  verified: { requests_per_second: 100, burst: 100, tokens_per_minute: 60000, token_burst: 20000,
              max_concurrent: 3, max_body_bytes: 100000, max_output_tokens: 1000,
              model_limits: { "frontier-*": { requests_per_second: 1, burst: 1 } } }
unknown_key: deny
)";

std::string identities_yaml() {
  return "identities:\n"
         "  - {name: hobby, tier: free, keys: [\"" +
         sha256_of("k-free").to_string() +
         "\"]}\n"
         "  - {name: acme, tier: verified, keys: [\"" +
         sha256_of("k-acme").to_string() + "\", \"" + sha256_of("k-acme-2").to_string() +
         "\"]}\n"
         "  - {name: vip, tier: free, keys: [\"" +
         sha256_of("k-vip").to_string() + "\"], limits: {burst: 5, requests_per_second: 5}}\n";
}

std::shared_ptr<const AdmissionPolicy> make_policy(
    LimiterStore& store, const std::string& config_text = kConfig,
    const std::string& identities = identities_yaml()) {
  const Config config = load_config_text(config_text, "/etc/sluice/sluice.yaml");
  return build_policy(config, load_identities_text(identities, "identities.yaml"), store);
}

struct Request {
  std::string method = "POST";
  std::string target = "/v1/chat/completions";
  std::string key = "k-acme";
  KeyStatus key_status = KeyStatus::kPresent;
  std::string model = "small-1";
  std::optional<uint64_t> max_tokens = 10;
  uint64_t body_bytes = 200;
  uint64_t tokens = 20;
  std::optional<uint64_t> content_length;
};

class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionTest() : source_(make_policy(store_)), admission_(source_, &records_, 3, 0) {}

  // One request on its own flow: head, then (unless refused there) end. Returns the refusal.
  Refusal decide(uint32_t flow, const Request& r, uint64_t now) {
    FlowEndpoints endpoints;
    endpoints.client = {{198, 18, 0, 1}, static_cast<uint16_t>(40000 + flow), 4};
    endpoints.server = {{198, 19, 0, 1}, 8000, 4};
    admission_.on_flow_open(flow, endpoints);
    RequestHead head;
    head.method = r.method;
    head.target = r.target;
    head.key = r.key;
    head.key_status = r.key.empty() ? KeyStatus::kAbsent : r.key_status;
    head.json = true;
    if (r.content_length) {
      head.framing = BodyFraming::kContentLength;
      head.content_length = *r.content_length;
    }
    const Refusal at_head = admission_.on_request_head(flow, head, now);
    if (at_head.refused()) return at_head;
    fields_ = RequestFields{};
    fields_.model = r.model;
    fields_.max_tokens = r.max_tokens;
    RequestOutcome outcome;
    outcome.json = true;
    outcome.fields = &fields_;
    outcome.body_bytes = r.body_bytes;
    outcome.token_estimate = r.tokens;
    return admission_.on_request_end(flow, outcome, now);
  }

  void respond(uint32_t flow, uint64_t now, TokenUsage usage = {}) {
    admission_.on_response_end(flow, ResponseOutcome{200, usage}, now);
  }

  LimiterStore store_;
  PolicySource source_;
  Records records_;
  Admission admission_;
  RequestFields fields_;
};

TEST_F(AdmissionTest, AdmitsAKnownKeyAndRecordsTheRequestWhenItsResponseEnds) {
  EXPECT_FALSE(decide(1, Request{}, kSecond).refused());
  EXPECT_TRUE(records_.records.empty()) << "an admitted request is recorded at its end";
  respond(1, kSecond + 1000, TokenUsage{15, 7, 22});
  ASSERT_EQ(records_.records.size(), 1u);
  const AuditRecord& r = records_.records[0];
  EXPECT_EQ(r.verdict, AuditVerdict::admit);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.reason.view(), "ok");
  EXPECT_EQ(r.identity.view(), "acme");
  EXPECT_EQ(r.tier.view(), "verified");
  EXPECT_EQ(r.model.view(), "small-1");
  EXPECT_EQ(r.path.view(), "/v1/chat/completions");
  EXPECT_EQ(r.worker, 3);
  EXPECT_EQ(r.src.port, 40001);
  EXPECT_EQ(r.dst.port, 8000);
  EXPECT_TRUE(r.has_key_id);
  EXPECT_EQ(format_key_id(r.key_id), key_id("k-acme"));
  EXPECT_EQ(r.ts_ns, static_cast<int64_t>(kSecond)) << "the decision's time";
  EXPECT_EQ(r.tokens_reserved, 30u) << "20 estimated + 10 requested";
  EXPECT_TRUE(r.usage_reported);
  EXPECT_EQ(r.tokens_charged, 22u);
  EXPECT_EQ(r.max_output_tokens, 10);
}

TEST_F(AdmissionTest, AnswersAMissingUnknownOrConflictingKeyWith401AtTheHead) {
  Request missing;
  missing.key = "";
  EXPECT_EQ(decide(1, missing, kSecond).reason, RequestReason::missing_api_key);
  Request unknown;
  unknown.key = "k-nobody";
  EXPECT_EQ(decide(2, unknown, kSecond).reason, RequestReason::invalid_api_key);
  Request conflicting;
  conflicting.key_status = KeyStatus::kConflicting;
  EXPECT_EQ(decide(3, conflicting, kSecond).reason, RequestReason::conflicting_api_keys);
  ASSERT_EQ(records_.records.size(), 3u);
  EXPECT_EQ(records_.records[0].status, 401);
  EXPECT_FALSE(records_.records[0].has_key_id);
  EXPECT_TRUE(records_.records[1].has_key_id) << "an unknown key is still told apart";
  EXPECT_TRUE(records_.records[1].identity.empty());
  EXPECT_EQ(records_.records[1].reason.view(), "invalid_api_key");
  EXPECT_EQ(admission_.stats().key_cache_misses, 1u) << "conflicting keys are never hashed";
  EXPECT_EQ(decide(4, unknown, kSecond).reason, RequestReason::invalid_api_key);
  EXPECT_EQ(admission_.stats().key_cache_hits, 1u) << "an unknown key is cached too";
}

TEST_F(AdmissionTest, KeepsEndpointsAndModelsToTheTier) {
  Request fine_tuning;
  fine_tuning.target = "/v1/fine_tuning/jobs";
  EXPECT_EQ(decide(1, fine_tuning, kSecond).reason, RequestReason::endpoint_not_allowed);
  for (const char* sneaky : {"/v1/chat/completions/../../admin", "/v1/chat/completionsX",
                             "/v1/models/%2e%2e/admin", "/v1//chat/completions"}) {
    Request r;
    r.target = sneaky;
    EXPECT_EQ(decide(2, r, kSecond).reason, RequestReason::endpoint_not_allowed) << sneaky;
  }
  Request query;
  query.target = "/v1/chat/completions?api-version=2";
  EXPECT_FALSE(decide(3, query, kSecond).refused());
  Request big;
  big.key = "k-free";
  big.model = "big-1";
  EXPECT_EQ(decide(4, big, kSecond).reason, RequestReason::model_not_allowed);
  big.model = "";
  EXPECT_EQ(decide(5, big, kSecond).reason, RequestReason::model_not_allowed)
      << "a restricted tier needs the model named";
}

TEST_F(AdmissionTest, EnforcesTheTiersBodyAndCompletionCaps) {
  Request r;
  r.key = "k-free";
  r.content_length = 1001;
  EXPECT_EQ(decide(1, r, kSecond).reason, RequestReason::tier_body_too_large);
  r.content_length.reset();
  r.body_bytes = 1001;  // chunked: known at the end
  EXPECT_EQ(decide(2, r, kSecond).reason, RequestReason::tier_body_too_large);
  r.body_bytes = 100;
  r.max_tokens = 101;
  EXPECT_EQ(decide(3, r, kSecond).reason, RequestReason::max_output_tokens_over_cap);
  r.max_tokens = 100;
  r.tokens = 201;  // 201 + 100 > token_burst 300: never admissible
  EXPECT_EQ(decide(4, r, kSecond).reason, RequestReason::tokens_over_burst);
}

TEST_F(AdmissionTest, DeniesOverTheRequestRateWithTheBucketsState) {
  Request r;
  r.key = "k-free";
  EXPECT_FALSE(decide(1, r, kSecond).refused());
  respond(1, kSecond);
  EXPECT_FALSE(decide(2, r, kSecond).refused());
  respond(2, kSecond);
  const Refusal third = decide(3, r, kSecond);
  EXPECT_EQ(third.reason, RequestReason::rate_limited_requests);
  EXPECT_EQ(third.bucket, LimitKind::kRequests);
  EXPECT_EQ(third.limit, 2u);
  EXPECT_EQ(third.remaining, 0u);
  EXPECT_EQ(third.retry_after_ns, kSecond) << "one unit refills in 1 s";
  EXPECT_EQ(third.reset_after_ns, 2 * kSecond) << "the bucket is full again in 2 s";
  EXPECT_FALSE(decide(4, r, 2 * kSecond).refused()) << "admitted once the unit is back";
  ASSERT_EQ(records_.records.size(), 3u);
  EXPECT_EQ(records_.records[2].status, 429);
  EXPECT_EQ(records_.records[2].reason.view(), "rate_limited_requests");
}

TEST_F(AdmissionTest, PerIdentityOverridesApply) {
  Request r;
  r.key = "k-vip";  // free tier, burst 5
  for (uint32_t flow = 1; flow <= 5; ++flow) {
    EXPECT_FALSE(decide(flow, r, kSecond).refused()) << flow;
    respond(flow, kSecond);
  }
  EXPECT_EQ(decide(6, r, kSecond).reason, RequestReason::rate_limited_requests);
}

TEST_F(AdmissionTest, ReservesTokensAndGivesBackWhatTheResponseDidNotUse) {
  Request r;
  r.key = "k-free";  // token_burst 300
  r.tokens = 50;
  r.max_tokens = 100;  // reserves 150
  EXPECT_FALSE(decide(1, r, kSecond).refused());
  EXPECT_FALSE(decide(2, r, kSecond).refused());
  // 300 reserved; no room for a third even if the request rate allowed it.
  r.key = "k-free";
  Refusal third = decide(3, r, 3 * kSecond);  // request bucket refilled; tokens: +30 only
  EXPECT_EQ(third.reason, RequestReason::rate_limited_tokens);
  EXPECT_EQ(third.bucket, LimitKind::kTokens);
  EXPECT_EQ(third.limit, 300u);
  // Both responses report 60 tokens used: 2 × 90 come back, and the third fits.
  respond(1, 3 * kSecond, TokenUsage{50, 10, 60});
  respond(2, 3 * kSecond, TokenUsage{50, 10, 60});
  EXPECT_FALSE(decide(4, r, 3 * kSecond).refused());
  ASSERT_GE(records_.records.size(), 3u);
  EXPECT_EQ(records_.records[1].tokens_reserved, 150u);
  EXPECT_EQ(records_.records[1].tokens_charged, 60u);
}

TEST_F(AdmissionTest, ChargesUsageAboveTheReservationIntoDebt) {
  Request r;
  r.key = "k-free";
  r.tokens = 10;
  r.max_tokens = 10;
  EXPECT_FALSE(decide(1, r, kSecond).refused());
  respond(1, kSecond, TokenUsage{TokenUsage::kAbsent, TokenUsage::kAbsent, 5000});
  const Refusal next = decide(2, r, 3 * kSecond);
  EXPECT_EQ(next.reason, RequestReason::rate_limited_tokens) << "the bucket is in debt";
  EXPECT_EQ(next.remaining, 0u);
}

TEST_F(AdmissionTest, CountsRequestsInFlightUntilTheResponseOrTheFlowEnds) {
  Request r;  // verified: max_concurrent 3
  for (uint32_t flow = 1; flow <= 3; ++flow) EXPECT_FALSE(decide(flow, r, kSecond).refused());
  const Refusal fourth = decide(4, r, kSecond);
  EXPECT_EQ(fourth.reason, RequestReason::concurrency_limited);
  EXPECT_EQ(fourth.bucket, LimitKind::kConcurrent);
  EXPECT_EQ(fourth.limit, 3u);
  respond(1, kSecond);
  EXPECT_FALSE(decide(5, r, kSecond).refused()) << "a response ended";
  admission_.on_flow_close(2);  // no response: the client went away
  EXPECT_FALSE(decide(6, r, kSecond).refused()) << "a flow closed";
  EXPECT_EQ(decide(7, r, kSecond).reason, RequestReason::concurrency_limited);
  // The closed flow's request is recorded with status 0 and its reservation kept.
  const auto closed = std::find_if(records_.records.begin(), records_.records.end(),
                                   [](const AuditRecord& a) { return a.src.port == 40002; });
  ASSERT_NE(closed, records_.records.end());
  EXPECT_EQ(closed->status, 0);
  EXPECT_EQ(closed->tokens_charged, closed->tokens_reserved);
  EXPECT_EQ(admission_.stats().release_errors, 0u);
}

TEST_F(AdmissionTest, CountsAModelWithItsOwnLimitsInItsOwnBuckets) {
  Request frontier;
  frontier.model = "frontier-x";  // verified, frontier-*: 1 per second, burst 1
  EXPECT_FALSE(decide(1, frontier, kSecond).refused());
  respond(1, kSecond);
  const Refusal second = decide(2, frontier, kSecond);
  EXPECT_EQ(second.reason, RequestReason::rate_limited_requests);
  EXPECT_EQ(second.limit, 1u);
  Request small;  // the base bucket is untouched
  EXPECT_FALSE(decide(3, small, kSecond).refused());
}

TEST_F(AdmissionTest, AReloadKeepsBucketLevelsAndInFlightRequests) {
  Request r;
  r.key = "k-free";
  EXPECT_FALSE(decide(1, r, kSecond).refused());
  EXPECT_FALSE(decide(2, r, kSecond).refused());
  // A new identities file: hobby keeps its name (and its buckets), a new key appears.
  source_.publish(make_policy(store_, kConfig,
                              identities_yaml() + "  - {name: newbie, tier: free, keys: [\"" +
                                  sha256_of("k-new").to_string() + "\"]}\n"));
  admission_.refresh();
  EXPECT_EQ(admission_.stats().policy_switches, 1u);
  EXPECT_EQ(decide(3, r, kSecond).reason, RequestReason::rate_limited_requests)
      << "the bucket's level carried over";
  Request newbie;
  newbie.key = "k-new";
  EXPECT_FALSE(decide(4, newbie, kSecond).refused()) << "the new key is known at once";
  respond(1, kSecond);  // admitted under the old policy, released under the new
  respond(2, kSecond);
  EXPECT_EQ(admission_.stats().release_errors, 0u);
}

TEST_F(AdmissionTest, ARequestReadAcrossAReloadIsDecidedUnderThePolicyItStartedWith) {
  FlowEndpoints endpoints;
  admission_.on_flow_open(1, endpoints);
  RequestHead head;
  head.method = "POST";
  head.target = "/v1/chat/completions";
  head.key = "k-acme";
  head.key_status = KeyStatus::kPresent;
  head.json = true;
  ASSERT_FALSE(admission_.on_request_head(1, head, kSecond).refused());
  // acme disappears from the identities while its request's body is still arriving.
  source_.publish(make_policy(store_, kConfig,
                              "identities:\n  - {name: hobby, tier: free, keys: [\"" +
                                  sha256_of("k-free").to_string() + "\"]}\n"));
  admission_.refresh();
  RequestOutcome outcome;
  outcome.json = true;
  RequestFields fields;
  fields.model = "small-1";
  outcome.fields = &fields;
  EXPECT_FALSE(admission_.on_request_end(1, outcome, kSecond).refused());
  respond(1, kSecond);
  ASSERT_EQ(records_.records.size(), 1u);
  EXPECT_EQ(records_.records[0].identity.view(), "acme");
  Request r;
  EXPECT_EQ(decide(2, r, kSecond).reason, RequestReason::invalid_api_key)
      << "a new request uses the new policy";
}

TEST_F(AdmissionTest, ReportsParserRefusalsInTheAuditTrail) {
  FlowEndpoints endpoints;
  admission_.on_flow_open(1, endpoints);
  RequestHead head;
  head.method = "POST";
  head.target = "/v1/chat/completions";
  head.key = "k-acme";
  head.key_status = KeyStatus::kPresent;
  ASSERT_FALSE(admission_.on_request_head(1, head, kSecond).refused());
  RequestOutcome outcome;
  outcome.reason = RequestReason::json_duplicate_key;
  admission_.on_request_end(1, outcome, kSecond);
  ASSERT_EQ(records_.records.size(), 1u);
  EXPECT_EQ(records_.records[0].verdict, AuditVerdict::deny);
  EXPECT_EQ(records_.records[0].status, 400);
  EXPECT_EQ(records_.records[0].reason.view(), "json_duplicate_key");
  EXPECT_EQ(records_.records[0].identity.view(), "acme");
}

TEST_F(AdmissionTest, RecordsARefusalBeforeTheHeadWasComplete) {
  admission_.on_flow_open(9,
                          FlowEndpoints{{{198, 18, 0, 9}, 40009, 4}, {{198, 19, 0, 1}, 8000, 4}});
  RequestOutcome outcome;
  outcome.reason = RequestReason::http_content_length_and_transfer_encoding;
  admission_.on_request_end(9, outcome, 5 * kSecond);
  ASSERT_EQ(records_.records.size(), 1u);
  const AuditRecord& r = records_.records[0];
  EXPECT_EQ(r.verdict, AuditVerdict::deny);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.reason.view(), "http_content_length_and_transfer_encoding");
  EXPECT_EQ(r.src.port, 40009);
  EXPECT_EQ(r.ts_ns, static_cast<int64_t>(5 * kSecond));
  EXPECT_TRUE(r.method.empty());
}

TEST(AdmissionPolicy, AnIdentityWithATierTheConfigLacksIsNamedWithItsLocation) {
  LimiterStore store;
  try {
    make_policy(
        store, kConfig,
        "identities:\n  - {name: x, tier: gold, keys: [\"" + sha256_of("k").to_string() + "\"]}\n");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("identities.yaml:2:21: identities[0].tier: identity 'x' has tier "
                           "'gold', which /etc/sluice/sluice.yaml does not define"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("free, verified"), std::string::npos) << message;
  }
}

TEST(AdmissionPolicy, WithoutTiersEverythingIsAdmittedAndStillAudited) {
  LimiterStore store;
  PolicySource source(build_policy(load_config_text("", "x.yaml"), nullptr, store));
  Records records;
  Admission admission(source, &records, 0, 0);
  admission.on_flow_open(1, {});
  RequestHead head;
  head.method = "GET";
  head.target = "/anything";
  EXPECT_FALSE(admission.on_request_head(1, head, kSecond).refused());
  RequestOutcome outcome;
  EXPECT_FALSE(admission.on_request_end(1, outcome, kSecond).refused());
  admission.on_response_end(1, ResponseOutcome{404, {}}, kSecond);
  ASSERT_EQ(records.records.size(), 1u);
  EXPECT_EQ(records.records[0].status, 404);
  EXPECT_TRUE(records.records[0].tier.empty());
}

TEST(AdmissionPolicy, UnknownKeysCanShareAnAnonymousTier) {
  LimiterStore store;
  const std::string config = std::string(kConfig).replace(
      std::string(kConfig).find("unknown_key: deny"), 17, "unknown_key: free");
  PolicySource source(make_policy(store, config));
  Records records;
  Admission admission(source, &records, 0, 0);
  RequestFields fields;
  fields.model = "small-1";
  RequestOutcome outcome;
  outcome.json = true;
  outcome.fields = &fields;
  std::vector<bool> admitted;
  for (uint32_t flow = 1; flow <= 3; ++flow) {
    admission.on_flow_open(flow, {});
    RequestHead head;
    head.method = "POST";
    head.target = "/v1/chat/completions";
    const std::string key = "random-" + std::to_string(flow);  // head.key views it
    head.key = key;
    head.key_status = KeyStatus::kPresent;
    const bool ok = !admission.on_request_head(flow, head, kSecond).refused() &&
                    !admission.on_request_end(flow, outcome, kSecond).refused();
    admitted.push_back(ok);
    admission.on_response_end(flow, {}, kSecond);
  }
  EXPECT_EQ(admitted, (std::vector<bool>{true, true, false})) << "one shared burst of 2";
  EXPECT_EQ(records.records.back().tier.view(), "free");
  EXPECT_TRUE(records.records.back().identity.empty());
}

}  // namespace
}  // namespace sluice
