#include "run.hpp"

#include <hs/hs.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "sluice/admission.hpp"
#include "sluice/audit.hpp"
#include "sluice/eal.hpp"
#include "sluice/pipeline.hpp"
#include "sluice/request_recorder.hpp"
#include "sluice/ring_audit_sink.hpp"
#include "sluice/stats.hpp"

namespace sluice::bench {
namespace {

constexpr uint16_t kBurst = 32;        // the appliance's default dataplane.burst_size
constexpr uint32_t kExpiryBudget = 8;  // flows expired per burst, as the live loop does per pass
constexpr unsigned kTxPoolMbufs = 16383;

struct Burst {
  uint32_t first = 0;  // into the worker's schedule
  uint16_t count = 0;
  Side side = Side::kClient;
  bool preamble = false;
};

struct alignas(64) LapCounter {
  std::atomic<uint64_t> value{0};
};

struct Shared {
  const Config* config = nullptr;
  const Workload* workload = nullptr;
  PolicySource* policy = nullptr;
  rte_mempool* tx_pool = nullptr;
  rte_mbuf** mbufs = nullptr;
  uint32_t* stamped_lap = nullptr;
  uint64_t clock_start_ns = 0;
  uint64_t warmup_laps = 1;
  std::vector<std::unique_ptr<AuditRing>> rings;
  std::unique_ptr<LapCounter[]> laps;  // the last lap each worker has finished
  uint32_t workers = 0;
  std::atomic<uint32_t> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
};

struct alignas(64) Worker {
  Shared* shared = nullptr;
  uint32_t index = 0;
  std::vector<uint32_t> schedule;  // frame indexes, in time order
  std::vector<Burst> bursts;
  WorkerStats stats;
  CounterSnapshot before;  // counters at the start of the timed period
  std::array<uint64_t, kRequestReasonCount> requests_before{};
  uint64_t busy = 0, harness = 0, wait = 0, skipped = 0;
  stage_clock::Ledger ledger;  // sluice-bench-staged: where the timed period's cycles went
  stage_clock::Overhead overhead;
};

// What the TX ports would do with a frame, without the ports: count it and let it go.
class FreeingSink final : public PacketSink {
 public:
  explicit FreeingSink(Counters& counters) : counters_(counters) {}
  void send(Side toward, rte_mbuf* mbuf) override {
    const bool client = toward == Side::kClient;
    counters_.add(client ? Counter::tx_client_packets : Counter::tx_server_packets);
    counters_.add(client ? Counter::tx_client_bytes : Counter::tx_server_bytes,
                  rte_pktmbuf_pkt_len(mbuf));
    rte_pktmbuf_free(mbuf);
  }

