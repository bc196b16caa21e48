#include "profile.hpp"

#include <filesystem>

#include "yaml_document.hpp"

namespace sluice::bench {
namespace {

class ProfileReader : public YamlReader {
 public:
  using YamlReader::YamlReader;

  double number(const YAML::Node& map, const char* key, double fallback, double low,
                double high) const {
    const YAML::Node value = map[key];
    if (!value) return fallback;
    double parsed = 0;
    try {
      parsed = value.as<double>();
    } catch (const YAML::Exception&) {
      fail(value, std::string(key) + ": expected a number, got '" + describe_node(value) + "'");
    }
    if (!(parsed >= low && parsed <= high)) {
      fail(value, std::string(key) + ": expected a number from " + format(low) + " to " +
                      format(high) + ", got " + value.Scalar());
    }
    return parsed;
  }
  uint32_t count(const YAML::Node& map, const char* key, uint32_t fallback, uint32_t low,
                 uint32_t high) const {
    const double value = number(map, key, fallback, low, high);
    if (value != static_cast<double>(static_cast<uint32_t>(value)))
      fail(map[key], std::string(key) + ": expected a whole number, got " + map[key].Scalar());
    return static_cast<uint32_t>(value);
  }
  std::string text(const YAML::Node& map, const char* key, const std::string& fallback) const {
    const YAML::Node value = map[key];
    if (!value) return fallback;
    if (!value.IsScalar()) fail(value, std::string(key) + ": expected a string");
    return value.Scalar();
  }

 private:
  static std::string format(double value) {
    std::string text = std::to_string(value);
    text.erase(text.find_last_not_of('0') + 1);
    if (text.back() == '.') text.pop_back();
    return text;
  }
};

}  // namespace

std::string resolve_profile_path(const std::string& name_or_path, const std::string& profiles_dir) {
  if (name_or_path.find('/') != std::string::npos || name_or_path.ends_with(".yaml"))
    return name_or_path;
  return profiles_dir + "/" + name_or_path + ".yaml";
}

BenchProfile load_profile(const std::string& path) {
  const YAML::Node top = parse_yaml_document(read_text_file(path, "profile"), path);
  BenchProfile p;
  p.source = path;
  const ProfileReader r(p.source);
  if (!top.IsMap())
    throw ConfigError(path + ": a profile is a mapping (see perf/profiles/README.md)");
  r.allow_only(
      top, "",
      {"name", "description", "config", "rules", "corpus", "sessions", "lap_ms", "identities",
       "zipf", "requests_per_session", "prompt_bytes", "shares", "capped_identity_share",
       "unknown_keys", "response_bytes", "latency_ms", "acks_per_session", "seed"});
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  const auto beside = [&](const std::string& relative) {
    return relative.empty() || relative.front() == '/' ? relative : (folder / relative).string();
  };
  p.name = r.text(top, "name", std::filesystem::path(path).stem().string());
  p.description = r.text(top, "description", "");
  if (!top["config"]) throw ConfigError(path + ": config: required (the Sluice config to run)");
  p.config_path = beside(r.text(top, "config", ""));
  if (const YAML::Node rules = top["rules"]) {
    if (rules.IsScalar()) {
      p.rule_paths.push_back(beside(rules.Scalar()));
    } else if (rules.IsSequence()) {
      for (const YAML::Node& item : rules) {
        if (!item.IsScalar()) r.fail(item, "rules: expected a list of files or folders");
        p.rule_paths.push_back(beside(item.Scalar()));
      }
    } else {
      r.fail(rules, "rules: expected a file or folder, or a list of them");
    }
  }
  p.corpus_dir = beside(r.text(top, "corpus", "../../../shared/corpus"));
  p.sessions = r.count(top, "sessions", p.sessions, 1, 65000);
  p.lap_ms = r.number(top, "lap_ms", p.lap_ms, 0.001, 3'600'000);
  p.identities = r.count(top, "identities", p.identities, 1, 1'000'000);
  p.zipf = r.number(top, "zipf", p.zipf, 0, 10);
  if (const YAML::Node range = top["requests_per_session"]) {
    if (!range.IsMap()) r.fail(range, "requests_per_session: expected { min: N, max: N }");
    r.allow_only(range, "requests_per_session", {"min", "max"});
    p.requests_per_session.min = r.count(range, "min", 1, 1, 1000);
    p.requests_per_session.max = r.count(range, "max", p.requests_per_session.min, 1, 1000);
    if (p.requests_per_session.max < p.requests_per_session.min)
      r.fail(range, "requests_per_session: max is below min");
  }
  if (const YAML::Node prompt = top["prompt_bytes"]) {
    if (!prompt.IsMap()) r.fail(prompt, "prompt_bytes: expected { median: N, spread: S, max: N }");
    r.allow_only(prompt, "prompt_bytes", {"median", "spread", "max"});
    p.prompt_median_bytes = r.count(prompt, "median", p.prompt_median_bytes, 1, 1 << 20);
    p.prompt_spread = r.number(prompt, "spread", p.prompt_spread, 0, 3);
    p.prompt_max_bytes = r.count(prompt, "max", p.prompt_max_bytes, 1, 1 << 20);
    if (p.prompt_max_bytes < p.prompt_median_bytes)
      r.fail(prompt, "prompt_bytes: max is below median");
  }
  if (const YAML::Node shares = top["shares"]) {
    if (!shares.IsMap()) r.fail(shares, "shares: expected { unknown_key, over_limit, malicious }");
    r.allow_only(shares, "shares", {"unknown_key", "over_limit", "malicious"});
    p.unknown_key_share = r.number(shares, "unknown_key", p.unknown_key_share, 0, 1);
    p.over_limit_share = r.number(shares, "over_limit", p.over_limit_share, 0, 1);
    p.malicious_share = r.number(shares, "malicious", p.malicious_share, 0, 1);
    if (p.unknown_key_share + p.over_limit_share + p.malicious_share > 1)
      r.fail(shares, "shares: unknown_key + over_limit + malicious exceed 1");
  }
  p.capped_identity_share = r.number(top, "capped_identity_share", p.capped_identity_share, 0, 1);
  if (const YAML::Node keys = top["unknown_keys"]) {
    const std::string mode = r.text(top, "unknown_keys", "fresh");
    if (mode != "fresh" && mode != "repeat")
      r.fail(keys, "unknown_keys: expected fresh or repeat, got '" + mode + "'");
    p.unknown_keys_fresh = mode == "fresh";
  }
  p.response_bytes = r.count(top, "response_bytes", p.response_bytes, 200, 1 << 20);
  p.latency_ms = r.number(top, "latency_ms", p.latency_ms, 0, 60'000);
  p.acks_per_session = r.count(top, "acks_per_session", p.acks_per_session, 0, 100'000);
  p.seed = r.count(top, "seed", 1, 0, UINT32_MAX);
  return p;
}

}  // namespace sluice::bench
