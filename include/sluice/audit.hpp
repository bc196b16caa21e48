// The audit trail: one fixed-size record per request decision (admit and deny), carried from a
// worker to the audit writer thread through that worker's single-producer ring, and written as
// one JSON Lines record each, with io_uring, into size-rotated files.
//
// Shape. `AuditRecord` is a plain, trivially copyable value of exactly 640 bytes (ten cache
// lines): the worker fills one on its stack from values it already holds (no string building, no
// allocation) and `AuditRing::try_push` copies it into the ring. All text is formatted by the
// writer thread, off the data path: `format_json_line` turns a record into one line.
//
// What is never recorded. The record has no field for an API key: a key appears only as
// `key_id`, the 48-bit keyed digest from identity.hpp (`key_id_of`), which cannot be reversed.
// Keep it that way: the audit log is read by people who must not learn keys. A prompt appears
// only as its estimated token count, unless prompt capture is on (`audit.capture`, below).
//
// Prompt capture. The record stays 640 bytes: captured text travels beside it, in the worker
// ring's `AuditCapturePool` (allocated only when capture is on) — `capture_slots` slots of
// `capture_bytes` each. Admission takes a slot at a request's first prompt text, appends the
// canonical text up to the cap, and at the decision either hands the slot's index over in the
// record (`prompt_slot`) or frees it; the writer formats the text into the line and returns the
// slot through the pool's return ring. A request that finds no free slot is recorded without
// its prompt, marked `"prompt_dropped":true` and counted. No allocation, no lock, no wait.
//
// Hash chain. Every line the writer writes ends with `"prev":"<64 hex>"`: the SHA-256 of the
// previous line's bytes (without its newline), or 64 zeros (the genesis value) for the first
// line of a trail. It continues across rotation (the first line of a new file chains to the last
// line of the rotated one) and across restarts (the writer reads the file's last line at
// start). `sluicectl audit verify` walks it; docs/audit.md has the details.
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
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "sluice/config.hpp"
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

// Whether the record carries a captured prompt: none (no "prompt" key), captured (its text is in
// slot `prompt_slot` of the ring's capture pool), dropped (selected, but no slot was free:
// "prompt":null,"prompt_dropped":true).
enum class AuditPrompt : uint8_t { kNone, kCaptured, kDropped };

struct alignas(64) AuditRecord {
  static constexpr int64_t kNoMaxOutputTokens = -1;  // absent → JSON null
  static constexpr int64_t kAbsent = -1;             // a usage field not reported → null