 private:
  Counters& counters_;
};

uint64_t slowest_lap(const Shared& shared) {
  uint64_t slowest = UINT64_MAX;
  for (uint32_t w = 0; w < shared.workers; ++w)
    slowest = std::min(slowest, shared.laps[w].value.load(std::memory_order_acquire));
  return slowest;
}

int bench_worker(void* argument) {
  Worker& me = *static_cast<Worker*>(argument);
  Shared& shared = *me.shared;
  const Workload& workload = *shared.workload;
  const HttpStageConfig stage_config = http_stage_config(*shared.config);
  std::unique_ptr<RingAuditSink> audit;
  if (!shared.rings.empty()) audit = std::make_unique<RingAuditSink>(*shared.rings[me.index]);
  // Built as the live worker builds them (bridge.cpp: worker_main), metrics included.
  Admission admission(*shared.policy, audit.get(), static_cast<uint16_t>(me.index), 0);
  admission.set_metrics(&me.stats.admission);
  RequestRecorder recorder(me.stats.requests, &admission, nullptr, &me.stats.decisions);
  HttpStage consumer(&stage_config, recorder);
  FreeingSink sink(me.stats.counters);
  Pipeline pipeline(*shared.config, 0x5eed0000 + me.index, shared.tx_pool, sink, consumer,
                    me.stats.counters);
  rte_mbuf* mbufs[kBurst];

  // One burst: re-arm its frames (a reference for the pipeline's free to drop, the lap's
  // port), then the pipeline's work as the live loop does it.
  const auto run_burst = [&](const Burst& burst, uint64_t lap) {
    const uint64_t t0 = rte_rdtsc();
    uint16_t count = 0;
    for (uint32_t k = burst.first; k < burst.first + burst.count; ++k) {
      const uint32_t index = me.schedule[k];
      rte_mbuf* mbuf = shared.mbufs[index];
      if (rte_mbuf_refcnt_read(mbuf) != 1) {  // still held: never expected, counted
        ++me.skipped;
        continue;
      }
      rte_mbuf_refcnt_set(mbuf, 2);
      const Frame& frame = workload.frames[index];
      if (frame.rewrite && shared.stamped_lap[index] != lap) {
        restamp(rte_pktmbuf_mtod(mbuf, uint8_t*), frame, lap);
        shared.stamped_lap[index] = static_cast<uint32_t>(lap);
      }
      mbufs[count++] = mbuf;
    }
    const uint64_t now_ns = shared.clock_start_ns + lap * workload.lap_ns +
                            workload.frames[me.schedule[burst.first]].t_ns;
    const uint64_t t1 = rte_rdtsc();
    admission.refresh();
    pipeline.process_burst(burst.side, mbufs, count, now_ns);
    pipeline.expire_flows(now_ns, kExpiryBudget);
    const uint64_t t2 = rte_rdtsc();
    me.harness += t1 - t0;
    me.busy += t2 - t1;
  };

  // Untimed: the acks-only handshakes, then the warm-up laps — until flows closed in the first
  // lap have expired, the flow table, the per-flow state pools and the caches are at their
  // steady size and nothing allocates any more.
  for (uint64_t lap = 0; lap < shared.warmup_laps; ++lap) {
    for (const Burst& burst : me.bursts) {
      if (!burst.preamble || lap == 0) run_burst(burst, lap);
    }
  }
  me.before.accumulate(me.stats.counters);
  for (std::size_t r = 0; r < kRequestReasonCount; ++r)
    me.requests_before[r] = me.stats.requests.get(r);
  me.busy = me.harness = 0;
  shared.ready.fetch_add(1);
  while (!shared.go.load(std::memory_order_acquire)) rte_pause();
#ifdef SLUICE_STAGE_CLOCK
  me.overhead = stage_clock::calibrate();  // ≈ 2 ms, then the ledger starts afresh
#endif
  stage_clock::reset();

  for (uint64_t lap = shared.warmup_laps; !shared.stop.load(std::memory_order_relaxed); ++lap) {
    for (const Burst& burst : me.bursts) {
      if (burst.preamble) continue;
      if (shared.stop.load(std::memory_order_relaxed)) break;
      run_burst(burst, lap);
    }
    if (shared.stop.load(std::memory_order_relaxed)) break;
    shared.laps[me.index].value.store(lap, std::memory_order_release);
    // At most one lap ahead of the slowest worker: their clocks stay within one lap, so the
    // limiters they share see one time.
    const uint64_t t0 = rte_rdtsc();
    while (lap > slowest_lap(shared) + 1 && !shared.stop.load(std::memory_order_relaxed))
      rte_pause();
    me.wait += rte_rdtsc() - t0;
  }
  stage_clock::settle();
  me.ledger = stage_clock::ledger;
  pipeline.close_all();
  return 0;
}

int scan_worker(void* argument);

struct ScanJob {
  const RuleDatabase* db = nullptr;
  std::vector<const std::string*> texts;
  std::atomic<bool>* go = nullptr;
  std::atomic<bool>* stop = nullptr;
  uint64_t requests = 0, bytes = 0, cycles = 0;
  bool failed = false;
};

int on_match(unsigned, unsigned long long, unsigned long long, unsigned, void*) {
  return 0;
}

// Raw Hyperscan: one stream per worker, reset per request, the canonical prompt fed in pieces of
// one MSS — the scanning the pipeline does, without anything else.
int scan_worker(void* argument) {
  ScanJob& job = *static_cast<ScanJob*>(argument);
  RuleScratch scratch(*job.db);
  hs_stream_t* stream = nullptr;
  if (hs_open_stream(job.db->hs(), 0, &stream) != HS_SUCCESS || job.texts.empty()) {
    job.failed = true;
    return 0;
  }
  while (!job.go->load(std::memory_order_acquire)) rte_pause();
  const uint64_t start = rte_rdtsc();
  for (std::size_t i = 0; !job.stop->load(std::memory_order_relaxed);
       i = (i + 1) % job.texts.size()) {
    const std::string& text = *job.texts[i];
    for (std::size_t at = 0; at < text.size(); at += kMss) {
      const auto piece = static_cast<unsigned>(std::min(kMss, text.size() - at));
      if (hs_scan_stream(stream, text.data() + at, piece, 0, scratch.get(), on_match, nullptr) !=
          HS_SUCCESS)
        job.failed = true;
    }
    hs_reset_stream(stream, 0, scratch.get(), on_match, nullptr);
    ++job.requests;
    job.bytes += text.size();
  }
  job.cycles = rte_rdtsc() - start;
  hs_close_stream(stream, scratch.get(), nullptr, nullptr);
  return 0;
}

// Launches function(jobs[i]) on the first `count` worker lcores.
template <typename Job>
void launch(uint32_t count, int (*function)(void*), std::vector<std::unique_ptr<Job>>& jobs) {
  std::vector<Job*> raw;
  for (auto& job : jobs) raw.push_back(job.get());
  uint32_t next = 0;
  unsigned lcore = 0;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (next == count) break;
    if (rte_eal_remote_launch(function, raw[next], lcore) != 0)
      throw StartupError("cannot launch a bench worker on lcore " + std::to_string(lcore));
    ++next;
  }
  if (next < count)
    throw StartupError("EAL has " + std::to_string(next) + " worker lcores, " +
                       std::to_string(count) + " asked for");
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

uint64_t RunResult::packets() const {
  return counters[Counter::rx_client_packets] + counters[Counter::rx_server_packets];
}
uint64_t RunResult::bytes() const {
  return counters[Counter::rx_client_bytes] + counters[Counter::rx_server_bytes];
}
uint64_t RunResult::decided() const {
  uint64_t total = 0;
  for (const uint64_t n : requests) total += n;
  return total;
}

void init_bench_eal(uint32_t workers, uint32_t memory_mb) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  if (cpus.empty()) cpus.push_back(0);
  // lcore 0 (main: sleeps, prints progress) on the first CPU; workers on the next ones, wrapping
  // when there are more workers than CPUs (then they share, and the figures say so).
  std::string lcores = "0@" + std::to_string(cpus[0]);
  for (uint32_t w = 1; w <= workers; ++w)
    lcores += "," + std::to_string(w) + "@" + std::to_string(cpus[w % cpus.size()]);
  init_eal({"sluice-bench", "--no-huge", "-m", std::to_string(memory_mb), "--no-pci", "--no-shconf",
            "--lcores", lcores, "--log-level", "lib.eal:error", "--no-telemetry"});
}

BenchRunner::BenchRunner(const Config& config, const Workload& workload, PolicySource& policy)
    : config_(config), workload_(workload), policy_(policy) {
  const auto frames = static_cast<unsigned>(workload.frames.size());
  frame_pool_ = rte_pktmbuf_pool_create("bench_frames", frames, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                        SOCKET_ID_ANY);
  tx_pool_ = rte_pktmbuf_pool_create("bench_tx", kTxPoolMbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                     SOCKET_ID_ANY);
  if (frame_pool_ == nullptr || tx_pool_ == nullptr)
    throw StartupError(std::string("cannot create the mbuf pools: ") + rte_strerror(rte_errno) +
                       " (" + std::to_string(frames) + " frames; raise --memory)");
  mbufs_.resize(frames);
  stamped_lap_.assign(frames, 0);
  for (unsigned i = 0; i < frames; ++i) {
    const Frame& f = workload.frames[i];
    rte_mbuf* mbuf = rte_pktmbuf_alloc(frame_pool_);
    if (mbuf == nullptr) throw StartupError("frame pool exhausted while loading the workload");
    std::memcpy(rte_pktmbuf_append(mbuf, f.length), workload.bytes.data() + f.offset, f.length);
    mbufs_[i] = mbuf;
  }
}

BenchRunner::~BenchRunner() {
  for (rte_mbuf* mbuf : mbufs_) {
    rte_mbuf_refcnt_set(mbuf, 1);
    rte_pktmbuf_free(mbuf);
  }
  rte_mempool_free(frame_pool_);
  rte_mempool_free(tx_pool_);
}

RunResult BenchRunner::run(const RunOptions& options) {
  Shared shared;
  shared.config = &config_;
  shared.workload = &workload_;
  shared.policy = &policy_;
  shared.tx_pool = tx_pool_;
  shared.mbufs = mbufs_.data();
  shared.stamped_lap = stamped_lap_.data();
  shared.clock_start_ns = options.clock_start_ns;
  shared.warmup_laps = std::max<uint64_t>(options.warmup_laps, 1);
  shared.workers = options.workers;
  shared.laps = std::make_unique<LapCounter[]>(options.workers);
  // Every worker starts its timed laps having "finished" the last warm-up lap, so the first to
  // end a timed lap does not wait for the others to end theirs.
  for (uint32_t w = 0; w < options.workers; ++w) shared.laps[w].value = shared.warmup_laps - 1;

  std::unique_ptr<AuditWriter> writer;
  if (options.audit_path != "none") {
    AuditWriterConfig audit;
    audit.path = options.audit_path;
    audit.max_file_bytes = uint64_t{1} << 40;  // never rotates (/dev/null cannot be renamed)
    writer = std::make_unique<AuditWriter>(audit);
    for (uint32_t w = 0; w < options.workers; ++w) {
      shared.rings.push_back(std::make_unique<AuditRing>(config_.audit.ring_records));
      writer->add_ring(*shared.rings.back());
    }
    writer->start();
  }

  // Flows to workers as RSS would spread them: by session.
  std::vector<std::unique_ptr<Worker>> workers;
  for (uint32_t w = 0; w < options.workers; ++w) {
    workers.push_back(std::make_unique<Worker>());
    workers.back()->shared = &shared;
    workers.back()->index = w;
  }
  for (uint32_t i = 0; i < workload_.frames.size(); ++i)
    workers[workload_.frames[i].session % options.workers]->schedule.push_back(i);
  for (auto& worker : workers) {
    for (uint32_t k = 0; k < worker->schedule.size(); ++k) {
      const Frame& f = workload_.frames[worker->schedule[k]];
      Burst* last = worker->bursts.empty() ? nullptr : &worker->bursts.back();
      if (last != nullptr && last->side == f.arrives_on && last->preamble == f.preamble &&
          last->count < kBurst) {
        ++last->count;
      } else {
        worker->bursts.push_back({k, 1, f.arrives_on, f.preamble});
      }
    }
  }

  launch(options.workers, bench_worker, workers);
  while (shared.ready.load() < options.workers)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto start = std::chrono::steady_clock::now();
  shared.go.store(true, std::memory_order_release);
  const auto totals = [&] {
    uint64_t packets = 0, requests = 0;
    for (const auto& worker : workers) {
      packets += worker->stats.counters.get(Counter::rx_client_packets) +
                 worker->stats.counters.get(Counter::rx_server_packets);
      for (std::size_t r = 0; r < kRequestReasonCount; ++r)
        requests += worker->stats.requests.get(r);
    }
    return std::pair{packets, requests};
  };
  const auto interrupted = [&] {
    return options.interrupted != nullptr && options.interrupted->load();
  };
  auto [last_packets, last_requests] = totals();  // after the warm-up
  double last_line = 0;
  for (double elapsed = 0; elapsed < options.seconds && !interrupted();) {
    // Naps of 0.1 s at most, to notice an interrupt; a live line every second.
    std::this_thread::sleep_for(
        std::chrono::duration<double>(std::min(0.1, options.seconds - elapsed)));
    elapsed = seconds_since(start);
    if (!options.progress || (elapsed - last_line < 1.0 && elapsed < options.seconds)) continue;
    const auto [packets, requests] = totals();
    const double span = elapsed - last_line;
    std::fprintf(
        stderr,
        "sluice-bench: %u worker(s) %4.1f/%.0f s  %7.3f Mpps  %8.1f k requests/s  lap %lu\n",
        options.workers, elapsed, options.seconds,
        static_cast<double>(packets - last_packets) / span / 1e6,
        static_cast<double>(requests - last_requests) / span / 1e3,
        static_cast<unsigned long>(slowest_lap(shared)));
    last_packets = packets;
    last_requests = requests;
    last_line = elapsed;
  }
  shared.stop.store(true, std::memory_order_release);
  rte_eal_mp_wait_lcore();

  RunResult result;
  result.workers = options.workers;
  result.wall_seconds = seconds_since(start);
  const uint64_t last_lap = slowest_lap(shared);
  result.laps = last_lap >= shared.warmup_laps ? last_lap - shared.warmup_laps + 1 : 0;
  for (const auto& worker : workers) {
    CounterSnapshot after;
    after.accumulate(worker->stats.counters);
    for (std::size_t c = 0; c < kCounterCount; ++c)
      result.counters.values[c] += after.values[c] - worker->before.values[c];
    for (std::size_t r = 0; r < kRequestReasonCount; ++r)
      result.requests[r] += worker->stats.requests.get(r) - worker->requests_before[r];
    result.busy_cycles += worker->busy;
    result.harness_cycles += worker->harness;
    result.wait_cycles += worker->wait;
    result.frames_skipped_held += worker->skipped;
    for (std::size_t s = 0; s < kStages; ++s) {
      const auto stage = static_cast<stage_clock::Stage>(s);
      double cycles = stage_clock::corrected_cycles(worker->ledger, stage, worker->overhead);
      // The harness and the lap wait ran under the root stage: they are not the pipeline's.
      if (stage == stage_clock::Stage::kOther)
        cycles = std::max(0.0, cycles - static_cast<double>(worker->harness + worker->wait));
      result.stage_cycles[s] += static_cast<uint64_t>(cycles);
      result.stage_entries[s] += worker->ledger.entries[s];
      result.stage_raw_cycles += worker->ledger.cycles[s];
    }
  }
  if (writer) {
    writer->stop();
    const AuditWriterStats stats = writer->stats();
    result.audit_written = stats.records_written;
    result.audit_dropped = stats.records_dropped;
  }
  result.mbufs_leaked = rte_mempool_in_use_count(tx_pool_);
  for (rte_mbuf* mbuf : mbufs_) result.mbufs_leaked += rte_mbuf_refcnt_read(mbuf) != 1;
  result.end_clock_ns = options.clock_start_ns + (last_lap + 2) * workload_.lap_ns;
  return result;
}

ScanResult BenchRunner::scan_reference(const RuleDatabase& db, uint32_t workers, double seconds) {
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::unique_ptr<ScanJob>> jobs;
  for (uint32_t w = 0; w < workers; ++w) {
    jobs.push_back(std::make_unique<ScanJob>());
    jobs.back()->db = &db;
    jobs.back()->go = &go;
    jobs.back()->stop = &stop;
  }
  // Each worker scans its share of the lap's prompts, over and over.
  for (std::size_t i = 0; i < workload_.requests.size(); ++i)
    jobs[i % workers]->texts.push_back(&workload_.requests[i].canonical);
  launch(workers, scan_worker, jobs);
  const auto start = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true, std::memory_order_release);
  rte_eal_mp_wait_lcore();
  ScanResult result;
  result.workers = workers;
  result.wall_seconds = seconds_since(start);
  for (const auto& job : jobs) {
    if (job->failed) throw StartupError("the scan-only reference failed (Hyperscan error)");
    result.requests += job->requests;
    result.bytes += job->bytes;
    result.cycles += job->cycles;
  }
  return result;
}

}  // namespace sluice::bench
