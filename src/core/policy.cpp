#include "sluice/policy.hpp"

#include <span>

namespace sluice {

bool glob_match(std::string_view pattern, std::string_view text) {
  // Iterative matching with one backtrack point: linear for patterns with a single `*`,
  // O(pattern × text) at worst; patterns come from the config, texts are ≤ 256 bytes.
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

const Bucket& IdentityPolicy::bucket_for(std::string_view model) const {
  for (std::size_t i = 0; i < tier->model_patterns.size(); ++i) {
    if (glob_match(tier->model_patterns[i], model)) return buckets[i + 1];
  }
  return buckets[0];
}

LimiterStates* LimiterStore::state_for(std::string_view identity, std::string_view bucket_set) {
  std::string key(identity);
  key += '\0';
  key += bucket_set;
  const std::lock_guard lock(mutex_);
  auto [it, inserted] = states_.try_emplace(std::move(key));
  if (inserted) {
    it->second = std::make_unique<LimiterStates>();
    if (bucket_set.empty()) {
      it->second->metrics_slot = static_cast<uint32_t>(identity_names_.size());
      // '\x01' + tier: the state unknown keys of that tier share (policy_builder.cpp).
      identity_names_.push_back(identity.starts_with('\x01')
                                    ? "(anonymous:" + std::string(identity.substr(1)) + ")"
                                    : std::string(identity));
    }
  }
  return it->second.get();
}

uint32_t LimiterStore::tier_slot(std::string_view tier) {
  const std::lock_guard lock(mutex_);
  for (std::size_t i = 1; i < tier_names_.size(); ++i)
    if (tier_names_[i] == tier) return static_cast<uint32_t>(i);
  tier_names_.emplace_back(tier);
  return static_cast<uint32_t>(tier_names_.size() - 1);
}

std::vector<std::string> LimiterStore::identity_names() const {
  const std::lock_guard lock(mutex_);
  return identity_names_;
}

std::vector<std::string> LimiterStore::tier_names() const {
  const std::lock_guard lock(mutex_);
  return tier_names_;
}

std::size_t LimiterStore::size() const {
  const std::lock_guard lock(mutex_);
  return states_.size();
}

const IdentityPolicy* AdmissionPolicy::of(const Identity* identity) const {
  if (identity == nullptr || identities_ == nullptr) return nullptr;
  const std::span<const Identity> all = identities_->identities();
  if (identity < all.data() || identity >= all.data() + all.size()) return nullptr;
  return &by_identity_[static_cast<std::size_t>(identity - all.data())];
}

std::string AdmissionPolicy::summary() const {
  const std::string rules =
      rules_ ? ", " + std::to_string(rules_->rule_count()) + " rules (" + rules_->source() + ")"
             : "";
  if (!enforcing_) return "no tiers, admission off: every request admitted" + rules;
  const std::size_t identities = identities_ ? identities_->identities().size() : 0;
  const std::size_t keys = identities_ ? identities_->key_count() : 0;
  std::string escalation;
  for (const TierPolicy& tier : tiers_) {
    if (!tier.escalation) continue;
    escalation += (escalation.empty() ? ", escalation: " : ", ") + tier.name + " → " +
                  (tier.escalation->suspend ? std::string("suspended") : tier.escalation->to);
  }
  return std::to_string(identities) + " identities (" + std::to_string(keys) + " keys), " +
         std::to_string(tiers_.size()) + " tiers, unknown keys " +
         (anonymous_ ? "in tier " + anonymous_->tier->name : std::string("denied")) + rules +
         escalation;
}

std::unique_ptr<RuleScratch> AdmissionPolicy::take_scratch(uint32_t worker) const {
  const std::lock_guard lock(scratch_mutex_);
  if (worker >= scratch_.size()) return nullptr;
  return std::move(scratch_[worker]);
}

PolicySource::PolicySource(std::shared_ptr<const AdmissionPolicy> initial)
    : current_(std::move(initial)) {}

void PolicySource::publish(std::shared_ptr<const AdmissionPolicy> next) {
  const std::lock_guard lock(mutex_);
  current_ = std::move(next);
  generation_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<const AdmissionPolicy> PolicySource::current() const {
  const std::lock_guard lock(mutex_);
  return current_;
}

}  // namespace sluice
