// Cost of one admission decision through the real per-worker observer (sluice::Admission) under a
// real policy (build_policy from a Config with one tier and an IdentityTable), driven as the HTTP
// stage drives it: on_request_head → on_request_end → on_response_end on an open flow, one audit
// record per decision. `now` advances 1 µs per request against generous limits, so the limiters
// admit everything unless a case says otherwise.
//   BM_AdmitCacheHit          — one known key, repeated: head + end + response + record (to a
//                               counting sink); …NoSink: the same with no sink (records built,
//                               not handed over); BM_AdmitFlowPerRequest adds flow open + close;
//   BM_AdmitColdIdentity      — a different known key each request, 16 Ki identities against a
//                               1 Ki-entry key cache: every head is a miss (SHA-256 + key id +
//                               table), and the identity's limiter lines are cold;
//   BM_NewKeySha256           — sluice::resolve alone on a key the cache does not hold (known:1 a
//                               known key evicted, known:0 a never-seen unknown key);
//   BM_DenyUnknownKeyFlood    — never-repeated random keys, each on its own flow: open + head
//                               (401 invalid_api_key, negative cache entry) + record + close;
//   BM_DenyRateLimited        — one identity with 1 request/s, bucket empty, `now` fixed: open +
//                               head + end (429 rate_limited_requests with its refusal fields) +
//                               record + close;
//   BM_AdmitTwoThreadsOneIdentity — two workers (own Admission each) on one identity: every
//                               request CASes the same request and token words;
//   BM_AdmitWithAuditRing     — as BM_AdmitCacheHit, records pushed into a real AuditRing (8 Ki
//                               slots): consumer_thread:0 drains it in the loop with the timer
//                               paused, consumer_thread:1 from a second thread, as the writer does.
// Counters: admitted/denied and status (the last record's: 200, 401, 429 — the path measured is
// the one named), records (per decision: 1), key_misses (SHA-256 paths per decision), allocs
// (operator new calls per decision after warm-up; C libraries' own malloc calls are not seen:
// OpenSSL 3's EVP makes three per key-cache miss, one in sha256_of and two in key_id_of's
// EVP_MD_CTX_copy_ex, counted with an LD_PRELOAD shim).
//   build/perf/admission_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Measured: perf/README.md, "Admission (perf/admission_bench.cpp)".
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sluice/admission.hpp"
#include "sluice/audit.hpp"
#include "sluice/config.hpp"
#include "sluice/identity.hpp"
#include "sluice/policy.hpp"

