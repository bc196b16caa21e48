// The audit trail: one fixed-size record per request decision (admit and deny), carried from a
// worker to the audit writer thread through that worker's single-producer ring, and written as
// one JSON Lines record each, with io_uring, into size-rotated files.
//
// Shape. `AuditRecord` is a plain, trivially copyable value of exactly 640 bytes (ten cache
// lines): the worker fills one on its stack from values it already holds (no string building, no
// allocation) and `AuditRing::try_push` copies it into the ring. All text is formatted by the
// writer thread, off the data path: `format_json_line` turns a record into one line.
//
// What is never recorded. The record has no field for an API key or for any part of a prompt:
// a key appears only as `key_id`, the 48-bit keyed digest from identity.hpp (`key_id_of`), which
// cannot be reversed, and a prompt only as its estimated token count. Keep it that way: the
// audit log is read by people who must not learn either.
//
// Loss. A full ring is counted (`AuditRing::dropped`) and the record discarded; a worker never
// blocks on the audit trail. Records that reached a ring before `AuditWriter::stop()` are all
// written (or counted as write errors).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "sluice/endpoint.hpp"

namespace sluice {

// A bounded, length-prefixed text field. `assign` truncates at N bytes, backing off so as not to
// cut a UTF-8 sequence in two, and says whether it truncated. Bytes are kept as given; invalid
// UTF-8 is replaced when the record is formatted, not here (the data path does not validate).
template <std::size_t N>
struct AuditText {
  static_assert(N > 0 && N <= 255, "the length is one byte");
  uint8_t size = 0;
  char bytes[N] = {};

  bool assign(std::string_view text) {
    std::size_t n = text.size();
    bool truncated = false;
    if (n > N) {
      truncated = true;
      n = N;
      // Back off over continuation bytes (at most 3) so the cut lands on a sequence start.
      for (int i = 0; i < 3 && n > 0 && (static_cast<uint8_t>(text[n]) & 0xC0) == 0x80; ++i) --n;
    }
    std::memcpy(bytes, text.data(), n);
    size = static_cast<uint8_t>(n);
    return truncated;
  }
  std::string_view view() const { return {bytes, std::min<std::size_t>(size, N)}; }
  bool empty() const { return size == 0; }
};

// One end of the flow (endpoint.hpp): family 4 or 6 (0: unknown → JSON null).
using AuditEndpoint = Endpoint;

// admit and deny: a request's decision. escalate: an identity demoted or suspended (graduated
// response) — reason "demoted" or "suspended", tier the one it now has (null when suspended),
// rules the flag rules of the request that tipped it, "until" when it expires.
enum class AuditVerdict : uint8_t { admit, deny, escalate };

struct alignas(64) AuditRecord {
  static constexpr int64_t kNoMaxOutputTokens = -1;  // absent → JSON null
  static constexpr int64_t kAbsent = -1;             // a usage field not reported → null

  int64_t ts_ns = 0;      // wall clock (CLOCK_REALTIME), ns since the Unix epoch
  uint64_t sequence = 0;  // per worker, from 0: gaps in the log show drops
  uint64_t key_id = 0;    // key_id_of(): 48-bit keyed digest, written as 12 hex digits
  uint64_t request_bytes = 0;
  uint64_t prompt_tokens_est = 0;
  int64_t max_output_tokens = kNoMaxOutputTokens;
  uint64_t tokens_reserved = 0;           // taken from the token bucket at admission
  uint64_t tokens_charged = 0;            // what the bucket holds against the request in the end
  union {
    int64_t usage_prompt_tokens = kAbsent;  // as the response's `usage` reported them
    int64_t until_ns;  // an escalate record (which has no usage): when it expires, Unix ns
  };
  int64_t usage_completion_tokens = kAbsent;
  int64_t usage_total_tokens = kAbsent;
  AuditEndpoint src;
  AuditEndpoint dst;
  uint16_t worker = 0;
  uint16_t status = 0;  // HTTP status sent (admit: 0 or the upstream's, deny: ours)
  AuditVerdict verdict = AuditVerdict::deny;
  bool has_key_id = false;
  bool path_truncated = false;
  bool model_truncated = false;
  AuditText<48> identity;  // empty → null (no identity matched)
  AuditText<24> tier;      // empty → null
  AuditText<48> reason;    // reason name, e.g. "http_body_too_large" (request_reason.hpp)
  AuditText<8> method;
  bool usage_reported = false;  // the response carried a usage object → "usage":{…}, else null
  AuditText<141> path;          // request target; path_truncated when cut (141)
  AuditText<64> model;
  // Ids of the rules that matched, '\n'-separated, the deciding rule first; ids that do not fit
  // are left out (add_rule says so).
  AuditText<160> rules;  // empty → null; model_truncated when cut

