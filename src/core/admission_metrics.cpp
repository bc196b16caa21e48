#include "sluice/admission_metrics.hpp"

namespace sluice {

void AdmissionMetrics::hit(const RuleDatabase& db, uint32_t rule) {
  if (&db == rules_.get()) {
    if (rule < rule_hits_.size()) bump(rule_hits_[rule]);
    return;
  }
  // A request still finishing under the database a reload replaced: counted under its id in
  // the new one (a rule the new database lacks is not counted any more).
  if (!rules_ || rule >= db.rule_count()) return;
  if (const std::optional<uint32_t> index = rules_->find(db.rule(rule).id))
    bump(rule_hits_[*index]);
}

void AdmissionMetrics::rule_hits(const RuleDatabase& db, const RuleVerdict& verdict) {
  if (verdict.blocked()) hit(db, static_cast<uint32_t>(verdict.blocking_rule));
  const std::size_t listed = std::min<std::size_t>(verdict.matched_count, RuleVerdict::kMaxMatched);
  for (std::size_t i = 0; i < listed; ++i) {
    if (static_cast<int32_t>(verdict.matched[i]) != verdict.blocking_rule)
      hit(db, verdict.matched[i]);
  }
}

void AdmissionMetrics::use_rules(std::shared_ptr<const RuleDatabase> db) {
  if (db == rules_) return;
  std::vector<uint64_t> hits(db ? db->rule_count() : 0, 0);
  if (db && rules_) {
    for (uint32_t i = 0; i < rule_hits_.size(); ++i) {
      if (rule_hits_[i] == 0) continue;
      if (const std::optional<uint32_t> index = db->find(rules_->rule(i).id))
        hits[*index] = rule_hits_[i];
    }
  }
  std::shared_ptr<const RuleDatabase> old;
  {
    const std::lock_guard lock(rules_mutex_);
    old = std::exchange(rules_, std::move(db));
    rule_hits_.swap(hits);
  }
  // `old` and the old counts go here, outside the lock.
}

std::vector<std::pair<std::string, uint64_t>> AdmissionMetrics::rule_counts() const {
  const std::lock_guard lock(rules_mutex_);
  std::vector<std::pair<std::string, uint64_t>> counts;
  if (!rules_) return counts;
  counts.reserve(rule_hits_.size());
  for (uint32_t i = 0; i < rule_hits_.size(); ++i)
    counts.emplace_back(rules_->rule(i).id, load(rule_hits_[i]));
  return counts;
}

}  // namespace sluice
