// Specification of the lock-free limiters in sluice/gcra.hpp: single-thread behaviour, table
// driven, and the multi-threaded property from the issue, on simulated time (nothing sleeps).
// Also built under ThreadSanitizer (see tests/unit/core/gcra.meson).
#include "sluice/gcra.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace sluice {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;

GcraLimit limit_per_second(uint64_t rate, uint64_t burst) {
  auto limit = GcraLimit::per_second(rate, burst);
  EXPECT_TRUE(limit.has_value());
  return *limit;
}

// ---------------------------------------------------------------------------------------------
// Parameters

TEST(GcraLimit, RejectsZeroAndOutOfRangeParameters) {
  EXPECT_FALSE(GcraLimit::make(0, kSecond, 1));
  EXPECT_FALSE(GcraLimit::make(1, 0, 1));
  EXPECT_FALSE(GcraLimit::make(1, kSecond, 0));
  EXPECT_FALSE(GcraLimit::per_second(uint64_t{5} * kSecond, 1));  // T below one tick
  EXPECT_FALSE(GcraLimit::make(1, uint64_t{1} << 60, 4));         // burst·T beyond 2^61 ticks
  EXPECT_FALSE(GcraLimit::make(1, (uint64_t{1} << 60) + 1, 1));   // period beyond 2^60 ns
  EXPECT_FALSE(GcraLimit::make(kNever, kNever, kNever));
  EXPECT_TRUE(GcraLimit::per_second(4 * kSecond, 1));
  EXPECT_TRUE(GcraLimit::per_minute(2'000'000, 100'000));
}

TEST(GcraLimit, IntervalIsRoundedUpToWholeTicksSoTheRateIsNeverExceeded) {
  EXPECT_EQ(limit_per_second(1000, 1).effective_interval_ticks(), 4'000'000u);   // exact
  EXPECT_EQ(limit_per_second(3, 1).effective_interval_ticks(), 1'333'333'334u);  // 4e9/3 up
  EXPECT_EQ(GcraLimit::per_minute(7, 1)->effective_interval_ticks(), 34'285'714'286u);
}

// ---------------------------------------------------------------------------------------------
// Single thread, table driven

struct BurstCase {
  uint64_t rate;
  uint64_t burst;
};

class FreshBucket : public testing::TestWithParam<BurstCase> {};

TEST_P(FreshBucket, AdmitsExactlyBurstUnitsAtOnceThenDenies) {
  const auto [rate, burst] = GetParam();
  const GcraLimit limit = limit_per_second(rate, burst);
  GcraState state;
  const uint64_t now = 5 * kSecond;
  for (uint64_t i = 0; i < burst; ++i) {
    const GcraDecision d = limit.try_acquire(state, now, 1);
    ASSERT_TRUE(d.admitted) << "unit " << i;
    EXPECT_EQ(d.retry_after_ns, 0u);
    EXPECT_EQ(d.remaining, burst - i - 1);
  }
  const GcraDecision denied = limit.try_acquire(state, now, 1);
  EXPECT_FALSE(denied.admitted);
  EXPECT_EQ(denied.remaining, 0u);
  EXPECT_GT(denied.retry_after_ns, 0u);
  EXPECT_NE(denied.retry_after_ns, kNever);
}

TEST_P(FreshBucket, AdmitsBurstAsOneRequestButNeverBurstPlusOne) {
  const auto [rate, burst] = GetParam();
  const GcraLimit limit = limit_per_second(rate, burst);
  GcraState state;
  const GcraDecision too_big = limit.try_acquire(state, 0, burst + 1);
  EXPECT_FALSE(too_big.admitted);
  EXPECT_EQ(too_big.retry_after_ns, kNever);
  EXPECT_EQ(too_big.remaining, burst);  // a never-admissible request takes nothing
  EXPECT_EQ(too_big.reset_after_ns, 0u);
  // Even much later, after the bucket refilled: still never.
  EXPECT_EQ(limit.try_acquire(state, 1000 * kSecond, burst + 1).retry_after_ns, kNever);
  const GcraDecision whole = limit.try_acquire(state, 1000 * kSecond, burst);
  EXPECT_TRUE(whole.admitted);
  EXPECT_EQ(whole.remaining, 0u);
}

TEST_P(FreshBucket, RetryAfterIsExactToTheNanosecond) {
  const auto [rate, burst] = GetParam();
  const GcraLimit limit = limit_per_second(rate, burst);
  for (uint64_t cost : {uint64_t{1}, burst, (burst + 1) / 2}) {
    GcraState state;
    const uint64_t start = 123'456'789;
    ASSERT_TRUE(limit.try_acquire(state, start, burst).admitted);  // empty the bucket
    const GcraDecision denied = limit.try_acquire(state, start + 17, cost);
    ASSERT_FALSE(denied.admitted);
    const uint64_t at = start + 17 + denied.retry_after_ns;
    EXPECT_FALSE(limit.try_acquire(state, at - 1, cost).admitted) << "cost " << cost;
    EXPECT_TRUE(limit.try_acquire(state, at, cost).admitted) << "cost " << cost;
  }
}

TEST_P(FreshBucket, ResetAfterIsWhenTheBucketIsFullAgain) {
  const auto [rate, burst] = GetParam();
  const GcraLimit limit = limit_per_second(rate, burst);
  GcraState state;
  const GcraDecision d = limit.try_acquire(state, 0, 1);
  ASSERT_TRUE(d.admitted);
  // One unit used: full again after exactly one interval (rounded up to the next ns).
  const uint64_t interval = limit.effective_interval_ticks();
  EXPECT_EQ(d.reset_after_ns, (interval + kTicksPerNs - 1) / kTicksPerNs);
  EXPECT_EQ(limit.try_acquire(state, d.reset_after_ns - 1, 0).remaining, burst - 1);
  EXPECT_EQ(limit.try_acquire(state, d.reset_after_ns, 0).remaining, burst);
  EXPECT_EQ(limit.try_acquire(state, d.reset_after_ns, 0).reset_after_ns, 0u);
}

TEST_P(FreshBucket, RefillsOneUnitPerInterval) {
  const auto [rate, burst] = GetParam();
  const GcraLimit limit = limit_per_second(rate, burst);
  GcraState state;
  ASSERT_TRUE(limit.try_acquire(state, 0, burst).admitted);
  const uint64_t interval = limit.effective_interval_ticks();
  for (uint64_t k = 1; k <= burst + 2; ++k) {
    const uint64_t ticks = k * interval;
    const uint64_t ns = (ticks + kTicksPerNs - 1) / kTicksPerNs;  // first ns with k units back
    EXPECT_EQ(limit.try_acquire(state, ns - 1, 0).remaining, std::min(k - 1, burst)) << k;
    EXPECT_EQ(limit.try_acquire(state, ns, 0).remaining, std::min(k, burst)) << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Rates, FreshBucket,
                         testing::Values(BurstCase{1, 1}, BurstCase{1, 5}, BurstCase{3, 2},
                                         BurstCase{10, 10}, BurstCase{1000, 1}, BurstCase{1000, 50},
                                         BurstCase{33'333, 1000}, BurstCase{7, 3}),
                         [](const auto& param_info) {
                           return "rate" + std::to_string(param_info.param.rate) + "_burst" +
                                  std::to_string(param_info.param.burst);
                         });

TEST(GcraLimit, SustainedRateAtOneRequestPerIntervalIsAlwaysAdmitted) {
  const GcraLimit limit = limit_per_second(100, 1);  // T = 10 ms exactly
  GcraState state;
  for (uint64_t k = 0; k < 1000; ++k) {
    EXPECT_TRUE(limit.try_acquire(state, k * 10'000'000, 1).admitted) << k;
    EXPECT_FALSE(limit.try_acquire(state, k * 10'000'000 + 9'999'999, 1).admitted) << k;
  }
}

TEST(GcraLimit, CostsAboveOneDrawDownTheBucket) {
  const GcraLimit limit = limit_per_second(1000, 1000);  // tokens: 1000/s, burst 1000
  GcraState state;
  EXPECT_EQ(limit.try_acquire(state, 0, 300).remaining, 700u);
  EXPECT_EQ(limit.try_acquire(state, 0, 600).remaining, 100u);
  const GcraDecision denied = limit.try_acquire(state, 0, 250);
  EXPECT_FALSE(denied.admitted);
  EXPECT_EQ(denied.remaining, 100u);
  EXPECT_EQ(denied.retry_after_ns, 150'000'000u);  // 150 more tokens at 1 per ms
  EXPECT_EQ(denied.reset_after_ns, 900'000'000u);
  EXPECT_TRUE(limit.try_acquire(state, 150'000'000, 250).admitted);
}

TEST(GcraLimit, RefundGivesBackUnitsButNeverBeyondAFullBucket) {
  const GcraLimit limit = limit_per_second(1000, 1000);
  GcraState state;
  ASSERT_TRUE(limit.try_acquire(state, 0, 800).admitted);  // reserve an estimate of 800
  limit.refund(state, 0, 500);                             // usage was 300
  EXPECT_EQ(limit.try_acquire(state, 0, 0).remaining, 700u);
  limit.refund(state, 0, 5000);  // far more than was taken: clamps at full
  EXPECT_EQ(limit.try_acquire(state, 0, 0).remaining, 1000u);
  EXPECT_FALSE(limit.try_acquire(state, 0, 1001).admitted);
  // A refund for units taken long ago, after the bucket refilled, banks nothing.
  ASSERT_TRUE(limit.try_acquire(state, 10 * kSecond, 1000).admitted);
  limit.refund(state, 20 * kSecond, 1000);
  EXPECT_EQ(limit.try_acquire(state, 20 * kSecond, 0).remaining, 1000u);
  EXPECT_FALSE(limit.try_acquire(state, 20 * kSecond, 1001).admitted);
  EXPECT_TRUE(limit.try_acquire(state, 20 * kSecond, 1000).admitted);
  EXPECT_FALSE(limit.try_acquire(state, 20 * kSecond, 1).admitted);
}

TEST(GcraLimit, RefundOnAFreshStateDoesNotWrapBelowZero) {
  const GcraLimit limit = limit_per_second(10, 3);
  GcraState state;
  limit.refund(state, 0, 1'000'000);
  limit.refund(state, 5, kNever);
  EXPECT_EQ(state.tat_ticks.load(), 0u);
  EXPECT_EQ(limit.try_acquire(state, 5, 0).remaining, 3u);
}

TEST(GcraLimit, ChargeCanPutTheBucketIntoDebtThatTimePaysBack) {
  const GcraLimit limit = limit_per_second(1000, 1000);
  GcraState state;
  ASSERT_TRUE(limit.try_acquire(state, 0, 100).admitted);  // estimate 100
  limit.charge(state, 0, 2900);                            // usage 3000: 2000 tokens of debt
  const GcraDecision query = limit.try_acquire(state, 0, 0);
  EXPECT_FALSE(query.admitted);
  EXPECT_EQ(query.remaining, 0u);
  EXPECT_EQ(query.retry_after_ns, 2 * kSecond);  // debt paid
  EXPECT_EQ(query.reset_after_ns, 3 * kSecond);  // and the bucket full again
  EXPECT_FALSE(limit.try_acquire(state, 2 * kSecond, 1).admitted);
  EXPECT_TRUE(limit.try_acquire(state, 2 * kSecond + 1'000'000, 1).admitted);
}

TEST(GcraLimit, ChargeSaturatesInsteadOfOverflowing) {
  const GcraLimit limit = limit_per_second(1, 1);
  GcraState state;
  limit.charge(state, 0, kNever);
  limit.charge(state, 0, kNever);  // debt saturates at 2^62 ticks (2^60 ns) past now
  const GcraDecision d = limit.try_acquire(state, kMaxNowNs / 2, 1);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_ns, kMaxNowNs / 2);  // finite, if very long
  EXPECT_TRUE(limit.try_acquire(state, kMaxNowNs, 1).admitted);
}

TEST(GcraLimit, ClockGoingBackwardsALittleKeepsTheBound) {
  const GcraLimit limit = limit_per_second(1000, 5);  // T = 1 ms
  GcraState state;
  const uint64_t now = 10 * kSecond;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(limit.try_acquire(state, now, 1).admitted);
  // A worker whose clock read lags by up to a few intervals gets nothing extra...
  for (uint64_t lag : {1u, 1000u, 999'999u, 1'000'000u, 3'000'000u, 20'000'000u}) {
    const GcraDecision d = limit.try_acquire(state, now - lag, 1);
    EXPECT_FALSE(d.admitted) << lag;
    EXPECT_EQ(d.remaining, 0u) << lag;
    EXPECT_GT(d.retry_after_ns, lag) << lag;  // measured from its own now
  }
  // ...and the state is not disturbed for workers at the true time.
  EXPECT_FALSE(limit.try_acquire(state, now + 999'999, 1).admitted);
  EXPECT_TRUE(limit.try_acquire(state, now + 1'000'000, 1).admitted);
  // On a full bucket, workers whose clocks lag more and more share at most burst; each sees the
  // bucket as of its own now, so the laggards may even get less (here the 5th, 4 µs behind).
  GcraState full;
  int admitted = 0;
  for (uint64_t i = 0; i < 10; ++i) admitted += limit.try_acquire(full, now - i * 1000, 1).admitted;
  EXPECT_EQ(admitted, 4);
}

TEST(GcraLimit, NowBeyondTheSupportedRangeIsClamped) {
  const GcraLimit limit = limit_per_second(1, 1);
  GcraState state;
  EXPECT_TRUE(limit.try_acquire(state, kNever, 1).admitted);
  EXPECT_FALSE(limit.try_acquire(state, kNever, 1).admitted);
}

// ---------------------------------------------------------------------------------------------
// Concurrency limit

TEST(ConcurrencyLimit, AdmitsUpToMaxAndReportsRemaining) {
  const ConcurrencyLimit limit(3);
  ConcurrencyState state;
  EXPECT_EQ(limit.try_acquire(state).remaining, 2u);
  EXPECT_EQ(limit.try_acquire(state).remaining, 1u);
  const ConcurrencyDecision last = limit.try_acquire(state);
  EXPECT_TRUE(last.admitted);
  EXPECT_EQ(last.remaining, 0u);
  EXPECT_FALSE(limit.try_acquire(state).admitted);
  EXPECT_TRUE(limit.release(state));
  EXPECT_TRUE(limit.try_acquire(state).admitted);
}

TEST(ConcurrencyLimit, ReleaseWithoutAcquireIsRefusedAndChangesNothing) {
  const ConcurrencyLimit limit(1);
  ConcurrencyState state;
  EXPECT_FALSE(limit.release(state));
  EXPECT_TRUE(limit.try_acquire(state).admitted);
  EXPECT_FALSE(limit.try_acquire(state).admitted);
}

TEST(ConcurrencyLimit, LoweredMaxDeniesUntilInFlightDrainsBelowIt) {
  ConcurrencyState state;
  const ConcurrencyLimit before(4);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(before.try_acquire(state).admitted);
  const ConcurrencyLimit after(2);  // config reload
  EXPECT_FALSE(after.try_acquire(state).admitted);
  after.release(state);
  after.release(state);
  EXPECT_FALSE(after.try_acquire(state).admitted);
  after.release(state);
  EXPECT_TRUE(after.try_acquire(state).admitted);
}

TEST(ConcurrencyLimit, ThreadsNeverExceedMaxInFlight) {
  constexpr uint64_t kMax = 5;
  const ConcurrencyLimit limit(kMax);
  ConcurrencyState state;
  std::atomic<uint64_t> observed_max{0};
  std::atomic<uint64_t> held{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 5000; ++i) {
        if (!limit.try_acquire(state).admitted) continue;
        const uint64_t now_held = held.fetch_add(1) + 1;
        uint64_t seen = observed_max.load();
        while (now_held > seen && !observed_max.compare_exchange_weak(seen, now_held)) {
        }
        if (rng() % 4 == 0) std::this_thread::yield();
        held.fetch_sub(1);
        ASSERT_TRUE(limit.release(state));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(observed_max.load(), kMax);
  EXPECT_EQ(state.in_flight.load(), 0u);
}

// ---------------------------------------------------------------------------------------------
// The property from the issue: "W threads hammering one identity over simulated time D admit at
// most rate·D + burst and not fewer than that minus one". Stated exactly for GCRA, with
// T = effective_interval_ticks() and D in ticks, B = floor(D / T) + burst:
//
// Upper bound, any arrivals. tat starts at 0 and every admission of cost c replaces tat by
//   max(tat, now) + c·T >= tat + c·T, and nothing else raises it, so after admissions of U units
//   in total the final tat >= U·T. The admission that wrote the final tat checked tat <= now +
//   burst·T <= D + burst·T. Hence U·T <= D + burst·T, U <= B — whatever order the now values
//   arrive in, because max(tat, now) only ever adds.
//
// Lower bound, dense arrivals. Out-of-order now values alone cannot lose admissions, but sparse
//   ones can: whenever a request finds tat < now the bucket was full and the credit now − tat
//   is discarded (GCRA caps the bucket at burst), so we drive time so that never happens and
//   that the bucket is empty at the end:
//   (a) each thread starts at now 0, ends at now D, and steps by at most T/2;
//   (b) unit costs, burst >= 2.
//   No credit is discarded: a thread's first request is at now 0 <= tat. After a thread's request
//   at t it knows tat >= t + T if admitted (tat' = max(tat,t) + T), and tat > t + (burst − 1)·T >=
//   t + T if denied (tat + T > t + burst·T); tat never falls (no refunds here), so at its next
//   request, at t' <= t + T/2, tat >= t'. Therefore tat = U·T exactly, at all times. The bucket
//   ends nearly empty: let c = (t + burst·T − tat)/T be the credit a thread sees before a request
//   at t. Between its consecutive requests c rises by at most 1/2 and falls by 1 if admitted, so
//   once c < 2 it stays < 2 (from c < 1: < 1.5; from 1 <= c < 2: < 1.5), and from c <= burst it
//   falls by >= 1/2 per request until then; with at least 2·D/T requests per thread and D/T >=
//   2·burst it is < 2 before each thread's last request. The last request in linearisation order is
//   some thread's last, at now D, with c < 2: admitted, the final tat > D + (burst − 1)·T; denied
//   (c < 1), tat + T > D + burst·T. Either way U·T > D + (burst − 1)·T, U > D/T + burst − 1, so U
//   >= B.
// So with dense arrivals U == B exactly — one better than the "B − 1". A drain at now D
// after the threads finish must then admit nothing.
// ---------------------------------------------------------------------------------------------

struct HammerCase {
  uint64_t units;
  uint64_t period_ns;
  uint64_t burst;
  unsigned threads;
  uint64_t intervals;  // D = intervals · T
};

std::string hammer_name(const testing::TestParamInfo<HammerCase>& info) {
  const HammerCase& c = info.param;
  return std::to_string(c.units) + "per" + std::to_string(c.period_ns) + "ns_burst" +
         std::to_string(c.burst) + "_w" + std::to_string(c.threads);
}

class Hammer : public testing::TestWithParam<HammerCase> {};

// Runs body(w) on `count` threads released together, so that they overlap as much as the
// machine allows.
template <typename Body>
void run_together(unsigned count, Body body) {
  std::atomic<unsigned> waiting{count};
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < count; ++w) {
    threads.emplace_back([&, w] {
      waiting.fetch_sub(1);
      while (waiting.load() != 0) std::this_thread::yield();
      body(w);
    });
  }
  for (auto& thread : threads) thread.join();
}

TEST_P(Hammer, DenseArrivalsAdmitExactlyRateTimesDurationPlusBurst) {
  const HammerCase c = GetParam();
  const GcraLimit limit = *GcraLimit::make(c.units, c.period_ns, c.burst);
  ASSERT_GE(c.burst, 2u);
  const uint64_t interval = limit.effective_interval_ticks();
  // D in ns, not a multiple of T in general; plus an offset to exercise the floor.
  const uint64_t duration_ns = c.intervals * interval / kTicksPerNs + interval / (3 * kTicksPerNs);
  const uint64_t max_step_ns = std::max<uint64_t>(1, interval / (2 * kTicksPerNs));  // <= T/2
  ASSERT_GE(duration_ns * kTicksPerNs / interval, 2 * c.burst);
  GcraState state;
  std::atomic<uint64_t> admitted{0};
  run_together(c.threads, [&](unsigned w) {
    std::mt19937_64 rng(1000 * w + c.burst);
    std::uniform_int_distribution<uint64_t> step(1, max_step_ns);
    uint64_t mine = 0;
    for (uint64_t now = 0;; now = std::min(duration_ns, now + step(rng))) {
      mine += limit.try_acquire(state, now, 1).admitted;
      if (now == duration_ns) break;
    }
    admitted.fetch_add(mine, std::memory_order_relaxed);
  });
  const uint64_t bound = duration_ns * kTicksPerNs / interval + c.burst;  // B
  EXPECT_LE(admitted.load(), bound);
  EXPECT_GE(admitted.load() + 1, bound);                            // the statement
  EXPECT_EQ(admitted.load(), bound);                                // the exact one
  EXPECT_FALSE(limit.try_acquire(state, duration_ns, 1).admitted);  // nothing left at D
  // The nominal rate·D + burst differs from B by less than one unit for these parameters.
  const long double nominal = static_cast<long double>(c.units) * duration_ns / c.period_ns;
  EXPECT_LT(nominal + c.burst - static_cast<long double>(bound), 1.0L);
}

TEST_P(Hammer, SparseOutOfOrderMixedCostArrivalsNeverExceedTheBound) {
  const HammerCase c = GetParam();
  const GcraLimit limit = *GcraLimit::make(c.units, c.period_ns, c.burst);
  const uint64_t interval = limit.effective_interval_ticks();
  const uint64_t duration_ns = c.intervals * interval / kTicksPerNs;
  const uint64_t t_ns = std::max<uint64_t>(1, interval / kTicksPerNs);
  GcraState state;
  std::atomic<uint64_t> units{0};
  std::atomic<uint64_t> max_now{0};
  run_together(c.threads, [&](unsigned w) {
    std::mt19937_64 rng(77 + w);
    std::uniform_int_distribution<uint64_t> step(1, 3 * t_ns);
    std::uniform_int_distribution<uint64_t> lag(0, 2 * t_ns);  // clock read late
    std::uniform_int_distribution<uint64_t> cost(0, c.burst + 1);
    uint64_t mine = 0, latest = 0;
    for (uint64_t t = 0; t <= duration_ns; t += step(rng)) {
      const uint64_t now = t - std::min(t, lag(rng));
      const uint64_t want = cost(rng);
      if (limit.try_acquire(state, now, want).admitted) mine += want;
      latest = std::max(latest, now);
    }
    units.fetch_add(mine);
    uint64_t seen = max_now.load();
    while (latest > seen && !max_now.compare_exchange_weak(seen, latest)) {
    }
  });
  EXPECT_LE(units.load(), max_now.load() * kTicksPerNs / interval + c.burst);
}

// Refunds subtract: units admitted minus units refunded stays within the bound (a clamped
// refund lowers tat by at most c·T, so the final tat >= (admitted − refunded)·T still).
TEST_P(Hammer, ReservationsAndRefundsNeverExceedTheBoundOnNetUnits) {
  const HammerCase c = GetParam();
  const GcraLimit limit = *GcraLimit::make(c.units, c.period_ns, c.burst);
  const uint64_t interval = limit.effective_interval_ticks();
  const uint64_t duration_ns = c.intervals * interval / kTicksPerNs;
  const uint64_t max_step_ns = std::max<uint64_t>(1, interval / (2 * kTicksPerNs));
  GcraState state;
  std::atomic<int64_t> net{0};
  run_together(c.threads, [&](unsigned w) {
    std::mt19937_64 rng(5 + w);
    std::uniform_int_distribution<uint64_t> step(1, max_step_ns);
    std::uniform_int_distribution<uint64_t> cost(1, c.burst);
    int64_t mine = 0;
    for (uint64_t now = 0; now <= duration_ns; now += step(rng)) {
      const uint64_t reserve = cost(rng);
      if (!limit.try_acquire(state, now, reserve).admitted) continue;
      const uint64_t used = rng() % (reserve + 1);
      limit.refund(state, now, reserve - used);
      mine += static_cast<int64_t>(used);
    }
    net.fetch_add(mine);
  });
  EXPECT_LE(static_cast<uint64_t>(net.load()), duration_ns * kTicksPerNs / interval + c.burst);
}

INSTANTIATE_TEST_SUITE_P(
    Combinations, Hammer,
    testing::Values(HammerCase{1000, kSecond, 10, 2, 400}, HammerCase{1000, kSecond, 10, 4, 400},
                    HammerCase{1000, kSecond, 10, 8, 400}, HammerCase{3, kSecond, 2, 2, 300},
                    HammerCase{3, kSecond, 2, 8, 300}, HammerCase{100'000, kSecond, 50, 4, 500},
                    HammerCase{100'000, kSecond, 50, 8, 500},
                    HammerCase{2'000'000, 60 * kSecond, 200, 2, 600},
                    HammerCase{2'000'000, 60 * kSecond, 200, 8, 600},
                    HammerCase{7, 60 * kSecond, 3, 4, 300}),
    hammer_name);

}  // namespace
}  // namespace sluice
