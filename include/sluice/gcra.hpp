// Lock-free admission limits shared by all workers: GCRA rate limits (requests per second,
// tokens per minute, …) and in-flight (concurrency) limits, one small atomic word each.
//
// Shape. A limit's parameters (`GcraLimit`, `ConcurrencyLimit`) are immutable values built once
// from config and shared read-only, like the rest of a tier's config; its mutable state
// (`GcraState`, `ConcurrencyState`) is one atomic 64-bit word per (identity, limit), living in
// the identity table. Keeping the two apart lets a config reload swap a tier's parameters
// without touching (or resetting) any identity's state, and keeps the shared, written word alone
// on its cache line (alignas(64)): two hot identities never false-share.
//
// Time. The caller reads its clock once per burst and passes `now_ns` (a monotonic clock in
// nanoseconds, e.g. since boot). Workers read clocks at slightly different moments, so `now_ns`
// values reach a state out of order; every operation stays correct under that (see the bounds
// below), nothing here reads a clock, allocates, throws or takes a lock.
//
// GCRA (ITU-T I.371 virtual scheduling, in the form used by redis-cell and `throttled`).
//   T    = emission interval, the time one unit of the limit takes to refill;
//   tat  = theoretical arrival time: the bucket is full when tat <= now, and holds
//          (now + burst·T − tat) / T units otherwise;
//   a request of `cost` units at `now` computes tat' = max(tat, now) + cost·T and is admitted,
//   storing tat', iff tat' − now <= burst·T.
// The tolerance burst·T equals the ITU's τ = (burst − 1)·T plus the request's own T: a fresh
// (or long idle) bucket admits exactly `burst` units at one instant — `burst` single units, or
// any mix of costs adding up to at most `burst` — and then one more unit every T. A request of
// cost > burst can never be admitted; its decision says so with retry_after_ns = kNever.
//
// Precision. Time inside a state is kept in ticks of 1/4 ns (kTicksPerNs) and T is an integer
// number of ticks, rounded *up* from the exact period/units: T_ticks = ceil(4·period_ns/units).
// All GCRA arithmetic on ticks is then exact, so the only approximation is the effective rate
// 4e9/T_ticks units/s, which is never above the configured rate and below it by less than
// rate²/4e9 units/s (1e4 units/s: < 0.025 units/s, a 2.5 ppm shortfall).
// `effective_interval_ticks()` exposes T so tests can state bounds exactly. now_ns is clamped at
// 2^60 ns (36.5 years of uptime) so that no tick value or sum can overflow.
//
// Bounds (proved in tests/unit/core/gcra_test.cpp, where the multi-threaded property test checks
// them). Over any interleaving of try_acquire calls, by any number of threads, on a fresh state
// with every now_ns in [0, D], in any order:
//   units admitted <= floor(4·D / T_ticks) + burst                          (always), and
//   units admitted == floor(4·D / T_ticks) + burst                          (dense arrivals)
// when requests are unit-cost, burst >= 2, D >= 2·burst·T, every thread starts at now 0 and ends
// at now D, and each thread's successive now values are at most T/2 apart. (That is one better
// than the "at least rate·D + burst − 1"; sparse arrivals can fall short, because GCRA
// discards credit beyond a full bucket, which is the point of a burst limit.)
//
// Memory order. The limiters publish no other data, so relaxed loads and CAS suffice: each state
// is a single atomic word whose modification order is total; admission decisions are
// linearised at the successful CAS (admitted) or at the load the decision was made on (denied).
// The deny path never writes, so a flood of denied requests shares the line read-only.
//
// Measured cost (perf/gcra_bench.cpp, 2.1 GHz VM): ≈ 8 ns per admitted decision (CAS + one
// division for `remaining`), ≈ 3 ns per denied one; the clock read is the caller's.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>

namespace sluice {

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "the limiters must be one lock-free CAS on a 64-bit word");

inline constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();  // retry_after: never
inline constexpr uint64_t kTicksPerNs = 4;
inline constexpr uint64_t kMaxNowNs = uint64_t{1} << 60;  // clamp; ticks stay below 2^62
inline constexpr uint64_t kNsPerSecond = 1'000'000'000;

