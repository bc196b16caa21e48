// Cost of one admission decision (sluice/gcra.hpp), the clock read excluded (callers read it
// once per burst):
//   BM_GcraAdmit          — admitted: load, CAS, remaining/reset (one 64-bit division);
//   BM_GcraDeny           — denied: load only, no write (retry_after, remaining, reset);
//   BM_GcraAdmit/threads:2 — two threads admitting on one shared state: the cache line
//                            ping-pongs and CASes fail and retry — the contended worst case;
//   BM_GcraDeny/threads:2  — two threads denied on one state: the line stays shared, read-only;
//   BM_ConcurrencyAcquireRelease — one in-flight acquire plus release.
//   build/perf/gcra_bench --benchmark_min_time=0.2
// Measured (CPU time per decision, GCC 12 -O2, 2-vCPU 2.1 GHz VM, other builds running; the two
// vCPUs are likely hyperthreads of one core, so cross-core line transfer is not captured):
//   admit 8.1 ns · deny 2.8 ns · admit, 2 threads 9.3 ns · deny, 2 threads 2.8 ns ·
//   concurrency acquire+release 12.7 ns, 2 threads 64 ns.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "sluice/gcra.hpp"

namespace sluice {
namespace {

// Time advances 1 ns per decision against a 4e9 units/s limit with a 2^40 burst: every
// decision is admitted and the bucket never runs dry.
void BM_GcraAdmit(benchmark::State& bench) {
  static GcraState state;  // shared by the threads of a multi-threaded run
  const GcraLimit limit = *GcraLimit::per_second(4'000'000'000, uint64_t{1} << 40);
  if (bench.thread_index() == 0) state.tat_ticks.store(0);  // threads start together after this
  uint64_t now = 1'000'000'000;
  uint64_t admitted = 0;
  for (auto _ : bench) {
    const GcraDecision d = limit.try_acquire(state, now++, 1);
    admitted += d.admitted;
    benchmark::DoNotOptimize(d);
  }
  // Sanity, summed over threads: the path measured is the one named.
  bench.counters["admitted"] = static_cast<double>(admitted);
  bench.counters["denied"] = static_cast<double>(bench.iterations() - admitted);
}
BENCHMARK(BM_GcraAdmit);
BENCHMARK(BM_GcraAdmit)->Threads(2);

// One unit per hour, bucket emptied up front: every decision is denied.
void BM_GcraDeny(benchmark::State& bench) {
  static GcraState state;
  const GcraLimit limit = *GcraLimit::make(1, 3600'000'000'000, 1);
  if (bench.thread_index() == 0) {
    state.tat_ticks.store(0);
    limit.try_acquire(state, 0, 1);
  }
  uint64_t now = 1'000;
  uint64_t admitted = 0;
  for (auto _ : bench) {
    const GcraDecision d = limit.try_acquire(state, now++, 1);
    admitted += d.admitted;
    benchmark::DoNotOptimize(d);
  }
  // Sanity, summed over threads: the path measured is the one named.
  bench.counters["admitted"] = static_cast<double>(admitted);
  bench.counters["denied"] = static_cast<double>(bench.iterations() - admitted);
}
BENCHMARK(BM_GcraDeny);
BENCHMARK(BM_GcraDeny)->Threads(2);

void BM_ConcurrencyAcquireRelease(benchmark::State& bench) {
  static ConcurrencyState state;
  const ConcurrencyLimit limit(1'000'000);
  for (auto _ : bench) {
    const ConcurrencyDecision d = limit.try_acquire(state);
    benchmark::DoNotOptimize(d);
    limit.release(state);
  }
}
BENCHMARK(BM_ConcurrencyAcquireRelease);
BENCHMARK(BM_ConcurrencyAcquireRelease)->Threads(2);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
