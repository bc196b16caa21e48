// The identity table (immutable, shared) and the verified-key cache (per worker), and resolve(),
// the identity step of the data path that ties them together.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>

#include "sluice/identity.hpp"

namespace sluice {

size_t IdentityTable::DigestHash::operator()(const KeyDigest& digest) const {
  size_t hash;
  std::memcpy(&hash, digest.bytes.data(), sizeof hash);
  return hash;
}

IdentityTable::IdentityTable(std::vector<Identity> identities, std::string source)
    : identities_(std::move(identities)), source_(std::move(source)) {
  static std::atomic<uint64_t> next_generation{1};  // 0 marks an empty cache slot
  generation_ = next_generation.fetch_add(1, std::memory_order_relaxed);
  for (uint32_t i = 0; i < identities_.size(); ++i) {
    for (const KeyDigest& digest : identities_[i].keys) {
      if (!index_.emplace(digest, i).second) {
        throw std::invalid_argument("identity table: key digest " + digest.to_string() +
                                    " is listed twice");
      }
    }
  }
}

const Identity* IdentityTable::find(const KeyDigest& sha256) const {
  const auto it = index_.find(sha256);
  return it == index_.end() ? nullptr : &identities_[it->second];
}

std::vector<std::string> IdentityTable::tiers() const {
  std::vector<std::string> tiers;
  for (const Identity& identity : identities_) tiers.push_back(identity.tier);
  std::sort(tiers.begin(), tiers.end());
  tiers.erase(std::unique(tiers.begin(), tiers.end()), tiers.end());
  return tiers;
}

// Invariant: in every set the occupied slots form a prefix, most recently used first.
KeyCache::KeyCache(size_t capacity, uint64_t fingerprint_seed)
    : sets_(std::max<size_t>(1, capacity / kWays)), seed_(fingerprint_seed) {
  entries_.resize(sets_ * kWays);
}

KeyCache::Entry* KeyCache::set_of(const KeyFingerprint& fingerprint) {
  // Lemire's fast range: maps the 64-bit hash onto [0, sets_) without a division.
  __extension__ using Wide = unsigned __int128;
  const auto set = static_cast<size_t>((static_cast<Wide>(fingerprint.high) * sets_) >> 64);
  return &entries_[set * kWays];
}

std::optional<CachedKey> KeyCache::lookup(const KeyFingerprint& fingerprint, uint64_t generation) {
  Entry* set = set_of(fingerprint);
  for (size_t i = 0; i < kWays; ++i) {
    if (set[i].generation == 0) break;
    if (set[i].fingerprint == fingerprint && set[i].generation == generation) {
      const Entry hit = set[i];
      std::copy_backward(set, set + i, set + i + 1);  // promote to the front
      set[0] = hit;
      return CachedKey{hit.identity, hit.key_id};
    }
  }
  return std::nullopt;
}

void KeyCache::insert(const KeyFingerprint& fingerprint, uint64_t generation, CachedKey value) {
  Entry* set = set_of(fingerprint);
  size_t used = 0;
  while (used < kWays && set[used].generation != 0) ++used;
  // An entry for the same key (say, from an older generation) is replaced, never duplicated.
  for (size_t i = 0; i < used; ++i) {
    if (set[i].fingerprint == fingerprint) {
      std::copy(set + i + 1, set + used, set + i);
      set[--used] = Entry{};
      --occupied_;
      break;
    }
  }
  const Entry entry{fingerprint, value.identity, generation, value.key_id};
  if (value.identity != nullptr) {  // verified: front of the set; the last entry falls off
    if (used < kWays) ++occupied_;
    std::copy_backward(set, set + std::min(used, kWays - 1), set + std::min(used + 1, kWays));
    set[0] = entry;
  } else if (used < kWays) {  // unknown: back of the set
    set[used] = entry;
    ++occupied_;
  } else {
    set[kWays - 1] = entry;
  }
}

Resolved resolve(std::string_view key, const IdentityTable& table, KeyCache& cache,
                 const KeySecrets& secrets) {
  const KeyFingerprint fingerprint = fingerprint_of(key, cache.seed());
  const uint64_t generation = table.generation();
  if (const std::optional<CachedKey> hit = cache.lookup(fingerprint, generation))
    return Resolved{hit->identity, hit->key_id, true};
  const KeyDigest digest = sha256_of(key);
  const CachedKey answer{table.find(digest), key_id_of(digest, secrets)};
  cache.insert(fingerprint, generation, answer);
  return Resolved{answer.identity, answer.key_id, false};
}

}  // namespace sluice
