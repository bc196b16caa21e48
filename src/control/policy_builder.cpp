#include "sluice/policy.hpp"

#include <algorithm>
#include <optional>

#include "sluice/identities.hpp"

namespace sluice {
namespace {

constexpr uint64_t kNsPerMinute = 60 * kNsPerSecond;

// The tier's limits with an identity's overrides.
TierLimits with_overrides(TierLimits limits, const IdentityLimits& o) {
  limits.requests_per_second = o.requests_per_second.value_or(limits.requests_per_second);
  limits.burst = o.burst.value_or(limits.burst);
  limits.tokens_per_minute = o.tokens_per_minute.value_or(limits.tokens_per_minute);
  limits.token_burst = o.token_burst.value_or(limits.token_burst);
  limits.max_concurrent = o.max_concurrent.value_or(limits.max_concurrent);
  limits.max_body_bytes = o.max_body_bytes.value_or(limits.max_body_bytes);
  limits.max_output_tokens = o.max_output_tokens.value_or(limits.max_output_tokens);
  return limits;
}

// Each limit a model entry sets caps the value (TierLimits fields in declaration order).
TierLimits capped_by(TierLimits limits, const ModelLimits& entry) {
  uint64_t* fields[] = {&limits.requests_per_second, &limits.burst,
                        &limits.tokens_per_minute,   &limits.token_burst,
                        &limits.max_concurrent,      &limits.max_body_bytes,
                        &limits.max_output_tokens};
  const uint64_t caps[] = {entry.limits.requests_per_second, entry.limits.burst,
                           entry.limits.tokens_per_minute,   entry.limits.token_burst,
                           entry.limits.max_concurrent,      entry.limits.max_body_bytes,
                           entry.limits.max_output_tokens};
  for (std::size_t i = 0; i < std::size(fields); ++i) {
    if (entry.set & (1u << i)) *fields[i] = std::min(*fields[i], caps[i]);
  }
  return limits;
}

Bucket make_bucket(const TierLimits& limits, LimiterStates* state, const std::string& owner) {
  const std::optional<GcraLimit> requests =
      GcraLimit::per_second(limits.requests_per_second, limits.burst);
  const std::optional<GcraLimit> tokens =
      GcraLimit::make(limits.tokens_per_minute, kNsPerMinute, limits.token_burst);
  if (!requests)
    throw ConfigError(owner + ": requests_per_second " +
                      std::to_string(limits.requests_per_second) + " with burst " +
                      std::to_string(limits.burst) +
                      " cannot be represented (rate at most 4e9/s, burst at most ~18 years "
                      "of refill)");
  if (!tokens)
    throw ConfigError(owner + ": tokens_per_minute " + std::to_string(limits.tokens_per_minute) +
                      " with token_burst " + std::to_string(limits.token_burst) +
                      " cannot be represented (token_burst at most ~18 years of refill)");
  return Bucket{limits, *requests, *tokens, ConcurrencyLimit(limits.max_concurrent), state};
}

// `set_prefix` names the bucket sets in the store: "" for an identity's own, a prefix of its own
// for a demoted view (so the views' sets are apart, and only the identity's base set is one the
// store counts as an identity).
IdentityPolicy make_identity_policy(const std::string& name, const std::string& state_name,
                                    const TierConfig& tier, const TierPolicy* tier_policy,
                                    const IdentityLimits& overrides, LimiterStore& store,
                                    const std::string& owner, const std::string& set_prefix = "") {
  IdentityPolicy policy{name, tier_policy, {}, nullptr, 0, {}};
  const TierLimits base = with_overrides(tier.limits, overrides);
  policy.buckets.push_back(make_bucket(base, store.state_for(state_name, set_prefix), owner));
  for (const ModelLimits& entry : tier.model_limits) {
    policy.buckets.push_back(make_bucket(capped_by(base, entry),
                                         store.state_for(state_name, set_prefix + entry.pattern),
                                         owner + " (model_limits '" + entry.pattern + "')"));
  }
  return policy;
}

}  // namespace

std::shared_ptr<const AdmissionPolicy> build_policy(
    const Config& config, std::shared_ptr<const IdentityTable> identities, LimiterStore& store,
    std::shared_ptr<const RuleDatabase> rules, uint32_t workers, const AdmissionPolicy* previous) {
  auto policy = std::make_shared<AdmissionPolicy>();
  policy->enforcing_ = !config.tiers.empty();
  if (!identities) identities = std::make_shared<const IdentityTable>(std::vector<Identity>{});
  policy->identities_ = identities;
  policy->disclose_rule_id_ = config.disclose_rule_id;
  if (rules) {
    policy->rules_ = rules;
    policy->untiered_rules_ = &rules->selection_untiered();
    // Off the data path: each worker's scratch fits this database and the running one, so the
    // worker can switch at a burst boundary while requests begun on the old one finish.
    for (uint32_t w = 0; w < workers; ++w) {
      auto scratch = std::make_unique<RuleScratch>(*rules);
      if (previous != nullptr && previous->rules()) scratch->reserve_for(*previous->rules());
      policy->scratch_.push_back(std::move(scratch));
    }
  }
  if (!policy->enforcing_) return policy;

  for (const TierConfig& tier : config.tiers) {
    TierPolicy t{
        tier.name,   tier.models, tier.paths, {}, rules ? &rules->selection(tier.name) : nullptr,
        std::nullopt};
    for (const ModelLimits& entry : tier.model_limits) t.model_patterns.push_back(entry.pattern);
    if (const EscalationConfig* e = config.escalation_of(tier.name)) {
      Escalation escalation;
      escalation.suspend = e->suspend;
      escalation.to = e->to;
      escalation.duration_ns = e->duration_ns;
      if (e->flags > 1) {
        // flags - 1 absorbed, refilled at that many per window: the flags-th in a row escalates.
        escalation.flags = GcraLimit::make(e->flags - 1, e->window_ns, e->flags - 1);
        if (!escalation.flags)
          throw ConfigError(config.source + ": escalation." + tier.name + ": " +
                            std::to_string(e->flags) + " flags per window cannot be represented");
      }
      t.escalation = escalation;
    }
    t.metrics_slot = store.tier_slot(tier.name);
    policy->tiers_.push_back(std::move(t));
  }
  const auto tier_policy = [&](std::string_view name) -> const TierPolicy* {
    for (const TierPolicy& t : policy->tiers_)
      if (t.name == name) return &t;
    return nullptr;
  };

  if (identities) {
    for (const Identity& identity : identities->identities()) {
      const TierConfig* tier = config.tier(identity.tier);
      if (tier == nullptr) {
        std::string known;
        for (const TierConfig& t : config.tiers) known += (known.empty() ? "" : ", ") + t.name;
        throw ConfigError(identity.tier_at + ": identity '" + identity.name + "' has tier '" +
                          identity.tier + "', which " + config.source +
                          " does not define (its tiers: " + known + ")");
      }
      policy->by_identity_.push_back(make_identity_policy(
          identity.name, identity.name, *tier, tier_policy(tier->name), identity.limits, store,
          identity.tier_at + ": identity '" + identity.name + "'"));
    }
  }
  // The demotion chains, once every identity has its place (views point back to it).
  if (identities) {
    for (std::size_t i = 0; i < policy->by_identity_.size(); ++i) {
      IdentityPolicy& identity = policy->by_identity_[i];
      const Identity& source = identities->identities()[i];
      std::string at = identity.tier->name;
      while (const EscalationConfig* step = config.escalation_of(at)) {
        if (step->suspend || identity.demotions.size() + 1 >= kSuspendedLevel) break;
        at = step->to;
        // '\x02': no model pattern starts with it, so these sets are nobody else's.
        IdentityPolicy view = make_identity_policy(
            identity.name, identity.name, *config.tier(at), tier_policy(at), {}, store,
            source.tier_at + ": identity '" + identity.name + "' demoted to " + at,
            "\x02" + at + "\x02");
        view.root = &identity;
        view.level = static_cast<uint8_t>(identity.demotions.size() + 1);
        policy->demoted_.push_back(std::move(view));
        identity.demotions.push_back(&policy->demoted_.back());
      }
    }
  }
  if (config.unknown_key != "deny") {
    const TierConfig* tier = config.tier(config.unknown_key);
    if (tier == nullptr) throw ConfigError("unknown_key: no tier '" + config.unknown_key + "'");
    // '\x01' cannot appear in an identity name, so the anonymous state is nobody else's.
    policy->anonymous_ = std::make_unique<IdentityPolicy>(
        make_identity_policy("", "\x01" + tier->name, *tier, tier_policy(tier->name), {}, store,
                             config.source + ": tiers." + tier->name));
  }
  // Tiers nobody uses still get their limits checked, so a bad tier fails now, not at the
  // reload that first assigns it.
  for (const TierConfig& tier : config.tiers) {
    LimiterStates scratch;
    make_bucket(tier.limits, &scratch, config.source + ": tiers." + tier.name);
    for (const ModelLimits& entry : tier.model_limits)
      make_bucket(capped_by(tier.limits, entry), &scratch,
                  config.source + ": tiers." + tier.name + ".model_limits." + entry.pattern);
  }
  return policy;
}

std::shared_ptr<const AdmissionPolicy> load_policy(const Config& config, LimiterStore& store,
                                                   uint32_t workers,
                                                   const AdmissionPolicy* previous) {
  std::shared_ptr<const IdentityTable> identities;
  if (!config.identities_path.empty()) identities = load_identities_file(config.identities_path);
  std::shared_ptr<const RuleDatabase> rules;
  if (!config.rules_path.empty()) rules = RuleDatabase::load(config.rules_path);
  return build_policy(config, std::move(identities), store, std::move(rules), workers, previous);
}

}  // namespace sluice
