// The identity step: a verified-key cache hit against the cold path (SHA-256 + key id + table).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "sluice/identity.hpp"

namespace sluice {
namespace {

std::vector<std::string> keys(size_t n, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<std::string> result;
  for (size_t i = 0; i < n; ++i) {
    std::string key = "sk-live-";
    for (int j = 0; j < 40; ++j) key += "0123456789abcdefghijklmnopqrstuvwxyz"[random() % 36];
    result.push_back(key);
  }
  return result;
}

IdentityTable table_of(const std::vector<std::string>& ks) {
  std::vector<Identity> identities;
  for (size_t i = 0; i < ks.size(); ++i)
    identities.push_back(Identity{"id" + std::to_string(i), "verified", {sha256_of(ks[i])}, {}});
  return IdentityTable(std::move(identities));
}

void BM_Sha256Of48ByteKey(benchmark::State& state) {
  const std::string key = keys(1, 1)[0];
  for (auto _ : state) benchmark::DoNotOptimize(sha256_of(key));
}
BENCHMARK(BM_Sha256Of48ByteKey);

void BM_KeyIdOfDigest(benchmark::State& state) {
  const KeyDigest digest = sha256_of(keys(1, 1)[0]);
  for (auto _ : state) benchmark::DoNotOptimize(key_id_of(digest));
}
BENCHMARK(BM_KeyIdOfDigest);

void BM_FingerprintOf48ByteKey(benchmark::State& state) {
  const std::string key = keys(1, 1)[0];
  for (auto _ : state) benchmark::DoNotOptimize(fingerprint_of(key, 7));
}
BENCHMARK(BM_FingerprintOf48ByteKey);

// Steady state: a working set of known keys that fits the cache.
void BM_ResolveCacheHit(benchmark::State& state) {
  const auto ks = keys(static_cast<size_t>(state.range(0)), 2);
  const IdentityTable table = table_of(ks);
  KeyCache cache(4096);
  for (const auto& k : ks) resolve(k, table, cache);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(resolve(ks[i], table, cache));
    if (++i == ks.size()) i = 0;
  }
}
BENCHMARK(BM_ResolveCacheHit)->Arg(16)->Arg(1024);

// A flood of never-seen keys: every one costs SHA-256 + key id + table lookup + insert.
void BM_ResolveMissUnknownKey(benchmark::State& state) {
  const IdentityTable table = table_of(keys(1000, 3));
  const auto flood = keys(1 << 16, 4);
  KeyCache cache(4096);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(resolve(flood[i], table, cache));
    if (++i == flood.size()) {  // start over with a fresh cache so every call is a miss
      i = 0;
      state.PauseTiming();
      cache = KeyCache(4096);
      state.ResumeTiming();
    }
  }
}
BENCHMARK(BM_ResolveMissUnknownKey);

// The table lookup on the cold path: IdentityTable (an unordered_map since this measurement)
// against a sorted vector with binary search, the other candidate.
void BM_TableFindSortedVector(benchmark::State& state) {
  const auto ks = keys(static_cast<size_t>(state.range(0)), 5);
  std::vector<KeyDigest> digests;
  for (const auto& k : ks) digests.push_back(sha256_of(k));
  std::vector<KeyDigest> sorted = digests;
  std::sort(sorted.begin(), sorted.end());
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::lower_bound(sorted.begin(), sorted.end(), digests[i]));
    if (++i == digests.size()) i = 0;
  }
}
BENCHMARK(BM_TableFindSortedVector)->Arg(100)->Arg(100000);

void BM_TableFindIdentityTable(benchmark::State& state) {
  const auto ks = keys(static_cast<size_t>(state.range(0)), 5);
  const IdentityTable table = table_of(ks);
  std::vector<KeyDigest> digests;
  for (const auto& k : ks) digests.push_back(sha256_of(k));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.find(digests[i]));
    if (++i == digests.size()) i = 0;
  }
}
BENCHMARK(BM_TableFindIdentityTable)->Arg(100)->Arg(100000);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
