// Where a worker's cycles go, by data-path stage: sluice-bench's breakdown.
//
// SLUICE_STAGE(kScan) at the top of a block charges the cycles until the block ends to that
// stage, and pauses the stage it interrupted: the time is exclusive, so a canonicaliser that
// calls the scanner through its sink is charged only for its own work. One TSC read on entry and
// one on exit (≈ 25 cycles each on x86-64), kept in thread-local counters, one set per worker.
//
// It is compiled in only where SLUICE_STAGE_CLOCK is defined: the `_staged` copies of the
// libraries that sluice-bench-staged links (src/meson.build). Everywhere else SLUICE_STAGE is
// nothing, and the appliance pays nothing for it.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#else
#include <chrono>
#endif

namespace sluice::stage_clock {

// In data-path order. kOther: the pipeline's own loop, counters and whatever no stage claims.
enum class Stage : uint8_t {
  kOther,
  kClassify,      // frame parse, IPv4 and TCP checksums
  kFlow,          // flow table lookup, insert, touch, expiry
  kTcp,           // TCP tracking: sequence space, retransmission checks, reassembly
  kHttp,          // HTTP/1.1 framing, content decoding, JSON prompt and usage extraction
  kIdentity,      // API key → identity (verified-key cache, SHA-256 on a miss)
  kLimit,         // the admission decision: tier policy, GCRA buckets, concurrency
  kCanonicalise,  // Unicode canonicalisation of prompt and completion text
  kScan,          // Hyperscan stream scan of rules
  kEnforce,       // acting on the verdict: forward, denial or RST frames, the audit record
  kCount,
};

inline constexpr std::array<std::string_view, static_cast<std::size_t>(Stage::kCount)> kNames = {
    "other",    "classify", "flow",         "tcp",  "http",
    "identity", "limit",    "canonicalise", "scan", "enforce"};

inline uint64_t read_cycles() {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

using PerStage = std::array<uint64_t, static_cast<std::size_t>(Stage::kCount)>;

struct Ledger {
  PerStage cycles{};
  PerStage entries{};     // scopes of the stage entered
  PerStage interrupts{};  // scopes of other stages entered while the stage ran
  Stage current = Stage::kOther;
  uint64_t since = 0;
};

// One per thread: each worker lcore charges its own.
inline thread_local Ledger ledger;

// Starts charging `kOther` from now, with every count at zero.
inline void reset() {
  ledger = Ledger{};
  ledger.since = read_cycles();
}

// Charges the time since the last switch to the current stage (call before reading `cycles`).
inline void settle() {
  const uint64_t now = read_cycles();
  ledger.cycles[static_cast<std::size_t>(ledger.current)] += now - ledger.since;
  ledger.since = now;
}

class Scope {
 public:
  explicit Scope(Stage stage) : outer_(ledger.current) {
    settle();
    ++ledger.entries[static_cast<std::size_t>(stage)];
    ++ledger.interrupts[static_cast<std::size_t>(outer_)];
    ledger.current = stage;
  }
  ~Scope() {
    settle();
    ledger.current = outer_;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Stage outer_;
};

// What one scope costs the counts: `inside` cycles land in the entered stage, `outside` in the
// one it interrupted (the TSC reads and the bookkeeping). Measured on empty scopes; leaves the
// ledger reset.
struct Overhead {
  double inside = 0;
  double outside = 0;
};
inline Overhead calibrate() {
  constexpr int kRounds = 200'000;
  reset();
  for (int i = 0; i < kRounds; ++i) {
    const Scope scope(Stage::kClassify);
  }
  settle();
  const Overhead overhead{
      static_cast<double>(ledger.cycles[static_cast<std::size_t>(Stage::kClassify)]) / kRounds,
      static_cast<double>(ledger.cycles[static_cast<std::size_t>(Stage::kOther)]) / kRounds};
  reset();
  return overhead;
}

// A stage's cycles less what its own scopes and the scopes nested in it cost the counts.
inline double corrected_cycles(const Ledger& l, Stage stage, const Overhead& overhead) {
  const auto s = static_cast<std::size_t>(stage);
  const double own = static_cast<double>(l.cycles[s]) -
                     static_cast<double>(l.entries[s]) * overhead.inside -
                     static_cast<double>(l.interrupts[s]) * overhead.outside;
  return own > 0 ? own : 0;
}

}  // namespace sluice::stage_clock

#define SLUICE_STAGE_CONCAT2(a, b) a##b
#define SLUICE_STAGE_CONCAT(a, b) SLUICE_STAGE_CONCAT2(a, b)
#ifdef SLUICE_STAGE_CLOCK
#define SLUICE_STAGE(stage)                               \
  const ::sluice::stage_clock::Scope SLUICE_STAGE_CONCAT( \
      sluice_stage_, __LINE__)(::sluice::stage_clock::Stage::stage)
#else
#define SLUICE_STAGE(stage) static_cast<void>(0)
#endif
