#include "sluice/identities.hpp"

#include "yaml_document.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>
#include <sstream>

namespace sluice {
namespace {

constexpr std::string_view kDigestForm =
    "'sha256:' followed by 64 lowercase hex digits (make one with `sluicectl keys hash`)";
constexpr uint64_t kMaxLimit = uint64_t{1} << 40;

class Reader : public YamlReader {
 public:
  using YamlReader::YamlReader;

  // A required scalar of [chars]{1,max}; `what` describes the form for the message.
  std::string word(const YAML::Node& map, const YAML::Node& owner, const std::string& path,
                   const std::string& key, std::string_view chars, size_t max,
                   const std::string& what) const {
    const YAML::Node value = map[key];
    const std::string full = join(path, key);
    if (!value) fail(owner, full + ": missing (expected " + what + ")");
    return word_at(value, full, chars, max, what);
  }

  std::optional<uint64_t> limit(const YAML::Node& map, const std::string& path,
                                const std::string& key) const {
    const YAML::Node value = map[key];
    if (!value) return std::nullopt;
    uint64_t parsed = 0;
    if (!value.IsScalar() || value.Scalar().empty() ||
        value.Scalar().find_first_not_of("0123456789") != std::string::npos ||
        !YAML::convert<uint64_t>::decode(value, parsed) || parsed == 0 || parsed > kMaxLimit) {
      fail(value, join(path, key) + ": expected a positive integer up to " +
                      std::to_string(kMaxLimit) + ", got '" + describe(value) + "'");
    }
    return parsed;
  }

  static std::string join(const std::string& path, std::string_view key) {
    return qualified_key(path, key);
  }
  static std::string describe(const YAML::Node& value) { return describe_node(value); }
};

constexpr std::string_view kNameChars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
constexpr std::string_view kTierChars = "abcdefghijklmnopqrstuvwxyz0123456789_-";

std::shared_ptr<const IdentityTable> parse(const YAML::Node& root, const std::string& source) {
  const Reader r(source);
  if (!root || !root.IsMap())
    r.fail(root, "expected a mapping with the key 'identities' (a list of identities)");
  r.allow_only(root, "", {"identities"});
  const YAML::Node list = root["identities"];
  if (!list) r.fail(root, "identities: missing (expected a list of identities)");
  if (!list.IsSequence() && !list.IsNull())
    r.fail(list, "identities: expected a list of identities, got '" + Reader::describe(list) + "'");

  std::vector<Identity> identities;
  std::map<std::string, std::string> name_seen_at;  // name → where
  std::map<KeyDigest, std::string> digest_seen_at;  // digest → "where (path)"
  size_t index = 0;
  for (const YAML::Node& item : list) {
    const std::string path = "identities[" + std::to_string(index++) + "]";
    if (!item.IsMap())
      r.fail(item, path + ": expected a mapping with name, tier and keys, got '" +
                       Reader::describe(item) + "'");
    r.allow_only(item, path, {"name", "tier", "keys", "limits"});
    Identity identity;
    identity.name = r.word(item, item, path, "name", kNameChars, 64,
                           "a name of 1 to 64 characters from [A-Za-z0-9_.-]");
    const auto [previous, inserted] = name_seen_at.emplace(identity.name, r.where(item["name"]));
    if (!inserted)
      r.fail(item["name"], path + ".name: duplicate identity name '" + identity.name +
                               "' (first defined at " + previous->second + ")");
    identity.tier = r.word(item, item, path, "tier", kTierChars, 64,
                           "a tier name of 1 to 64 characters from [a-z0-9_-]");
    identity.tier_at = r.where(item["tier"]) + ": " + path + ".tier";

    const YAML::Node keys = item["keys"];
    const std::string keys_path = path + ".keys";
    if (!keys)
      r.fail(item, keys_path + ": missing (expected a list of " + std::string(kDigestForm) + ")");
    if (!keys.IsSequence() || keys.size() == 0)
      r.fail(keys, keys_path + ": expected a non-empty list of " + std::string(kDigestForm));
    size_t key_index = 0;
    for (const YAML::Node& key : keys) {
      const std::string key_path = keys_path + "[" + std::to_string(key_index++) + "]";
      const std::optional<KeyDigest> digest =
          key.IsScalar() ? KeyDigest::parse(key.Scalar()) : std::nullopt;
      // The value is never echoed: a malformed entry may well be a key pasted in clear.
      if (!digest)
        r.fail(key, key_path + ": expected " + std::string(kDigestForm) +
                        " (the value is not shown, in case it is a key in clear)");
      const auto [first, fresh] =
          digest_seen_at.emplace(*digest, r.where(key) + " (" + key_path + ")");
      if (!fresh)
        r.fail(key, key_path + ": key digest listed twice (first at " + first->second +
                        "); each key belongs to one identity");
      identity.keys.push_back(*digest);
    }

    if (const YAML::Node limits = item["limits"]) {
      const std::string limits_path = path + ".limits";
      if (!limits.IsMap())
        r.fail(limits, limits_path + ": expected a mapping of limits, got '" +
                           Reader::describe(limits) + "'");
      r.allow_only(limits, limits_path,
                   {"requests_per_second", "burst", "tokens_per_minute", "token_burst",
                    "max_concurrent", "max_body_bytes", "max_output_tokens"});
      IdentityLimits& l = identity.limits;
      l.requests_per_second = r.limit(limits, limits_path, "requests_per_second");
      l.burst = r.limit(limits, limits_path, "burst");
      l.tokens_per_minute = r.limit(limits, limits_path, "tokens_per_minute");
      l.token_burst = r.limit(limits, limits_path, "token_burst");
      l.max_concurrent = r.limit(limits, limits_path, "max_concurrent");
      l.max_body_bytes = r.limit(limits, limits_path, "max_body_bytes");
      l.max_output_tokens = r.limit(limits, limits_path, "max_output_tokens");
    }
    identities.push_back(std::move(identity));
  }
  return std::make_shared<const IdentityTable>(std::move(identities), source);
}

}  // namespace

std::shared_ptr<const IdentityTable> load_identities_text(std::string_view text,
                                                          const std::string& source_name) {
  return parse(parse_yaml_document(text, source_name), source_name);
}

std::shared_ptr<const IdentityTable> load_identities_file(const std::string& path) {
  return load_identities_text(read_text_file(path, "identities file"), path);
}

}  // namespace sluice