// One (identity, limit) pair's state. A fresh state (tat 0) is a full bucket.
struct alignas(64) GcraState {
  std::atomic<uint64_t> tat_ticks{0};
};

// What the 429 and the x-ratelimit-* headers need, for the request just decided.
struct GcraDecision {
  bool admitted = false;
  uint64_t retry_after_ns = 0;  // until `cost` units would be admitted; 0 if admitted; kNever
                                // when cost > burst (nothing will ever admit it)
  uint64_t remaining = 0;       // whole units available right after this decision
  uint64_t reset_after_ns = 0;  // until the bucket is full again (0: full now)
};

class GcraLimit {
 public:
  // `units` per `period_ns`, at most `burst` units at once. Empty when a parameter is zero,
  // period_ns exceeds 2^60, the rate exceeds 4e9 units/s (T would be below one tick) or burst·T
  // exceeds 2^61 ticks (about 18 years of refill).
  static std::optional<GcraLimit> make(uint64_t units, uint64_t period_ns, uint64_t burst) {
    if (units == 0 || period_ns == 0 || period_ns > kMaxNowNs || burst == 0) return std::nullopt;
    const uint64_t scaled = period_ns * kTicksPerNs;                   // < 2^63
    if (scaled < units) return std::nullopt;                           // T below one tick
    const uint64_t interval = scaled / units + (scaled % units != 0);  // ceil: never over rate
    if (interval > kMaxToleranceTicks / burst) return std::nullopt;
    return GcraLimit(interval, burst);
  }
  static std::optional<GcraLimit> per_second(uint64_t units, uint64_t burst) {
    return make(units, kNsPerSecond, burst);
  }
  static std::optional<GcraLimit> per_minute(uint64_t units, uint64_t burst) {
    return make(units, 60 * kNsPerSecond, burst);
  }

  uint64_t burst() const { return burst_; }
  uint64_t effective_interval_ticks() const { return interval_ticks_; }

  // Takes `cost` units if they are there. Lock-free: one load, then (admitted only) a CAS that
  // retries only when another worker changed the state between — each retry means someone else
  // made progress. cost 0 is a query: admitted unless the state is in debt (see charge).
  GcraDecision try_acquire(GcraState& state, uint64_t now_ns, uint64_t cost) const {
    const uint64_t now = to_ticks(now_ns);
    uint64_t tat = state.tat_ticks.load(std::memory_order_relaxed);
    if (cost > burst_)
      return GcraDecision{false, kNever, available(tat, now), until_full(tat, now)};
    const uint64_t increment = cost * interval_ticks_;  // <= tolerance_ < 2^61
    for (;;) {
      const uint64_t base = std::max(tat, now);
      const uint64_t new_tat = base + increment;  // base < 2^63 + 2^62: no overflow
      if (new_tat - now > tolerance_ticks_) {
        const uint64_t allow_at = new_tat - tolerance_ticks_;  // > now
        return GcraDecision{false, ceil_ns(allow_at - now), available(tat, now),
                            until_full(tat, now)};
      }
      if (increment == 0 ||
          state.tat_ticks.compare_exchange_weak(tat, new_tat, std::memory_order_relaxed)) {
        return GcraDecision{true, 0, available(new_tat, now), until_full(new_tat, now)};
      }
    }
  }