  void set_path(std::string_view text) { path_truncated = path.assign(text); }
  void set_model(std::string_view text) { model_truncated = model.assign(text); }
  // Appends a rule id if it fits whole; false when it does not (the record keeps the others).
  bool add_rule(std::string_view id) {
    const std::size_t used = rules.size;
    const std::size_t need = id.size() + (used > 0 ? 1 : 0);
    if (id.empty() || used + need > sizeof rules.bytes) return false;
    if (used > 0) rules.bytes[used] = '\n';
    std::memcpy(rules.bytes + used + (used > 0 ? 1 : 0), id.data(), id.size());
    rules.size = static_cast<uint8_t>(used + need);
    return true;
  }
};
static_assert(std::is_trivially_copyable_v<AuditRecord>);
static_assert(sizeof(AuditRecord) == 640, "the ring slot size is part of the design");

// Room format_json_line needs at most: every text byte (493) escaped as \u00XX (6 bytes) plus
// the fixed part (< 700), newline included.
inline constexpr std::size_t kMaxAuditLineBytes = 4096;

// Formats `record` as one JSON object followed by '\n' into `out`; returns the bytes written, or 0
// when `out` is too small (never with out.size() >= kMaxAuditLineBytes). Example (one line):
// {"ts":"2026-11-28T19:30:00.123Z","seq":7,"worker":0,
//  "flow":{"src":"198.18.0.1:40000","dst":"198.18.0.2:8000"},"identity":"team-a",
//  "key_id":"0a1b2c3d4e5f","tier":"gold","verdict":"deny","status":429,"reason":"rate_limited",
//  "rules":[],"method":"POST","path":"/v1/chat/completions","path_truncated":false,
//  "model":"llama-3","model_truncated":false,"request_bytes":812,"prompt_tokens_est":150,
//  "max_output_tokens":null,"tokens_reserved":0,"usage":null,"tokens_charged":0}
// Strings are escaped per RFC 8259 §7 (control characters as \u00XX) and invalid UTF-8 is
// replaced by U+FFFD one byte at a time, so the line is valid JSON whatever the record holds.
std::size_t format_json_line(const AuditRecord& record, std::span<char> out);

// Single-producer single-consumer ring of records, one per worker: the worker pushes, the audit
// writer thread pops. Lock-free and wait-free on both sides; head and tail live on their own
// cache lines, each side keeps a cached copy of the other's index so that a push or pop touches
// the shared line only when its cached view says full or empty.
class AuditRing {
 public:
  // capacity: a power of two >= 2.
  explicit AuditRing(std::size_t capacity);
  AuditRing(const AuditRing&) = delete;
  AuditRing& operator=(const AuditRing&) = delete;

