// Who is asking: API key → verified-key cache → identity table → identity (and its tier).
//
// Keys are never stored in clear. The identity file lists SHA-256 digests of keys; the data path
// hashes a presented key with SHA-256 once, then remembers the answer (an identity, or "unknown")
// in a per-worker cache keyed by a seeded XXH3-128 fingerprint, so the steady-state cost of a
// known or repeated key is one XXH3 and one cache-set probe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice {

// SHA-256 of a key: what the identity file stores and the table is keyed by.
struct KeyDigest {
  std::array<uint8_t, 32> bytes{};

  // "sha256:" + 64 lowercase hex digits, the only form the identity file accepts.
  std::string to_string() const;
  static std::optional<KeyDigest> parse(std::string_view text);

  friend bool operator==(const KeyDigest&, const KeyDigest&) = default;
  friend auto operator<=>(const KeyDigest&, const KeyDigest&) = default;
};

// Seeded XXH3-128 of a presented key: the verified-key cache's key. Not a secret-grade hash; the
// seed is random per process so that nobody outside can aim keys at one cache set.
struct KeyFingerprint {
  uint64_t low = 0;
  uint64_t high = 0;
  friend bool operator==(const KeyFingerprint&, const KeyFingerprint&) = default;
};

KeyDigest sha256_of(std::string_view key);
KeyFingerprint fingerprint_of(std::string_view key, uint64_t seed);

// The per-process secrets: a seed for fingerprints and a 256-bit key for key ids. Drawn once
// from the OpenSSL CSPRNG on first use; every worker of the process shares them.
struct KeySecrets {
  uint64_t fingerprint_seed = 0;
  std::array<uint8_t, 32> key_id_secret{};
  static const KeySecrets& process();
};

// A short, keyed, non-reversible name of a key for the audit log: the first 48 bits of
// HMAC-SHA256(per-process secret, SHA-256(key)), printed as 12 lowercase hex digits. It tells
// requests made with the same key apart from others within one process lifetime; it cannot be
// turned back into the key, and without the secret (which never leaves memory) nobody can even
// confirm a guessed key against the log — which a plain SHA-256 prefix would allow. Not stable
// across restarts, by design. Taking the digest (not the key) lets the cold path hash the key
// once for both the table lookup and the key id.
uint64_t key_id_of(const KeyDigest& sha256, const KeySecrets& secrets = KeySecrets::process());
std::string format_key_id(uint64_t key_id);  // 12 lowercase hex digits
inline std::string key_id(std::string_view key, const KeySecrets& secrets = KeySecrets::process()) {
  return format_key_id(key_id_of(sha256_of(key), secrets));
}

// Per-identity overrides of the tier's limits; absent means "the tier's value".
struct IdentityLimits {
  std::optional<uint64_t> requests_per_second;
  std::optional<uint64_t> burst;
  std::optional<uint64_t> tokens_per_minute;
  std::optional<uint64_t> token_burst;
  std::optional<uint64_t> max_concurrent;
  std::optional<uint64_t> max_body_bytes;
  std::optional<uint64_t> max_output_tokens;
  friend bool operator==(const IdentityLimits&, const IdentityLimits&) = default;
};

struct Identity {
  std::string name;
  std::string tier;  // checked against the config's tiers when both are loaded
  std::vector<KeyDigest> keys;
  IdentityLimits limits;
  std::string tier_at;  // where `tier` was given ("identities.yaml:7:11"), for that check
};

// The identities of one loaded file: immutable once built, shared read-only by every worker
// through std::shared_ptr<const IdentityTable>, replaced whole on reload. Every table gets a
// process-unique generation, so a worker's cache can tell answers about an older table apart.
class IdentityTable {
 public:
  // Throws std::invalid_argument on a digest listed twice (the loader reports it first, with
  // file and line; this is the table's own invariant).
  explicit IdentityTable(std::vector<Identity> identities, std::string source = "");

  // Cold path only (a cache miss). A hash map: ≈ 5 ns at 100 keys, ≈ 35 ns at 100k, where a
  // sorted vector with binary search measured 18 and 240 ns (perf/key_cache_bench.cpp) — the
  // latter close to a SHA-256 of its own, and a flood of unknown keys pays it on every key.
  const Identity* find(const KeyDigest& sha256) const;

  std::span<const Identity> identities() const { return identities_; }
  size_t key_count() const { return index_.size(); }
  std::vector<std::string> tiers() const;  // sorted, unique
  uint64_t generation() const { return generation_; }
  const std::string& source() const { return source_; }

 private:
  std::vector<Identity> identities_;
  struct DigestHash {
    size_t operator()(const KeyDigest& digest) const;  // its first 8 bytes: already uniform
  };
  std::unordered_map<KeyDigest, uint32_t, DigestHash> index_;  // digest → index in identities_
  uint64_t generation_;
  std::string source_;
};

// What the cache remembers about one presented key.
struct CachedKey {
  const Identity* identity = nullptr;  // null: the key is not in the table (negative entry)
  uint64_t key_id = 0;                 // key_id_of(sha256), so the audit record costs nothing more
};

// The verified-key cache: one per worker, no locks, fixed memory.
//
// Policy: 4-way set-associative, the set chosen from the fingerprint, each set kept in recency
// order. A hit moves the entry to the front of its set. A verified key is inserted at the
// front; an unknown key (negative entry) is inserted at the back, replacing the set's least
// recently used entry. So a flood of never-repeated random keys only ever churns the last way
// of each set and cannot push out verified keys that are in use, while a repeated unknown key
// still hits (and is promoted) once cached. Entries carry the identity table's generation; a
// lookup under a newer generation misses and the entry is overwritten by the next insert.
// Lookup and insert are O(1): one set of 4 × 40 bytes.
class KeyCache {
 public:
  static constexpr size_t kWays = 4;

  // Holds at most `capacity` entries (rounded down to a multiple of kWays; at least kWays).
  explicit KeyCache(size_t capacity = 4096,
                    uint64_t fingerprint_seed = KeySecrets::process().fingerprint_seed);

  std::optional<CachedKey> lookup(const KeyFingerprint& fingerprint, uint64_t generation);
  void insert(const KeyFingerprint& fingerprint, uint64_t generation, CachedKey value);

  uint64_t seed() const { return seed_; }
  size_t capacity() const { return entries_.size(); }
  size_t size() const { return occupied_; }  // slots holding an entry (of any generation)
  size_t memory_bytes() const { return entries_.capacity() * sizeof(Entry); }

 private:
  struct Entry {
    KeyFingerprint fingerprint;
    const Identity* identity = nullptr;
    uint64_t generation = 0;  // 0: empty (table generations start at 1)
    uint64_t key_id = 0;
  };
  Entry* set_of(const KeyFingerprint& fingerprint);

  std::vector<Entry> entries_;
  size_t sets_;
  size_t occupied_ = 0;
  uint64_t seed_;
};

struct Resolved {
  const Identity* identity = nullptr;  // null: unknown key
  uint64_t key_id = 0;
  bool was_cache_hit = false;
};

// The whole identity step for one presented key: fingerprint, cache probe, and on a miss
// SHA-256 + key id + table lookup, remembered in the cache (also when unknown). Measured
// (perf/key_cache_bench.cpp, 48-byte keys, one core of a shared 2-core VM, medians): a hit
// ≈ 13 ns (16 keys) to 25 ns (1024 keys); a miss ≈ 300 ns (SHA-256 ≈ 90, key id ≈ 165).
Resolved resolve(std::string_view key, const IdentityTable& table, KeyCache& cache,
                 const KeySecrets& secrets = KeySecrets::process());

}  // namespace sluice
