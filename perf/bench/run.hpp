// Running a workload through the real worker pipeline on N lcores, and the scan-only reference.
#pragma once

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sluice/config.hpp"
#include "sluice/counters.hpp"
#include "sluice/policy.hpp"
#include "sluice/request_reason.hpp"
#include "sluice/stage_clock.hpp"
#include "workload.hpp"

namespace sluice::bench {

inline constexpr std::size_t kStages = static_cast<std::size_t>(stage_clock::Stage::kCount);

struct RunOptions {
  uint32_t workers = 1;
  double seconds = 10;
  std::string audit_path = "/dev/null";            // "none": no audit records at all
  bool progress = true;                            // a live line on stderr, once a second
  const std::atomic<bool>* interrupted = nullptr;  // set (SIGINT, SIGTERM): end the run early
  uint64_t clock_start_ns = 1'000'000'000;
  uint64_t warmup_laps = 1;  // untimed laps first (at least 1)
};

struct RunResult {
  uint32_t workers = 0;
  double wall_seconds = 0;
  uint64_t laps = 0;         // timed laps completed by the slowest worker
  CounterSnapshot counters;  // the timed period only
  std::array<uint64_t, kRequestReasonCount> requests{};
  uint64_t busy_cycles = 0;     // in the pipeline: process_burst, flow expiry, policy refresh
  uint64_t harness_cycles = 0;  // re-arming frames (what a NIC's RX path would cost instead)
  uint64_t wait_cycles = 0;     // a worker a lap ahead, waiting for the slowest
  // sluice-bench-staged only: cycles per stage less the counters' own cost, scopes entered, and
  // all cycles counted (the harness and the lap wait included).
  std::array<uint64_t, kStages> stage_cycles{};
  std::array<uint64_t, kStages> stage_entries{};
  uint64_t stage_raw_cycles = 0;
  uint64_t audit_written = 0, audit_dropped = 0;
  uint64_t frames_skipped_held = 0;  // the pipeline still held the frame's mbuf: not sent again
  uint64_t mbufs_leaked = 0;         // generated frames not back in their pool after the run
  uint64_t end_clock_ns = 0;         // the simulated clock when the run ended
  uint64_t packets() const;
  uint64_t bytes() const;
  uint64_t decided() const;  // requests admission decided (admitted or refused)
};

struct ScanResult {
  uint32_t workers = 0;
  double wall_seconds = 0;
  uint64_t requests = 0;
  uint64_t bytes = 0;
  uint64_t cycles = 0;  // summed over workers
};

// Owns the frames' mbufs (one per frame of a lap, never freed: the pipeline's free drops a
// reference the runner took) and the pool the pipeline builds its own frames from.
class BenchRunner {
 public:
  BenchRunner(const Config& config, const Workload& workload, PolicySource& policy);
  ~BenchRunner();
  RunResult run(const RunOptions& options);
  ScanResult scan_reference(const RuleDatabase& db, uint32_t workers, double seconds);

 private:
  const Config& config_;
  const Workload& workload_;
  PolicySource& policy_;
  rte_mempool* frame_pool_ = nullptr;
  rte_mempool* tx_pool_ = nullptr;
  std::vector<rte_mbuf*> mbufs_;       // by frame
  std::vector<uint32_t> stamped_lap_;  // by frame: the lap its bytes are set for
};

// EAL for the bench: no devices, no hugepages, main lcore 0 and `workers` worker lcores (on
// CPUs 1.., wrapping onto the CPUs there are), `memory_mb` of memory.
void init_bench_eal(uint32_t workers, uint32_t memory_mb);

}  // namespace sluice::bench