  // Gives back `cost` units reserved but not used (a token estimate above the reported usage).
  // Clamped so a refund never moves tat below min(tat, now): it can refill the bucket up to full
  // as of `now`, never bank credit beyond that (which GCRA could not hold anyway: max(tat, now)
  // caps every bucket at `burst`) nor wrap below zero. A refund of units admitted long ago,
  // when the bucket has since refilled, therefore does nothing.
  void refund(GcraState& state, uint64_t now_ns, uint64_t cost) const {
    const uint64_t now = to_ticks(now_ns);
    const uint64_t decrement = saturating_mul(cost, interval_ticks_);
    uint64_t tat = state.tat_ticks.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t floor_tat = std::min(tat, now);
      const uint64_t new_tat = tat - floor_tat > decrement ? tat - decrement : floor_tat;
      if (new_tat == tat ||
          state.tat_ticks.compare_exchange_weak(tat, new_tat, std::memory_order_relaxed)) {
        return;
      }
    }
  }

  // Takes `cost` more units unconditionally (usage reported above the reservation). The bucket
  // may go into debt — tat beyond now + burst·T — and then admits nothing, cost-0 queries
  // included, until time has paid the debt back. Debt saturates at kMaxDebtTicks past now.
  void charge(GcraState& state, uint64_t now_ns, uint64_t cost) const {
    const uint64_t now = to_ticks(now_ns);
    const uint64_t increment = std::min(saturating_mul(cost, interval_ticks_), kMaxDebtTicks);
    uint64_t tat = state.tat_ticks.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t base = std::max(tat, now);
      const uint64_t new_tat = std::max(tat, std::min(base + increment, now + kMaxDebtTicks));
      if (new_tat == tat ||
          state.tat_ticks.compare_exchange_weak(tat, new_tat, std::memory_order_relaxed)) {
        return;
      }
    }
  }

 private:
  static constexpr uint64_t kMaxToleranceTicks = uint64_t{1} << 61;
  static constexpr uint64_t kMaxDebtTicks = uint64_t{1} << 62;
  // tat <= now + kMaxDebtTicks < 2^62 + 2^62, plus an increment < 2^61: sums stay below 2^64.

  GcraLimit(uint64_t interval_ticks, uint64_t burst)
      : interval_ticks_(interval_ticks), burst_(burst), tolerance_ticks_(interval_ticks * burst) {}

  static uint64_t to_ticks(uint64_t now_ns) { return std::min(now_ns, kMaxNowNs) * kTicksPerNs; }
  static uint64_t ceil_ns(uint64_t ticks) { return (ticks + kTicksPerNs - 1) / kTicksPerNs; }
  static uint64_t saturating_mul(uint64_t a, uint64_t b) {
    uint64_t product = 0;
    return __builtin_mul_overflow(a, b, &product) ? kNever : product;
  }
  // Whole units in the bucket at `now` for a given tat (0 when in debt).
  uint64_t available(uint64_t tat, uint64_t now) const {
    const uint64_t base = std::max(tat, now);
    const uint64_t limit = now + tolerance_ticks_;
    return base >= limit ? 0 : (limit - base) / interval_ticks_;
  }
  static uint64_t until_full(uint64_t tat, uint64_t now) {
    return tat > now ? ceil_ns(tat - now) : 0;
  }

  uint64_t interval_ticks_;   // T, in ticks
  uint64_t burst_;            // units
  uint64_t tolerance_ticks_;  // burst·T
};

// In-flight requests of one (identity, limit) pair.
struct alignas(64) ConcurrencyState {
  std::atomic<uint64_t> in_flight{0};
};

struct ConcurrencyDecision {
  bool admitted = false;
  uint64_t remaining = 0;  // further requests that could start right after this decision
};

// At most `max` requests in flight. A CAS loop rather than fetch_add-and-roll-back: a rolled-back
// increment is visible to other workers for a moment and can make them deny wrongly.
class ConcurrencyLimit {
 public:
  explicit constexpr ConcurrencyLimit(uint64_t max) : max_(max) {}
  uint64_t max() const { return max_; }

  ConcurrencyDecision try_acquire(ConcurrencyState& state) const {
    uint64_t current = state.in_flight.load(std::memory_order_relaxed);
    for (;;) {
      if (current >= max_) return ConcurrencyDecision{false, 0};  // also after max lowered
      if (state.in_flight.compare_exchange_weak(current, current + 1, std::memory_order_relaxed)) {
        return ConcurrencyDecision{true, max_ - current - 1};
      }
    }
  }

  // Ends one admitted request. Returns false (and changes nothing) on a release without an
  // acquire, which is a caller bug the caller should count.
  bool release(ConcurrencyState& state) const {
    uint64_t current = state.in_flight.load(std::memory_order_relaxed);
    for (;;) {
      if (current == 0) return false;
      if (state.in_flight.compare_exchange_weak(current, current - 1, std::memory_order_relaxed)) {
        return true;
      }
    }
  }

 private:
  uint64_t max_;
};

}  // namespace sluice
