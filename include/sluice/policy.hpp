// What admission enforces, as one immutable value: the identity table, each identity's tier and
// the limits that apply to it, built and validated off the data path (control/policy.cpp) and
// published to the workers through a PolicySource. A reload builds a new AdmissionPolicy and
// publishes it; a bad file never gets that far.
//
// Buckets. Every identity has one bucket set for the tier's base limits and one per entry of the
// tier's `model_limits`: a request for a model that matches entry i is counted against set i + 1
// only, so a tight limit on a frontier model does not eat into the budget for small models, and
// vice versa. The anonymous tier (`unknown_key: <tier>`) has one bucket set (per model entry)
// shared by every unknown key.
//
// Effective limits of a set: the tier's limits, then the identity's `limits` overrides, then for
// a model entry each limit it sets, taken as the smaller of the two (a model entry tightens; an
// identity allowed more than its tier still meets the model's cap).
//
// State. The limiters' mutable words live in a LimiterStore that outlives every AdmissionPolicy and
// keeps one state per (identity name, bucket set), so a reload keeps every bucket's level and the
// requests in flight, and an in-flight request can reconcile or release against the state it
// took from whatever policy is current by then.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/config.hpp"
#include "sluice/gcra.hpp"
#include "sluice/identity.hpp"
#include "sluice/rules.hpp"

namespace sluice {

// The mutable words of one bucket set.
struct LimiterStates {
  GcraState requests;
  GcraState tokens;
  ConcurrencyState in_flight;
  alignas(64) std::atomic<uint64_t> flagged{0};  // requests an enforce-mode flag rule matched
  // Graduated response, in an identity's base set only: the flags leaky bucket, and the
  // escalation in force, packed (until_ns << 8 | level): level k ≥ 1 is the k-th demotion of
  // the identity's chain, kSuspendedLevel a suspension; 0 or a past until_ns: none.
  GcraState flag_budget;
  std::atomic<uint64_t> escalation{0};
  // The identity's index in the per-worker metrics counters (AdmissionMetrics), given by the
  // store to base bucket sets only; fixed for the life of the process, so it outlives reloads.
  uint32_t metrics_slot = UINT32_MAX;
};
inline constexpr uint64_t kSuspendedLevel = 255;

// The parameters of one bucket set and where its state lives. Values: an in-flight request keeps
// a copy, so it can release and reconcile after a reload replaced the policy.
struct Bucket {
  TierLimits limits;  // effective values (for the x-ratelimit-* headers and the audit trail)
  GcraLimit requests;
  GcraLimit tokens;
  ConcurrencyLimit in_flight;
  LimiterStates* state;
};

// What flags do to an identity of a tier (config.hpp, EscalationConfig).
struct Escalation {
  std::optional<GcraLimit> flags;  // the leaky bucket; none when one flag is enough
  bool suspend = false;
  std::string to;  // the tier a demotion goes to
  uint64_t duration_ns = 0;
};

struct TierPolicy {
  std::string name;
  std::vector<std::string> models;          // globs
  std::vector<std::string> paths;           // prefixes
  std::vector<std::string> model_patterns;  // of model_limits, in order; set i + 1 each
  const TierSelection* rules = nullptr;     // the rules of this tier (null: no rule database)
  std::optional<Escalation> escalation;
  uint32_t metrics_slot = 0;  // LimiterStore::tier_slot(name); 0: none
};

struct IdentityPolicy {
  std::string name;  // empty for the anonymous tier
  const TierPolicy* tier;
  std::vector<Bucket> buckets;  // [0] base, [i + 1] tier model_limits[i]
  // Graduated response. `demotions[k - 1]` is the identity demoted k times: a view with the
  // lower tier's rules and limits (bucket sets of its own), whose `root` points back here and
  // whose `level` is k. The escalation state lives in the root's base set.
  const IdentityPolicy* root = nullptr;  // null: this is the identity itself
  uint8_t level = 0;
  std::vector<const IdentityPolicy*> demotions;

  // The bucket set for a request for `model` (the base set when no entry matches).
  const Bucket& bucket_for(std::string_view model) const;
  const IdentityPolicy& identity() const { return root != nullptr ? *root : *this; }
  LimiterStates& escalation_state() const { return *identity().buckets[0].state; }
};

// Owns every LimiterStates ever handed out; entries are never freed while the process runs, so
// their addresses are stable (memory: 192 bytes per identity and model entry ever loaded).
// Used by the control thread only (a mutex makes concurrent builds safe anyway).
class LimiterStore {
 public:
  LimiterStates* state_for(std::string_view identity, std::string_view bucket_set);
  std::size_t size() const;

