#include "sluice/identity.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <random>
#include <set>
#include <string>

namespace sluice {
namespace {

std::string hex_of(const KeyDigest& digest) {
  return digest.to_string().substr(7);
}

TEST(KeyDigest, Sha256MatchesKnownVectors) {  // FIPS 180-2 appendix B and the empty string
  EXPECT_EQ(hex_of(sha256_of("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_of(sha256_of("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_of(sha256_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(KeyDigest, PrintsAndParsesTheFileForm) {
  const KeyDigest digest = sha256_of("sk-test");
  const std::string text = digest.to_string();
  EXPECT_EQ(text.size(), 7u + 64u);
  EXPECT_TRUE(text.starts_with("sha256:"));
  EXPECT_EQ(KeyDigest::parse(text), digest);
}

TEST(KeyDigest, RefusesEveryOtherSpelling) {
  const std::string good = sha256_of("k").to_string();
  std::string upper = good;
  upper[10] = 'A';
  upper[11] = 'B';
  for (const std::string& bad :
       {std::string(""), std::string("sha256:"), good.substr(7), "SHA256:" + good.substr(7),
        good + "0", good.substr(0, good.size() - 1), upper, "sha256:" + std::string(64, 'g'),
        "sha512:" + good.substr(7)}) {
    EXPECT_FALSE(KeyDigest::parse(bad)) << bad;
  }
}

TEST(KeyFingerprint, DependsOnKeyAndSeed) {
  EXPECT_EQ(fingerprint_of("sk-a", 1), fingerprint_of("sk-a", 1));
  EXPECT_NE(fingerprint_of("sk-a", 1), fingerprint_of("sk-b", 1));
  EXPECT_NE(fingerprint_of("sk-a", 1), fingerprint_of("sk-a", 2));
}

TEST(KeyId, IsTwelveHexDigitsStablePerSecretAndNeverTheKey) {
  KeySecrets one;
  one.key_id_secret.fill(1);
  KeySecrets two;
  two.key_id_secret.fill(2);
  const std::string id = key_id("sk-live-0123456789", one);
  EXPECT_EQ(id.size(), 12u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(id, key_id("sk-live-0123456789", one));
  EXPECT_NE(id, key_id("sk-live-0123456789", two));
  EXPECT_NE(id, key_id("sk-live-0123456780", one));
  // Keyed: not a prefix of the plain SHA-256, which anyone could compute from a guessed key.
  EXPECT_NE(id, hex_of(sha256_of("sk-live-0123456789")).substr(0, 12));
  EXPECT_EQ(format_key_id(0x0123456789abULL), "0123456789ab");
}

// The hand-written HMAC against OpenSSL's, for many secrets and keys.
TEST(KeyId, IsTheFirst48BitsOfHmacSha256OfTheDigest) {
  std::mt19937_64 random(3);
  for (int round = 0; round < 200; ++round) {
    KeySecrets secrets;
    for (uint8_t& byte : secrets.key_id_secret) byte = static_cast<uint8_t>(random());
    const KeyDigest digest = sha256_of("sk-" + std::to_string(random()));
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    ASSERT_NE(
        HMAC(EVP_sha256(), secrets.key_id_secret.data(), 32, digest.bytes.data(), 32, mac, &length),
        nullptr);
    uint64_t expected = 0;
    for (int i = 0; i < 6; ++i) expected = expected << 8 | mac[i];
    EXPECT_EQ(key_id_of(digest, secrets), expected);
  }
}

TEST(KeyId, ProcessSecretsAreDrawnOnceAndNotZero) {
  const KeySecrets& a = KeySecrets::process();
  EXPECT_EQ(&a, &KeySecrets::process());
  EXPECT_NE(a.key_id_secret, (std::array<uint8_t, 32>{}));
  EXPECT_EQ(key_id("sk-x"), key_id("sk-x"));
}

IdentityTable table_of(
    std::initializer_list<std::pair<const char*, std::vector<const char*>>> list) {
  std::vector<Identity> identities;
  for (const auto& [name, keys] : list) {
    Identity identity{name, "verified", {}, {}};
    for (const char* key : keys) identity.keys.push_back(sha256_of(key));
    identities.push_back(identity);
  }
  return IdentityTable(std::move(identities));
}

TEST(IdentityTable, FindsEachKeyOfEachIdentityAndNothingElse) {
  const IdentityTable table = table_of({{"a", {"ka1", "ka2"}}, {"b", {"kb"}}});
  EXPECT_EQ(table.key_count(), 3u);
  ASSERT_NE(table.find(sha256_of("ka2")), nullptr);
  EXPECT_EQ(table.find(sha256_of("ka1"))->name, "a");
  EXPECT_EQ(table.find(sha256_of("ka2"))->name, "a");
  EXPECT_EQ(table.find(sha256_of("kb"))->name, "b");
  EXPECT_EQ(table.find(sha256_of("kc")), nullptr);
  EXPECT_EQ(table.tiers(), std::vector<std::string>{"verified"});
}

TEST(IdentityTable, RefusesADigestListedTwice) {
  EXPECT_THROW(table_of({{"a", {"k"}}, {"b", {"k"}}}), std::invalid_argument);
}

TEST(IdentityTable, EveryTableHasANewNonZeroGeneration) {
  const IdentityTable one = table_of({});
  const IdentityTable two = table_of({});
  EXPECT_NE(one.generation(), 0u);
  EXPECT_GT(two.generation(), one.generation());
}

KeyFingerprint fp(uint64_t n) {
  return KeyFingerprint{n * 0x9e3779b97f4a7c15ULL, n * 0xbf58476d1ce4e5b9ULL};
}

TEST(KeyCache, HitsAfterInsert) {
  KeyCache cache(64, 7);
  const Identity identity{"a", "verified", {}, {}};
  EXPECT_FALSE(cache.lookup(fp(1), 1));
  cache.insert(fp(1), 1, {&identity, 42});
  const auto hit = cache.lookup(fp(1), 1);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->identity, &identity);
  EXPECT_EQ(hit->key_id, 42u);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(KeyCache, RemembersUnknownKeys) {
  KeyCache cache(64, 7);
  cache.insert(fp(2), 1, {nullptr, 5});
  const auto hit = cache.lookup(fp(2), 1);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->identity, nullptr);
}

TEST(KeyCache, ANewerGenerationMissesAndReplacesTheEntry) {
  KeyCache cache(64, 7);
  const Identity identity{"a", "verified", {}, {}};
  cache.insert(fp(3), 1, {&identity, 1});
  EXPECT_FALSE(cache.lookup(fp(3), 2));
  cache.insert(fp(3), 2, {nullptr, 1});
  EXPECT_EQ(cache.size(), 1u);
  ASSERT_TRUE(cache.lookup(fp(3), 2));
  EXPECT_EQ(cache.lookup(fp(3), 2)->identity, nullptr);
  EXPECT_FALSE(cache.lookup(fp(3), 1));
}

TEST(KeyCache, StaysWithinCapacityUnder100kRandomKeys) {
  KeyCache cache(4096, 7);
  EXPECT_EQ(cache.capacity(), 4096u);
  const size_t memory = cache.memory_bytes();
  std::mt19937_64 random(1);
  for (int i = 0; i < 100000; ++i) {
    cache.insert(KeyFingerprint{random(), random()}, 1, {nullptr, 0});
    ASSERT_LE(cache.size(), cache.capacity());
  }
  EXPECT_GT(cache.size(), cache.capacity() * 9 / 10);  // and it is actually used
  EXPECT_EQ(cache.memory_bytes(), memory);
  EXPECT_LE(memory, 4096u * 40u);
}

TEST(KeyCache, CapacityIsRoundedDownToWholeSets) {
  EXPECT_EQ(KeyCache(10, 0).capacity(), 8u);
  EXPECT_EQ(KeyCache(1, 0).capacity(), KeyCache::kWays);
}

// A single-set cache makes the replacement order observable.
TEST(KeyCache, EvictsTheLeastRecentlyUsedVerifiedKey) {
  KeyCache cache(KeyCache::kWays, 0);
  const Identity identity{"a", "verified", {}, {}};
  for (uint64_t n = 1; n <= 4; ++n) cache.insert(fp(n), 1, {&identity, n});
  ASSERT_TRUE(cache.lookup(fp(1), 1));  // 1 is now the most recently used; 2 the least
  cache.insert(fp(5), 1, {&identity, 5});
  EXPECT_FALSE(cache.lookup(fp(2), 1));
  for (uint64_t n : {1, 3, 4, 5}) EXPECT_TRUE(cache.lookup(fp(n), 1)) << n;
}

TEST(KeyCache, AFloodOfUnknownKeysKeepsRecentlyUsedVerifiedKeys) {
  KeyCache cache(KeyCache::kWays, 0);
  const Identity identity{"a", "verified", {}, {}};
  for (uint64_t n = 1; n <= 3; ++n) cache.insert(fp(n), 1, {&identity, n});
  for (uint64_t n = 100; n < 10100; ++n) cache.insert(fp(n), 1, {nullptr, n});
  for (uint64_t n = 1; n <= 3; ++n) EXPECT_TRUE(cache.lookup(fp(n), 1)) << n;
  EXPECT_TRUE(cache.lookup(fp(10099), 1));  // the latest unknown key is still remembered
  EXPECT_FALSE(cache.lookup(fp(10098), 1));
  EXPECT_EQ(cache.size(), KeyCache::kWays);
}

TEST(KeyCache, ARepeatedUnknownKeyIsPromotedLikeAnyHit) {
  KeyCache cache(KeyCache::kWays, 0);
  const Identity identity{"a", "verified", {}, {}};
  cache.insert(fp(1), 1, {nullptr, 1});
  for (uint64_t n = 2; n <= 4; ++n) cache.insert(fp(n), 1, {&identity, n});
  ASSERT_TRUE(cache.lookup(fp(1), 1));  // promoted to the front
  cache.insert(fp(5), 1, {&identity, 5});
  EXPECT_TRUE(cache.lookup(fp(1), 1));
  EXPECT_FALSE(cache.lookup(fp(2), 1));
}

TEST(Resolve, HashesOnceThenHitsForKnownAndUnknownKeys) {
  const IdentityTable table = table_of({{"acme", {"sk-acme"}}});
  KeyCache cache(64);
  const Resolved first = resolve("sk-acme", table, cache);
  ASSERT_NE(first.identity, nullptr);
  EXPECT_EQ(first.identity->name, "acme");
  EXPECT_FALSE(first.was_cache_hit);
  EXPECT_EQ(first.key_id, key_id_of(sha256_of("sk-acme")));
  const Resolved second = resolve("sk-acme", table, cache);
  EXPECT_TRUE(second.was_cache_hit);
  EXPECT_EQ(second.identity, first.identity);
  EXPECT_EQ(second.key_id, first.key_id);

  EXPECT_FALSE(resolve("sk-nobody", table, cache).was_cache_hit);
  const Resolved unknown = resolve("sk-nobody", table, cache);
  EXPECT_TRUE(unknown.was_cache_hit);
  EXPECT_EQ(unknown.identity, nullptr);
}

TEST(Resolve, AReloadedTableIsConsultedAgain) {
  const IdentityTable before = table_of({{"acme", {"sk-acme"}}});
  const IdentityTable after = table_of({{"acme-renamed", {"sk-acme"}}});
  KeyCache cache(64);
  EXPECT_EQ(resolve("sk-acme", before, cache).identity->name, "acme");
  const Resolved again = resolve("sk-acme", after, cache);
  EXPECT_FALSE(again.was_cache_hit);
  EXPECT_EQ(again.identity->name, "acme-renamed");
  EXPECT_TRUE(resolve("sk-acme", after, cache).was_cache_hit);
}

}  // namespace
}  // namespace sluice
