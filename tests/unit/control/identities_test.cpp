#include "sluice/identities.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace sluice {
namespace {

const std::string kA = sha256_of("sk-acme-1").to_string();
const std::string kB = sha256_of("sk-acme-2").to_string();
const std::string kC = sha256_of("sk-beta").to_string();

std::string error_of(const std::string& yaml) {
  try {
    load_identities_text(yaml, "ids.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Identities, ReadsTheIssueExample) {
  const auto table = load_identities_text(R"(
identities:
  - name: acme-prod
    tier: verified
    keys: [")" + kA + R"(", ")" + kB + R"("]
    limits: { requests_per_second: 5, burst: 10 }
  - name: beta
    tier: free
    keys:
      - )" + kC + R"(
)",
                                          "ids.yaml");
  ASSERT_EQ(table->identities().size(), 2u);
  EXPECT_EQ(table->key_count(), 3u);
  EXPECT_EQ(table->source(), "ids.yaml");
  const Identity& acme = table->identities()[0];
  EXPECT_EQ(acme.name, "acme-prod");
  EXPECT_EQ(acme.tier, "verified");
  EXPECT_EQ(acme.keys.size(), 2u);
  EXPECT_EQ(acme.limits.requests_per_second, 5u);
  EXPECT_EQ(acme.limits.burst, 10u);
  EXPECT_FALSE(acme.limits.tokens_per_minute);
  EXPECT_EQ(table->identities()[1].limits, IdentityLimits{});
  EXPECT_EQ(table->tiers(), (std::vector<std::string>{"free", "verified"}));
}

TEST(Identities, AKeyHashedWithSha256OfFindsTheIdentityOfItsDigestInTheFile) {
  const auto table = load_identities_text(
      "identities:\n  - {name: acme, tier: verified, keys: [" + kA + ", " + kB + "]}\n",
      "ids.yaml");
  const Identity* by_key = table->find(sha256_of("sk-acme-2"));
  ASSERT_NE(by_key, nullptr);
  EXPECT_EQ(by_key, table->find(*KeyDigest::parse(kB)));
  EXPECT_EQ(by_key->name, "acme");
  EXPECT_EQ(table->find(sha256_of("sk-acme-2\n")), nullptr);
}

TEST(Identities, ReadsEveryLimit) {
  const auto table =
      load_identities_text("identities:\n  - name: a\n    tier: t\n    keys: [" + kA +
                               "]\n    limits:\n"
                               "      requests_per_second: 1\n      burst: 2\n"
                               "      tokens_per_minute: 3\n      token_burst: 4\n"
                               "      max_concurrent: 5\n      max_body_bytes: 6\n"
                               "      max_output_tokens: 7\n",
                           "ids.yaml");
  const IdentityLimits& l = table->identities()[0].limits;
  EXPECT_EQ(l.requests_per_second, 1u);
  EXPECT_EQ(l.burst, 2u);
  EXPECT_EQ(l.tokens_per_minute, 3u);
  EXPECT_EQ(l.token_burst, 4u);
  EXPECT_EQ(l.max_concurrent, 5u);
  EXPECT_EQ(l.max_body_bytes, 6u);
  EXPECT_EQ(l.max_output_tokens, 7u);
}

TEST(Identities, AnEmptyListIsATableWithNoIdentities) {
  EXPECT_EQ(load_identities_text("identities: []\n", "ids.yaml")->key_count(), 0u);
  EXPECT_EQ(load_identities_text("identities:\n", "ids.yaml")->key_count(), 0u);
}

struct ErrorCase {
  const char* what;
  std::string yaml;
  std::string message;  // expected substring, including file:line:column and the key path
};

TEST(Identities, ErrorsNameFileLineColumnKeyAndExpectedForm) {
  const std::string one = "identities:\n  - name: a\n    tier: t\n    keys: [" + kA + "]\n";
  const ErrorCase cases[] = {
      {"unknown top-level key", "identities: []\nusers: []\n",
       "ids.yaml:2:1: unknown key 'users' (expected one of: identities)"},
      {"missing list", "other: 1\n", "ids.yaml:1:1: unknown key 'other'"},
      {"list is a scalar", "identities: 3\n",
       "ids.yaml:1:13: identities: expected a list of identities, got '3'"},
      {"not a mapping", "- a\n", "ids.yaml:1:1: expected a mapping with the key 'identities'"},
      {"item not a mapping", "identities:\n  - acme\n",
       "ids.yaml:2:5: identities[0]: expected a mapping with name, tier and keys, got 'acme'"},
      {"unknown identity key", one + "    colour: blue\n",
       "ids.yaml:5:5: unknown key 'identities[0].colour' (expected one of: name, tier, keys, "
       "limits)"},
      {"missing name", "identities:\n  - tier: t\n    keys: [" + kA + "]\n",
       "ids.yaml:2:5: identities[0].name: missing (expected a name of 1 to 64 characters"},
      {"missing tier", "identities:\n  - name: a\n    keys: [" + kA + "]\n",
       "ids.yaml:2:5: identities[0].tier: missing (expected a tier name"},
      {"missing keys", "identities:\n  - name: a\n    tier: t\n",
       "ids.yaml:2:5: identities[0].keys: missing (expected a list of 'sha256:'"},
      {"empty keys", "identities:\n  - name: a\n    tier: t\n    keys: []\n",
       "ids.yaml:4:11: identities[0].keys: expected a non-empty list of 'sha256:'"},
      {"bad tier", "identities:\n  - name: a\n    tier: Gold Plus\n    keys: [" + kA + "]\n",
       "ids.yaml:3:11: identities[0].tier: expected a tier name of 1 to 64 characters from "
       "[a-z0-9_-], got 'Gold Plus'"},
      {"bad name", "identities:\n  - name: a b\n    tier: t\n    keys: [" + kA + "]\n",
       "ids.yaml:2:11: identities[0].name: expected a name of 1 to 64 characters"},
      {"duplicate name", one + "  - name: a\n    tier: t\n    keys: [" + kB + "]\n",
       "ids.yaml:5:11: identities[1].name: duplicate identity name 'a' (first defined at "
       "ids.yaml:2:11)"},
      {"digest twice in one identity",
       "identities:\n  - name: a\n    tier: t\n    keys:\n      - " + kA + "\n      - " + kA + "\n",
       "ids.yaml:6:9: identities[0].keys[1]: key digest listed twice (first at ids.yaml:5:9 "
       "(identities[0].keys[0]))"},
      {"digest twice across identities",
       one + "  - name: b\n    tier: t\n    keys: [" + kB + ", " + kA + "]\n",
       "ids.yaml:7:85: identities[1].keys[1]: key digest listed twice (first at ids.yaml:4:12 "
       "(identities[0].keys[0]))"},
      {"key in clear", "identities:\n  - name: a\n    tier: t\n    keys: [sk-live-secret]\n",
       "ids.yaml:4:12: identities[0].keys[0]: expected 'sha256:' followed by 64 lowercase hex "
       "digits"},
      {"upper-case digest",
       "identities:\n  - name: a\n    tier: t\n    keys: [sha256:" + std::string(64, 'A') + "]\n",
       "ids.yaml:4:12: identities[0].keys[0]: expected 'sha256:'"},
      {"short digest",
       "identities:\n  - name: a\n    tier: t\n    keys: [sha256:" + std::string(63, 'a') + "]\n",
       "ids.yaml:4:12: identities[0].keys[0]: expected 'sha256:'"},
      {"unknown limit", one + "    limits: {rps: 5}\n",
       "ids.yaml:5:14: unknown key 'identities[0].limits.rps' (expected one of: "
       "requests_per_second, burst,"},
      {"zero limit", one + "    limits: {burst: 0}\n",
       "ids.yaml:5:21: identities[0].limits.burst: expected a positive integer up to "
       "1099511627776, got '0'"},
      {"negative limit", one + "    limits: {burst: -1}\n",
       "identities[0].limits.burst: expected a positive integer"},
      {"fractional limit", one + "    limits: {requests_per_second: 1.5}\n",
       "ids.yaml:5:35: identities[0].limits.requests_per_second: expected a positive integer"},
      {"limits not a mapping", one + "    limits: 5\n",
       "ids.yaml:5:13: identities[0].limits: expected a mapping of limits, got '5'"},
      {"invalid YAML", "identities: [\n", "ids.yaml:2:1: invalid YAML"},
  };
  for (const ErrorCase& c : cases) {
    const std::string message = error_of(c.yaml);
    EXPECT_NE(message.find(c.message), std::string::npos)
        << c.what << "\n  got:      " << message << "\n  expected: " << c.message;
  }
}

TEST(Identities, AMalformedDigestIsNeverEchoedBecauseItMayBeAKey) {
  const std::string message =
      error_of("identities:\n  - name: a\n    tier: t\n    keys: [sk-live-secret]\n");
  EXPECT_EQ(message.find("sk-live-secret"), std::string::npos) << message;
  EXPECT_NE(message.find("not shown"), std::string::npos) << message;
}

TEST(Identities, LoadsAFileAndNamesItInErrors) {
  const std::string path = ::testing::TempDir() + "identities_test.yaml";
  {
    std::ofstream out(path);
    out << "identities:\n  - name: a\n    tier: t\n    keys: [" << kA << "]\n";
  }
  EXPECT_EQ(load_identities_file(path)->key_count(), 1u);
  {
    std::ofstream out(path);
    out << "identities:\n  - name: a\n";
  }
  try {
    load_identities_file(path);
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2:5: identities[0].tier: missing"),
              std::string::npos)
        << e.what();
  }
  std::remove(path.c_str());
  EXPECT_THROW(load_identities_file(path), ConfigError);
}

TEST(Identities, EveryLoadIsANewGeneration) {
  const std::string text = "identities: []\n";
  EXPECT_NE(load_identities_text(text, "a")->generation(),
            load_identities_text(text, "a")->generation());
}

}  // namespace
}  // namespace sluice
