// Key digests: SHA-256 (OpenSSL EVP) for the identity table, seeded XXH3-128 for the
// verified-key cache, HMAC-SHA256 for the audit log's key id.
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <xxhash.h>

#include <cstring>
#include <stdexcept>

#include "sluice/identity.hpp"

namespace sluice {
namespace {

constexpr std::string_view kDigestPrefix = "sha256:";
constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is refused: one spelling per digest
}

// Fetched once: EVP_Digest with the implicit EVP_sha256() re-resolves the provider on every
// call in OpenSSL 3, which costs about as much as hashing a short key.
const EVP_MD* sha256_md() {
  static EVP_MD* md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) throw std::runtime_error("OpenSSL: SHA256 is not available");
    return fetched;
  }();
  return md;
}

// SHA-256 of a ‖ b with one EVP_MD_CTX per thread, reused: EVP_Digest allocates and frees a
// context on every call, which is a third of the cost of hashing a short key.
KeyDigest sha256_of_parts(std::string_view a, std::string_view b) {
  struct Context {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Context() { EVP_MD_CTX_free(ctx); }
  };
  thread_local const Context context;
  KeyDigest digest;
  unsigned int length = 0;
  if (context.ctx == nullptr || EVP_DigestInit_ex2(context.ctx, sha256_md(), nullptr) != 1 ||
      EVP_DigestUpdate(context.ctx, a.data(), a.size()) != 1 ||
      EVP_DigestUpdate(context.ctx, b.data(), b.size()) != 1 ||
      EVP_DigestFinal_ex(context.ctx, digest.bytes.data(), &length) != 1 ||
      length != digest.bytes.size()) {
    throw std::runtime_error("OpenSSL: SHA-256 failed");
  }
  return digest;
}

std::string_view view_of(const uint8_t* bytes, size_t size) {
  return {reinterpret_cast<const char*>(bytes), size};
}

}  // namespace

std::string KeyDigest::to_string() const {
  std::string text(kDigestPrefix);
  text.reserve(kDigestPrefix.size() + 64);
  for (uint8_t byte : bytes) {
    text += kHex[byte >> 4];
    text += kHex[byte & 0xf];
  }
  return text;
}

std::optional<KeyDigest> KeyDigest::parse(std::string_view text) {
  if (text.size() != kDigestPrefix.size() + 64 || !text.starts_with(kDigestPrefix))
    return std::nullopt;
  text.remove_prefix(kDigestPrefix.size());
  KeyDigest digest;
  for (size_t i = 0; i < digest.bytes.size(); ++i) {
    const int high = hex_value(text[2 * i]);
    const int low = hex_value(text[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    digest.bytes[i] = static_cast<uint8_t>(high << 4 | low);
  }
  return digest;
}

KeyDigest sha256_of(std::string_view key) { return sha256_of_parts(key, {}); }

KeyFingerprint fingerprint_of(std::string_view key, uint64_t seed) {
  const XXH128_hash_t hash = XXH3_128bits_withSeed(key.data(), key.size(), seed);
  return KeyFingerprint{hash.low64, hash.high64};
}

const KeySecrets& KeySecrets::process() {
  static const KeySecrets secrets = [] {
    KeySecrets drawn;
    uint8_t seed[sizeof drawn.fingerprint_seed];
    if (RAND_bytes(seed, sizeof seed) != 1 ||
        RAND_bytes(drawn.key_id_secret.data(), static_cast<int>(drawn.key_id_secret.size())) != 1)
      throw std::runtime_error("OpenSSL: RAND_bytes failed; no per-process key secrets");
    std::memcpy(&drawn.fingerprint_seed, seed, sizeof seed);
    return drawn;
  }();
  return secrets;
}

// HMAC-SHA256 (RFC 2104) written out over the digest the data path already has: two SHA-256
// of 96 bytes (the 32-byte secret padded to the 64-byte block, then 32 bytes), ≈ 2 × 0.15 µs,
// where OpenSSL's one-shot HMAC() costs ≈ 1.4 µs for setting up its EVP_MAC machinery each time.
// Checked against OpenSSL's HMAC() in identity_test.
uint64_t key_id_of(const KeyDigest& sha256, const KeySecrets& secrets) {
  constexpr size_t kBlock = 64;
  uint8_t inner_pad[kBlock] = {};
  uint8_t outer_pad[kBlock] = {};
  std::memcpy(inner_pad, secrets.key_id_secret.data(), secrets.key_id_secret.size());
  std::memcpy(outer_pad, secrets.key_id_secret.data(), secrets.key_id_secret.size());
  for (size_t i = 0; i < kBlock; ++i) {
    inner_pad[i] ^= 0x36;
    outer_pad[i] ^= 0x5c;
  }
  const KeyDigest inner = sha256_of_parts(view_of(inner_pad, kBlock),
                                          view_of(sha256.bytes.data(), sha256.bytes.size()));
  const KeyDigest mac = sha256_of_parts(view_of(outer_pad, kBlock),
                                        view_of(inner.bytes.data(), inner.bytes.size()));
  uint64_t id = 0;
  for (int i = 0; i < 6; ++i) id = id << 8 | mac.bytes[static_cast<size_t>(i)];  // first 48 bits
  return id;
}

std::string format_key_id(uint64_t key_id) {
  std::string text(12, '0');
  for (int i = 11; i >= 0; --i) {
    text[static_cast<size_t>(i)] = kHex[key_id & 0xf];
    key_id >>= 4;
  }
  return text;
}

}  // namespace sluice