  int64_t ts_ns = 0;      // wall clock (CLOCK_REALTIME), ns since the Unix epoch
  uint64_t sequence = 0;  // per worker, from 0: gaps in the log show drops
  uint64_t key_id = 0;    // key_id_of(): 48-bit keyed digest, written as 12 hex digits
  uint64_t request_bytes = 0;
  uint64_t prompt_tokens_est = 0;
  int64_t max_output_tokens = kNoMaxOutputTokens;
  uint64_t tokens_reserved = 0;  // taken from the token bucket at admission
  uint64_t tokens_charged = 0;   // what the bucket holds against the request in the end
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
  AuditPrompt prompt = AuditPrompt::kNone;
  uint16_t prompt_slot = 0;  // with kCaptured: the capture pool's slot holding the text

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

// Room format_json_line needs at most without a prompt: every text byte (493) escaped as \u00XX
// (6 bytes) plus the fixed part (< 700) and the chain's "prev" (75), newline included.
inline constexpr std::size_t kMaxAuditLineBytes = 4096;

// The same with up to `prompt_bytes` of captured prompt (each byte at most 6 escaped).
constexpr std::size_t max_audit_line_bytes(std::size_t prompt_bytes) {
  return kMaxAuditLineBytes + (prompt_bytes == 0 ? 0 : 6 * prompt_bytes + 64);
}

// What a line carries beside the record: the captured prompt (with record.prompt == kCaptured)
// and the hash chain's link (empty: no "prev" field, as in the examples).
struct AuditLineExtras {
  std::string_view prompt;
  bool prompt_truncated = false;
  std::string_view prev;  // 64 hex digits
};

// Formats `record` as one JSON object followed by '\n' into `out`; returns the bytes written, or 0
// when `out` is too small (never with out.size() >= max_audit_line_bytes(extras.prompt.size())).
// After "tokens_charged" come, when the record says so, "prompt":"…","prompt_truncated":false
// (or "prompt":null,"prompt_dropped":true), then "prev":"<hex>" last. Example (one line):
// {"ts":"2026-11-28T19:30:00.123Z","seq":7,"worker":0,
//  "flow":{"src":"198.18.0.1:40000","dst":"198.18.0.2:8000"},"identity":"team-a",
//  "key_id":"0a1b2c3d4e5f","tier":"gold","verdict":"deny","status":429,"reason":"rate_limited",
//  "rules":[],"method":"POST","path":"/v1/chat/completions","path_truncated":false,
//  "model":"llama-3","model_truncated":false,"request_bytes":812,"prompt_tokens_est":150,
//  "max_output_tokens":null,"tokens_reserved":0,"usage":null,"tokens_charged":0}
// Strings are escaped per RFC 8259 §7 (control characters as \u00XX) and invalid UTF-8 is
// replaced by U+FFFD one byte at a time, so the line is valid JSON whatever the record holds.
std::size_t format_json_line(const AuditRecord& record, std::span<char> out,
                             const AuditLineExtras& extras = {});

// ---- The hash chain ---------------------------------------------------------------------------

// A chained line ends with `,"prev":"` + 64 lowercase hex digits + `"}` (before its newline).
inline constexpr std::string_view kAuditPrevKey = ",\"prev\":\"";
inline constexpr std::size_t kAuditDigestHexDigits = 64;
inline constexpr std::size_t kAuditPrevSuffixBytes =
    kAuditPrevKey.size() + kAuditDigestHexDigits + 2;
// The "prev" of a trail's first line.
inline constexpr std::string_view kAuditGenesis =
    "0000000000000000000000000000000000000000000000000000000000000000";

// The "prev" a chained line (without its newline) carries, or empty when it has none.
std::string_view audit_line_prev(std::string_view line);

// The running link: the digest the next line carries as "prev". SHA-256 (OpenSSL EVP, one
// context reused: no allocation per line); ≈ 0.4 µs for a 500-byte line with SHA-NI.
class AuditChain {
 public:
  AuditChain();  // at the genesis value
  ~AuditChain();
  AuditChain(const AuditChain&) = delete;
  AuditChain& operator=(const AuditChain&) = delete;

  std::string_view prev() const { return {hex_.data(), hex_.size()}; }
  // The line just written (without its newline) becomes the previous one.
  void advance(std::string_view line);
  // Starts from a given link (64 hex digits, any case); false (unchanged) when it is not one.
  bool set_prev(std::string_view hex);

 private:
  struct Context;
  std::unique_ptr<Context> context_;
  std::array<char, kAuditDigestHexDigits> hex_;
};

// ---- Prompt capture ---------------------------------------------------------------------------

// A worker's captured prompt texts: `slots` fixed slots of `slot_bytes`, reserved at
// construction and committed by the kernel as slots are first used (free slots are reused last
// in, first out, so a light load touches few). One worker takes, fills and hands over slots (or
// frees them itself); the writer thread reads a handed-over slot's text and returns it through
// a single-producer ring, which the worker empties when its own free list runs out.
class AuditCapturePool {
 public:
  static constexpr int32_t kNoSlot = -1;
  static constexpr uint32_t kMaxSlots = 65535;  // the record's 16-bit index

  AuditCapturePool(AuditCapture mode, uint32_t slots, uint32_t slot_bytes);
  AuditCapturePool(const AuditCapturePool&) = delete;
  AuditCapturePool& operator=(const AuditCapturePool&) = delete;

  AuditCapture mode() const { return mode_; }
  uint32_t slot_bytes() const { return slot_bytes_; }
  uint32_t slots() const { return slots_; }

