// What one worker's admission decided, by identity, tier, reason and rule: plain counters that
// only that worker writes (a relaxed load and store through atomic_ref, as Counters does: no
// locked read-modify-write on the data path) and the management thread reads and sums on
// demand (GET /metrics, `sluicectl stats|top`).
//
// Identities and tiers are counted by the slot the LimiterStore gave them (policy.hpp), so the
// arrays are fixed-size and stay meaningful across reloads; slots past the arrays share the
// last entry, shown as "(other)". Rule hits are counted per rule index of the database in force,
// in an array sized to it: at a switch to a new database the worker builds the new array off
// the burst (once per reload), carries each rule's count over by rule id (realign) and swaps it
// in under a mutex that only that switch and the reader take.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sluice/policy.hpp"
#include "sluice/request_reason.hpp"
#include "sluice/rules.hpp"

namespace sluice {

class AdmissionMetrics {
 public:
  static constexpr std::size_t kIdentitySlots = 4096;  // the last: "(other)"
  static constexpr std::size_t kTierSlots = 64;        // [0]: no tier; the last: "(other)"

  // Worker side. A request decided (reason ok: admitted), or an admitted request's response cut
  // (a response reason: counted as a denial of the identity, not as another request).
  // `identity` null: no identity (no key, an unknown key denied, admission off).
  void decided(const IdentityPolicy* identity, RequestReason reason) {
    const std::size_t tier = identity != nullptr ? tier_index(identity->tier->metrics_slot) : 0;
    bump(by_tier_[tier][static_cast<std::size_t>(reason)]);
    if (identity == nullptr) return;
    const std::size_t slot = identity_index(identity->escalation_state().metrics_slot);
    if (!is_response_reason(reason)) bump(identity_requests_[slot]);
    if (reason != RequestReason::ok) bump(identity_denials_[slot]);
  }
  // Every rule of a verdict: the blocking one and those listed as matched, each once.
  void rule_hits(const RuleDatabase& db, const RuleVerdict& verdict);
  // The rule database now in force (may be null); the counts carry over by rule id.
  void use_rules(std::shared_ptr<const RuleDatabase> db);

  // Reader side (any thread).
  uint64_t identity_requests(std::size_t slot) const { return load(identity_requests_[slot]); }
  uint64_t identity_denials(std::size_t slot) const { return load(identity_denials_[slot]); }
  uint64_t tier_requests(std::size_t tier, std::size_t reason) const {
    return load(by_tier_[tier][reason]);
  }
  // (rule id, hits) for every rule of the database in force, in database order.
  std::vector<std::pair<std::string, uint64_t>> rule_counts() const;

  static std::size_t identity_index(uint32_t slot) {
    return slot < kIdentitySlots ? slot : kIdentitySlots - 1;
  }
  static std::size_t tier_index(uint32_t slot) { return slot < kTierSlots ? slot : kTierSlots - 1; }

 private:
  static void bump(uint64_t& value) {
    std::atomic_ref<uint64_t> slot(value);
    slot.store(slot.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  static uint64_t load(const uint64_t& value) {
    return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(value)).load(std::memory_order_relaxed);
  }
  void hit(const RuleDatabase& db, uint32_t rule);

  std::array<uint64_t, kIdentitySlots> identity_requests_{};
  std::array<uint64_t, kIdentitySlots> identity_denials_{};
  std::array<std::array<uint64_t, kRequestReasonCount>, kTierSlots> by_tier_{};
  // Written by the worker at a switch (under the mutex); read by it without (it is the only
  // writer) and by readers under the mutex.
  mutable std::mutex rules_mutex_;
  std::shared_ptr<const RuleDatabase> rules_;
  std::vector<uint64_t> rule_hits_;
};

}  // namespace sluice