// Every operator new of this process is counted per thread, so a case can report whether the
// admission path allocates in its steady state. Array and nothrow forms reach these through
// libstdc++'s defaults.
namespace {
thread_local uint64_t allocations = 0;

void* counted_alloc(std::size_t size, std::size_t alignment) {
  ++allocations;
  void* p = nullptr;
  if (posix_memalign(&p, std::max(alignment, sizeof(void*)), size == 0 ? 1 : size) != 0)
    throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t size) {
  return counted_alloc(size, alignof(std::max_align_t));
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return counted_alloc(size, static_cast<std::size_t>(alignment));
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

namespace sluice {
namespace {

constexpr uint64_t kStartNs = 1'000'000'000'000;  // 1000 s of uptime
constexpr uint64_t kStepNs = 1'000;               // simulated time per request
constexpr uint32_t kFlow = 7;
constexpr uint64_t kBodyBytes = 812;
constexpr uint64_t kPromptTokens = 150;
constexpr uint64_t kMaxTokens = 256;

// Generous: 1e8 requests/s and 1e9 tokens/s (one request reserves 406 tokens and keeps 360 after
// the usage refund), bursts worth 10 s, so a request every simulated µs never meets a limit, nor
// do two workers whose clocks drift apart by up to 10 s.
constexpr TierLimits kGenerous{.requests_per_second = 100'000'000,
                               .burst = 1'000'000'000,
                               .tokens_per_minute = 60'000'000'000,
                               .token_burst = 10'000'000'000,
                               .max_concurrent = 1'000'000,
                               .max_body_bytes = 1 << 20,
                               .max_output_tokens = 4096};

// One request per second, one at once: empty after the first request.
constexpr TierLimits kTight{.requests_per_second = 1,
                            .burst = 1,
                            .tokens_per_minute = 60'000'000'000,
                            .token_burst = 10'000'000'000,
                            .max_concurrent = 1'000'000,
                            .max_body_bytes = 1 << 20,
                            .max_output_tokens = 4096};

const FlowEndpoints kEndpoints{{{198, 18, 0, 1}, 40000, 4}, {{198, 18, 0, 2}, 8000, 4}};

std::vector<std::string> random_keys(size_t n, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<std::string> result;
  result.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string key = "sk-live-";
    for (int j = 0; j < 40; ++j) key += "0123456789abcdefghijklmnopqrstuvwxyz"[random() % 36];
    result.push_back(key);
  }
  return result;
}

// New random characters in place (no allocation): after a pass over a flood of keys, the next
// pass presents keys never seen either. (Without this, the unknown keys that took a set's empty
// ways on the first pass would stay there and hit on the next: a flood's negative entries only
// ever replace the last way.)
void rekey(std::vector<std::string>& keys, uint64_t seed) {
  std::mt19937_64 random(seed);
  for (std::string& key : keys) {
    for (std::size_t j = 8; j < key.size(); ++j)
      key[j] = "0123456789abcdefghijklmnopqrstuvwxyz"[random() % 36];
  }
}

std::shared_ptr<const IdentityTable> table_of(const std::vector<std::string>& ks) {
  std::vector<Identity> identities;
  for (size_t i = 0; i < ks.size(); ++i)
    identities.push_back(Identity{"id" + std::to_string(i), "bench", {sha256_of(ks[i])}, {}, ""});
  return std::make_shared<const IdentityTable>(std::move(identities));
}

std::shared_ptr<const AdmissionPolicy> policy_of(const std::vector<std::string>& ks,
                                                 const TierLimits& limits, LimiterStore& store) {
  Config config;
  config.source = "admission_bench";
  config.tiers.push_back(TierConfig{.name = "bench", .limits = limits});
  config.unknown_key = "deny";
  return build_policy(config, table_of(ks), store);
}

// What a worker's Admission reads: identities (keys[i] is identity i's key), the limiters' state
// and the published policy.
struct World {
  std::vector<std::string> keys;
  LimiterStore store;
  PolicySource source;

  World(std::size_t identities, const TierLimits& limits)
      : keys(random_keys(identities, 1)), source(policy_of(keys, limits, store)) {}
};

RequestHead head_for(std::string_view key) {
  RequestHead head;
  head.method = "POST";
  head.target = "/v1/chat/completions";
  head.framing = BodyFraming::kContentLength;
  head.content_length = kBodyBytes;
  head.json = true;
  head.host = "llm.internal";
  head.key_source = KeySource::kAuthorizationBearer;
  head.key_status = KeyStatus::kPresent;
  head.key = key;
  return head;
}

RequestFields chat_fields() {
  RequestFields fields;
  fields.model = "llama-3.1-8b";
  fields.max_tokens = kMaxTokens;
  return fields;
}

RequestOutcome outcome_of(const RequestFields& fields) {
  RequestOutcome outcome;
  outcome.json = true;
  outcome.fields = &fields;
  outcome.body_bytes = kBodyBytes;
  outcome.token_estimate = kPromptTokens;
  return outcome;
}

// 360 tokens used of the 406 reserved: the reconciliation refunds 46.
const ResponseOutcome kResponse{200, TokenUsage{148, 212, 360}};

// One request on an open flow, as the HTTP stage reports it. True when admitted.
bool request(Admission& admission, uint32_t flow, const RequestHead& head,
             const RequestOutcome& outcome, uint64_t now) {
  if (admission.on_request_head(flow, head, now).refused()) return false;
  if (admission.on_request_end(flow, outcome, now).refused()) return false;
  admission.on_response_end(flow, kResponse, now);
  return true;
}

// A refused request ends its flow, so the deny cases open and close one per request.
bool request_on_own_flow(Admission& admission, const RequestHead& head,
                         const RequestOutcome& outcome, uint64_t now) {
  admission.on_flow_open(kFlow, kEndpoints);
  const bool admitted = request(admission, kFlow, head, outcome, now);
  admission.on_flow_close(kFlow);
  return admitted;
}

class CountingSink final : public AuditSink {
 public:
  void write(const AuditRecord& record) override {
    benchmark::DoNotOptimize(&record);
    last_status = record.status;
    ++records;
  }
  uint64_t records = 0;
  uint16_t last_status = 0;  // 200 (the response's) when admitted, 401, 429…
};

// As the data path's (src/dataplane/bridge.cpp): a full ring is counted there, and dropped.
class RingSink final : public AuditSink {
 public:
  explicit RingSink(AuditRing& ring) : ring_(ring) {}
  void write(const AuditRecord& record) override { ring_.try_push(record); }

 private:
  AuditRing& ring_;
};

// Snapshots taken after warm-up (first request: key cache miss, flow state and request slot
// allocated), reported per decision when the loop is done.
class Probe {
 public:
  Probe(const Admission& admission, const CountingSink* sink)
      : admission_(admission),
        sink_(sink),
        allocations_(allocations),
        key_misses_(admission.stats().key_cache_misses),
        records_(sink != nullptr ? sink->records : 0) {}

  void report(benchmark::State& bench, uint64_t admitted) const {
    const uint64_t allocated = allocations - allocations_;  // before the counters' own inserts
    const auto per_decision = benchmark::Counter::kAvgIterations;
    bench.counters["admitted"] = static_cast<double>(admitted);
    bench.counters["denied"] = static_cast<double>(bench.iterations() - admitted);
    bench.counters["allocs"] = benchmark::Counter(static_cast<double>(allocated), per_decision);
    bench.counters["key_misses"] = benchmark::Counter(
        static_cast<double>(admission_.stats().key_cache_misses - key_misses_), per_decision);
    if (sink_ != nullptr) {
      bench.counters["records"] =
          benchmark::Counter(static_cast<double>(sink_->records - records_), per_decision);
      bench.counters["status"] =
          benchmark::Counter(sink_->last_status, benchmark::Counter::kAvgThreads);
    }
  }

 private:
  const Admission& admission_;
  const CountingSink* sink_;
  uint64_t allocations_;
  uint64_t key_misses_;
  uint64_t records_;
};

void admit_one_key(benchmark::State& bench, CountingSink* sink, bool flow_per_request) {
  World world(1, kGenerous);
  Admission admission(world.source, sink, 0, 0);
  const RequestHead head = head_for(world.keys[0]);
  const RequestFields fields = chat_fields();
  const RequestOutcome outcome = outcome_of(fields);
  uint64_t now = kStartNs;
  admission.on_flow_open(kFlow, kEndpoints);
  request(admission, kFlow, head, outcome, now);
  const Probe probe(admission, sink);
  uint64_t admitted = 0;
  for (auto _ : bench) {
    now += kStepNs;
    admitted += flow_per_request ? request_on_own_flow(admission, head, outcome, now)
                                 : request(admission, kFlow, head, outcome, now);
  }
  probe.report(bench, admitted);
}

void BM_AdmitCacheHit(benchmark::State& bench) {
  CountingSink sink;
  admit_one_key(bench, &sink, false);
}
BENCHMARK(BM_AdmitCacheHit);

void BM_AdmitCacheHitNoSink(benchmark::State& bench) {
  admit_one_key(bench, nullptr, false);
}
BENCHMARK(BM_AdmitCacheHitNoSink);

void BM_AdmitFlowPerRequest(benchmark::State& bench) {
  CountingSink sink;
  admit_one_key(bench, &sink, true);
}
BENCHMARK(BM_AdmitFlowPerRequest);

constexpr std::size_t kColdIdentities = 16384;
constexpr std::size_t kColdKeyCache = 1024;

void BM_AdmitColdIdentity(benchmark::State& bench) {
  World world(kColdIdentities, kGenerous);
  CountingSink sink;
  Admission admission(world.source, &sink, 0, 0, kColdKeyCache);
  RequestHead head = head_for(world.keys[0]);
  const RequestFields fields = chat_fields();
  const RequestOutcome outcome = outcome_of(fields);
  uint64_t now = kStartNs;
  admission.on_flow_open(kFlow, kEndpoints);
  request(admission, kFlow, head, outcome, now);
  const Probe probe(admission, &sink);
  uint64_t admitted = 0;
  std::size_t i = 1;
  for (auto _ : bench) {
    head.key = world.keys[i];
    if (++i == world.keys.size()) i = 0;
    now += kStepNs;
    admitted += request(admission, kFlow, head, outcome, now);
  }
  probe.report(bench, admitted);
}
BENCHMARK(BM_AdmitColdIdentity);

void BM_NewKeySha256(benchmark::State& bench) {
  const bool known = bench.range(0) != 0;
  World world(kColdIdentities, kGenerous);
  const IdentityTable& table = *world.source.current()->identities();
  std::vector<std::string> flood = known ? world.keys : random_keys(1 << 16, 2);
  KeyCache cache(kColdKeyCache);  // far smaller than either set: every lookup misses
  uint64_t hits = 0;
  uint64_t found = 0;
  uint64_t passes = 0;
  std::size_t i = 0;
  for (auto _ : bench) {
    const Resolved resolved = resolve(flood[i], table, cache);
    if (++i == flood.size()) {
      i = 0;
      if (!known) {
        bench.PauseTiming();
        rekey(flood, 100 + ++passes);
        bench.ResumeTiming();
      }
    }
    hits += resolved.was_cache_hit;
    found += resolved.identity != nullptr;
  }
  bench.counters["hits"] = static_cast<double>(hits);
  bench.counters["found"] = static_cast<double>(found);
}
BENCHMARK(BM_NewKeySha256)->ArgName("known")->Arg(1)->Arg(0);

void BM_DenyUnknownKeyFlood(benchmark::State& bench) {
  World world(16, kGenerous);
  std::vector<std::string> flood = random_keys(1 << 16, 3);
  CountingSink sink;
  Admission admission(world.source, &sink, 0, 0);
  RequestHead head = head_for(flood[0]);
  const RequestFields fields = chat_fields();
  const RequestOutcome outcome = outcome_of(fields);
  uint64_t now = kStartNs;
  request_on_own_flow(admission, head, outcome, now);
  const Probe probe(admission, &sink);
  uint64_t admitted = 0;
  uint64_t passes = 0;
  std::size_t i = 1;
  for (auto _ : bench) {
    head.key = flood[i];
    if (++i == flood.size()) {
      i = 0;
      bench.PauseTiming();
      rekey(flood, 200 + ++passes);
      bench.ResumeTiming();
    }
    now += kStepNs;
    admitted += request_on_own_flow(admission, head, outcome, now);
  }
  probe.report(bench, admitted);
}
BENCHMARK(BM_DenyUnknownKeyFlood);

void BM_DenyRateLimited(benchmark::State& bench) {
  World world(1, kTight);
  CountingSink sink;
  Admission admission(world.source, &sink, 0, 0);
  const RequestHead head = head_for(world.keys[0]);
  const RequestFields fields = chat_fields();
  const RequestOutcome outcome = outcome_of(fields);
  const uint64_t now = kStartNs;
  request_on_own_flow(admission, head, outcome, now);  // takes the one request of the burst
  const Probe probe(admission, &sink);
  uint64_t admitted = 0;
  for (auto _ : bench) admitted += request_on_own_flow(admission, head, outcome, now);
  probe.report(bench, admitted);
}
BENCHMARK(BM_DenyRateLimited);

// Built before each run's threads start and dropped after they end (so every run starts with
// full buckets).
std::unique_ptr<World> shared_world;

void BM_AdmitTwoThreadsOneIdentity(benchmark::State& bench) {
  World& world = *shared_world;
  CountingSink sink;
  Admission admission(world.source, &sink, static_cast<uint16_t>(bench.thread_index()), 0);
  const RequestHead head = head_for(world.keys[0]);
  const RequestFields fields = chat_fields();
  const RequestOutcome outcome = outcome_of(fields);
  uint64_t now = kStartNs;
  admission.on_flow_open(kFlow, kEndpoints);
  request(admission, kFlow, head, outcome, now);
  const Probe probe(admission, &sink);
  uint64_t admitted = 0;
  for (auto _ : bench) {
    now += kStepNs;
    admitted += request(admission, kFlow, head, outcome, now);
  }
  probe.report(bench, admitted);
}
BENCHMARK(BM_AdmitTwoThreadsOneIdentity)
    ->Setup([](const benchmark::State&) { shared_world = std::make_unique<World>(1, kGenerous); })
    ->Teardown([](const benchmark::State&) { shared_world.reset(); })
    ->Threads(2);

constexpr std::size_t kRingRecords = 8192;  // AuditConfig::ring_records' default

void BM_AdmitWithAuditRing(benchmark::State& bench) {
  const bool consumer_thread = bench.range(0) != 0;
  AuditRing ring(kRingRecords);
  RingSink sink(ring);
  std::vector<AuditRecord> drained(kRingRecords);
  std::atomic<bool> stop{false};
  std::thread consumer;
  if (consumer_thread) {
    consumer = std::thread([&] {
      std::vector<AuditRecord> batch(256);
      while (!stop.load(std::memory_order_relaxed)) {
        if (ring.pop_batch(batch) == 0) std::this_thread::yield();
      }
    });
  }
  World world(1, kGenerous);
  Admission admission(world.source, &sink, 0, 0);
  const RequestHead head = head_for(world.keys[0]);
  const RequestFields fields = chat_fields();
  const RequestOutcome outcome = outcome_of(fields);
  uint64_t now = kStartNs;
  admission.on_flow_open(kFlow, kEndpoints);
  request(admission, kFlow, head, outcome, now);
  const Probe probe(admission, nullptr);
  uint64_t admitted = 0;
  uint64_t since_drain = 0;
  for (auto _ : bench) {
    now += kStepNs;
    admitted += request(admission, kFlow, head, outcome, now);
    if (!consumer_thread && ++since_drain == kRingRecords / 2) {
      bench.PauseTiming();
      ring.pop_batch(drained);
      since_drain = 0;
      bench.ResumeTiming();
    }
  }
  probe.report(bench, admitted);
  stop.store(true);
  if (consumer.joinable()) consumer.join();
  bench.counters["dropped"] = static_cast<double>(ring.dropped());
}
BENCHMARK(BM_AdmitWithAuditRing)->ArgName("consumer_thread")->Arg(0)->Arg(1);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