  // Names for the metrics: each identity (base bucket set) gets the next slot when first seen,
  // shown as its name ("(anonymous:TIER)" for the tier unknown keys share); each tier name a
  // slot from 1. Slots are never reused, so per-worker counters indexed by them stay meaningful
  // across reloads.
  uint32_t tier_slot(std::string_view tier);
  std::vector<std::string> identity_names() const;  // by slot
  std::vector<std::string> tier_names() const;      // by slot; [0] is "" (no tier)

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<LimiterStates>, std::less<>> states_;
  std::vector<std::string> identity_names_;
  std::vector<std::string> tier_names_{""};
};

class AdmissionPolicy {
 public:
  // enforcing: tiers are configured. Otherwise every request is admitted (and still audited).
  bool enforcing() const { return enforcing_; }
  const IdentityTable* identities() const { return identities_.get(); }
  // The policy of a table identity (pointer from identities()), or null.
  const IdentityPolicy* of(const Identity* identity) const;
  // The anonymous tier's policy, or null when unknown keys are denied.
  const IdentityPolicy* anonymous() const { return anonymous_.get(); }
  const std::deque<TierPolicy>& tiers() const { return tiers_; }
  // The identities' own policies, in the order of identities() (demoted views hang off them).
  const std::vector<IdentityPolicy>& identity_policies() const { return by_identity_; }
  // The compiled rules (null: none), the selection for requests without a tier (admission off),
  // and whether a content-policy 403 names its rule to the client.
  const std::shared_ptr<const RuleDatabase>& rules() const { return rules_; }
  const TierSelection* untiered_rules() const { return untiered_rules_; }
  bool disclose_rule_id() const { return disclose_rule_id_; }
  // Worker `worker`'s Hyperscan scratch, allocated when the policy was built (off the data path)
  // to fit this policy's database and the one it replaces; handed out once, at the switch.
  std::unique_ptr<RuleScratch> take_scratch(uint32_t worker) const;
  // A description for logs: "3 identities (5 keys), 2 tiers, unknown keys denied".
  std::string summary() const;

 private:
  friend std::shared_ptr<const AdmissionPolicy> build_policy(const Config&,
                                                             std::shared_ptr<const IdentityTable>,
                                                             LimiterStore&,
                                                             std::shared_ptr<const RuleDatabase>,
                                                             uint32_t, const AdmissionPolicy*);
  bool enforcing_ = false;
  std::shared_ptr<const IdentityTable> identities_;
  std::deque<TierPolicy> tiers_;             // a deque: stable addresses for IdentityPolicy::tier
  std::vector<IdentityPolicy> by_identity_;  // index of the identity in identities()
  std::deque<IdentityPolicy> demoted_;       // the chains' views (stable addresses)
  std::unique_ptr<IdentityPolicy> anonymous_;
  std::shared_ptr<const RuleDatabase> rules_;
  const TierSelection* untiered_rules_ = nullptr;
  bool disclose_rule_id_ = false;
  mutable std::mutex scratch_mutex_;
  mutable std::vector<std::unique_ptr<RuleScratch>> scratch_;  // by worker
};

// Builds the policy of `config` with `identities` (null when the config names no identities
// file). Throws ConfigError naming the identities file, line and key for an identity whose
// tier is not in the config, and the tier (or identity) whose limits cannot be represented.
// `rules` (may be null) is the compiled rule database; a Hyperscan scratch is allocated for
// each of `workers` workers, fitting `rules` and the database of `previous` (the policy this one
// replaces, for a reload; may be null).
std::shared_ptr<const AdmissionPolicy> build_policy(
    const Config& config, std::shared_ptr<const IdentityTable> identities, LimiterStore& store,
    std::shared_ptr<const RuleDatabase> rules = nullptr, uint32_t workers = 1,
    const AdmissionPolicy* previous = nullptr);

// Loads the identities file and the rule database the config names (if any) and builds the
// policy; a ConfigError names the file and what is wrong with it.
std::shared_ptr<const AdmissionPolicy> load_policy(const Config& config, LimiterStore& store,
                                                   uint32_t workers = 1,
                                                   const AdmissionPolicy* previous = nullptr);

// How a new policy reaches the workers. The control thread publishes; each worker checks the
// generation once per burst (one relaxed load) and takes the new policy only when it changed
// (a mutex, on reload only). Workers hold their copy through a shared_ptr, so an old policy
// lives until the last worker let go of it, and nothing waits for anybody.
class PolicySource {
 public:
  explicit PolicySource(std::shared_ptr<const AdmissionPolicy> initial);
  void publish(std::shared_ptr<const AdmissionPolicy> next);
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::shared_ptr<const AdmissionPolicy> current() const;

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const AdmissionPolicy> current_;
  std::atomic<uint64_t> generation_{1};
};

}  // namespace sluice