  // Worker. A free slot, emptied, or kNoSlot. When none is free and a refill is set (a replay:
  // the writer's flush), calls it once and looks again.
  int32_t acquire() {
    if (free_.empty()) reclaim();
    if (free_.empty() && refill_) {
      refill_();
      reclaim();
    }
    if (free_.empty()) return kNoSlot;
    const uint16_t slot = free_.back();
    free_.pop_back();
    length_[slot] = 0;
    return slot;
  }
  // Appends canonical text; past slot_bytes the rest is cut (on a UTF-8 sequence start) and the
  // slot marked truncated.
  void append(uint16_t slot, std::string_view text) {
    uint32_t& length = length_[slot];
    const uint32_t used = length & kLengthMask;
    if ((length & kTruncated) != 0) return;
    std::size_t n = text.size();
    if (used + n > slot_bytes_) {
      n = slot_bytes_ - used;
      // Back off over continuation bytes (at most 3) so the cut lands on a sequence start.
      for (int i = 0; i < 3 && n > 0 && (static_cast<uint8_t>(text[n]) & 0xC0) == 0x80; ++i) --n;
      length = kTruncated;
    }
    std::memcpy(text_.get() + std::size_t{slot} * slot_bytes_ + used, text.data(), n);
    length = (length & kTruncated) | (used + static_cast<uint32_t>(n));
  }
  // A slot not handed over goes back to the free list.
  void release(uint16_t slot) { free_.push_back(slot); }
  // A record selected for capture went without its prompt (no slot was free).
  void count_dropped() {
    dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void set_refill(std::function<void()> refill) { refill_ = std::move(refill); }

  // Writer. The text of a handed-over slot, then its return.
  std::string_view text(uint16_t slot) const {
    return {text_.get() + std::size_t{slot} * slot_bytes_, length_[slot] & kLengthMask};
  }
  bool truncated(uint16_t slot) const { return (length_[slot] & kTruncated) != 0; }
  void give_back(uint16_t slot) {
    const uint64_t head = returned_head_.load(std::memory_order_relaxed);
    returned_[head & returned_mask_] = slot;  // never full: at most slots_ are out
    returned_head_.store(head + 1, std::memory_order_release);
  }

  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  static constexpr uint32_t kTruncated = 1u << 31;
  static constexpr uint32_t kLengthMask = kTruncated - 1;
  static_assert(std::atomic<uint64_t>::is_always_lock_free);

  void reclaim() {
    const uint64_t head = returned_head_.load(std::memory_order_acquire);
    for (; returned_tail_ != head; ++returned_tail_)
      free_.push_back(returned_[returned_tail_ & returned_mask_]);
  }

  const AuditCapture mode_;
  const uint32_t slots_;
  const uint32_t slot_bytes_;
  std::unique_ptr<char[]> text_;        // slots × slot_bytes, left uninitialised
  std::unique_ptr<uint32_t[]> length_;  // bytes used, | kTruncated
  std::vector<uint16_t> free_;          // the worker's, capacity slots_ (never grows)
  std::function<void()> refill_;
  std::atomic<uint64_t> dropped_{0};  // written by the worker
  uint64_t returned_tail_ = 0;        // the worker's
  std::unique_ptr<uint16_t[]> returned_;
  std::size_t returned_mask_ = 0;
  alignas(64) std::atomic<uint64_t> returned_head_{0};  // written by the writer
};

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

  // Producer, live data path: a refused record's captured prompt slot goes back to the pool.
  bool push_or_discard(const AuditRecord& record) {
    if (try_push(record)) return true;
    if (record.prompt == AuditPrompt::kCaptured && capture_) capture_->release(record.prompt_slot);
    return false;
  }

  std::size_t capacity() const { return capacity_; }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t pushed() const { return head_.load(std::memory_order_relaxed); }  // accepted records

  // Prompt capture for this ring's worker (before the writer starts); null when off.
  void enable_capture(AuditCapture mode, uint32_t slots, uint32_t slot_bytes) {
    capture_ = mode == AuditCapture::kNone
                   ? nullptr
                   : std::make_unique<AuditCapturePool>(mode, slots, slot_bytes);
  }
  AuditCapturePool* capture() const { return capture_.get(); }

 private:
  std::unique_ptr<AuditCapturePool> capture_;
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
  uint64_t write_errors = 0;     // failed writes, opens or renames
  uint64_t format_errors = 0;    // records that did not fit a line (should stay 0)
  uint64_t prompts_dropped = 0;  // records selected for capture written without their prompt
  uint64_t torn_bytes_cut = 0;   // at start: a last line without its newline (a crash), cut off
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

  // Opens NAME (appending to what is there: the chain goes on from its last complete line, and
  // an incomplete last line, a write torn by a crash, is cut off), sets up io_uring (or the
  // pwrite fallback) and starts the thread. Throws std::runtime_error naming the file and the
  // error when it cannot open or read it.
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
  uint64_t resume_chain(int fd, AuditChain& chain);

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
      write_errors_{0}, format_errors_{0}, torn_bytes_cut_{0};
};

}  // namespace sluice