  // Producer. False when full: the record is discarded, counted in dropped(); nothing already in
  // the ring is overwritten.
  bool try_push(const AuditRecord& record) {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    if (head - cached_tail_ >= capacity_) {
      cached_tail_ = tail_.load(std::memory_order_acquire);
      if (head - cached_tail_ >= capacity_) {
        // Only the producer writes dropped_: a load and a store, no read-modify-write.
        dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return false;
      }
    }
    slots_[head & mask_] = record;
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  // Consumer. Copies up to out.size() records, oldest first; returns how many.
  std::size_t pop_batch(std::span<AuditRecord> out) {
    const uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (cached_head_ == tail) cached_head_ = head_.load(std::memory_order_acquire);
    const std::size_t n = std::min<std::size_t>(out.size(), cached_head_ - tail);
    for (std::size_t i = 0; i < n; ++i) out[i] = slots_[(tail + i) & mask_];
    if (n > 0) tail_.store(tail + n, std::memory_order_release);
    return n;
  }

  std::size_t capacity() const { return capacity_; }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t pushed() const { return head_.load(std::memory_order_relaxed); }  // accepted records

 private:
  static_assert(std::atomic<uint64_t>::is_always_lock_free);
  const std::size_t capacity_;
  const std::size_t mask_;
  std::unique_ptr<AuditRecord[]> slots_;
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the producer
  uint64_t cached_tail_ = 0;                   // producer's view of tail_
  std::atomic<uint64_t> dropped_{0};           // written by the producer
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the consumer
  uint64_t cached_head_ = 0;                   // consumer's view of head_
};

struct AuditWriterConfig {
  std::string path;                        // NAME; rotated files are NAME.1 (newest) … NAME.keep
  uint64_t max_file_bytes = 256ull << 20;  // a file never grows past this (unless one line does)
  unsigned keep = 8;                       // rotated files kept; older ones are deleted
  std::size_t buffer_bytes = 256 << 10;    // one write; >= 2 * kMaxAuditLineBytes
  unsigned buffers = 4;                    // writes in flight at most (io_uring queue depth)
  unsigned idle_sleep_us = 1000;           // writer's nap when every ring is empty
  bool force_pwrite = false;               // skip io_uring (tests of the fallback)
};

enum class AuditBackend : uint8_t { io_uring, pwrite };

struct AuditWriterStats {
  uint64_t records_written = 0;  // lines whose write completed
  uint64_t records_dropped = 0;  // sum of the rings' dropped(): full ring at push time
  uint64_t records_lost = 0;     // lines in writes that failed (see write_errors)
  uint64_t bytes_written = 0;
  uint64_t rotations = 0;
  uint64_t write_errors = 0;   // failed writes, opens or renames
  uint64_t format_errors = 0;  // records that did not fit a line (should stay 0)
};

// Owns one thread that drains the registered rings into JSON Lines files. Lifecycle:
// add_ring()… → start() → (workers push) → flush() as needed → stop() (also in the destructor).
class AuditWriter {
 public:
  explicit AuditWriter(AuditWriterConfig config);
  ~AuditWriter();
  AuditWriter(const AuditWriter&) = delete;
  AuditWriter& operator=(const AuditWriter&) = delete;

  // Before start(). The ring must outlive the writer's stop().
  void add_ring(AuditRing& ring);

  // Opens NAME (appending to what is there), sets up io_uring (or the pwrite fallback) and starts
  // the thread. Throws std::runtime_error naming the file and the error when it cannot open it.
  void start();

  // Blocks until every record pushed before the call is written (its write completed).
  void flush();

  // Drains every ring, writes everything, joins the thread, closes the file. Idempotent.
  void stop();

  AuditWriterStats stats() const;
  AuditBackend backend() const { return backend_.load(std::memory_order_acquire); }
  // "io_uring" or "pwrite (io_uring_queue_init: Operation not permitted)" and the like.
  std::string backend_description() const;

 private:
  struct Impl;
  void run();

  AuditWriterConfig config_;
  std::vector<AuditRing*> rings_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<AuditBackend> backend_{AuditBackend::pwrite};
  std::atomic<bool> stop_requested_{false};
  bool started_ = false;

  mutable std::mutex mutex_;  // guards the two below and backend_note_
  std::condition_variable flush_done_;
  uint64_t flush_requested_ = 0;  // generations
  uint64_t flush_completed_ = 0;
  bool writer_exited_ = false;  // the thread has finished its last pass
  std::string backend_note_;

  std::atomic<uint64_t> records_written_{0}, records_lost_{0}, bytes_written_{0}, rotations_{0},
      write_errors_{0}, format_errors_{0};
};

}  // namespace sluice
