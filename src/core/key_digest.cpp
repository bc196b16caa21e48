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

KeyDigest sha256_of(std::string_view key) {
  return sha256_of_parts(key, {});
}

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

// HMAC-SHA256 (RFC 2104) written out over the digest the data path already has. Each thread
// keeps the SHA-256 states after absorbing the padded secret (secret ⊕ ipad, secret ⊕ opad),
// so one key id costs two single-block compressions and two context copies: ≈ 0.2 µs, where
// OpenSSL's one-shot HMAC() measured ≈ 1.4 µs (it builds its EVP_MAC machinery every time).
// Checked against OpenSSL's HMAC() in identity_test.
uint64_t key_id_of(const KeyDigest& sha256, const KeySecrets& secrets) {
  struct Pads {
    EVP_MD_CTX* inner = EVP_MD_CTX_new();
    EVP_MD_CTX* outer = EVP_MD_CTX_new();
    EVP_MD_CTX* work = EVP_MD_CTX_new();
    std::array<uint8_t, 32> secret{};
    bool ready = false;
    ~Pads() {
      EVP_MD_CTX_free(inner);
      EVP_MD_CTX_free(outer);
      EVP_MD_CTX_free(work);
    }
  };
  thread_local Pads pads;
  const auto fail = [] { throw std::runtime_error("OpenSSL: HMAC-SHA256 failed"); };
  if (pads.inner == nullptr || pads.outer == nullptr || pads.work == nullptr) fail();
  if (!pads.ready || pads.secret != secrets.key_id_secret) {  // once per thread and secret
    constexpr size_t kBlock = 64;
    uint8_t inner_pad[kBlock] = {};
    uint8_t outer_pad[kBlock] = {};
    std::memcpy(inner_pad, secrets.key_id_secret.data(), secrets.key_id_secret.size());
    std::memcpy(outer_pad, secrets.key_id_secret.data(), secrets.key_id_secret.size());
    for (size_t i = 0; i < kBlock; ++i) {
      inner_pad[i] ^= 0x36;
      outer_pad[i] ^= 0x5c;
    }
    if (EVP_DigestInit_ex2(pads.inner, sha256_md(), nullptr) != 1 ||
        EVP_DigestUpdate(pads.inner, inner_pad, kBlock) != 1 ||
        EVP_DigestInit_ex2(pads.outer, sha256_md(), nullptr) != 1 ||
        EVP_DigestUpdate(pads.outer, outer_pad, kBlock) != 1) {
      fail();
    }
    pads.secret = secrets.key_id_secret;
    pads.ready = true;
  }
  KeyDigest inner;
  KeyDigest mac;
  unsigned int length = 0;
  if (EVP_MD_CTX_copy_ex(pads.work, pads.inner) != 1 ||
      EVP_DigestUpdate(pads.work, sha256.bytes.data(), sha256.bytes.size()) != 1 ||
      EVP_DigestFinal_ex(pads.work, inner.bytes.data(), &length) != 1 ||
      EVP_MD_CTX_copy_ex(pads.work, pads.outer) != 1 ||
      EVP_DigestUpdate(pads.work, inner.bytes.data(), inner.bytes.size()) != 1 ||
      EVP_DigestFinal_ex(pads.work, mac.bytes.data(), &length) != 1) {
    fail();
  }
  uint64_t id = 0;
  for (size_t i = 0; i < 6; ++i) id = id << 8 | mac.bytes[i];  // the first 48 bits, big-endian
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
