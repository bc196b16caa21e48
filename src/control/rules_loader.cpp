#include "sluice/rules_loader.hpp"

#include "sluice/http_request.hpp"

#include "yaml_document.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <map>

namespace sluice {
namespace {

constexpr std::string_view kRuleSetChars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
constexpr std::string_view kRuleIdChars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-";
constexpr std::string_view kTierChars = "abcdefghijklmnopqrstuvwxyz0123456789_-";

std::string flag_names() {
  std::string names;
  for (const RuleFlag& flag : kRuleFlags) {
    if (flag.hs_flags != 0) names += (names.empty() ? "" : ", ") + std::string(flag.name);
  }
  return names;
}

std::string severity_names() {
  std::string names;
  const std::size_t n = std::size(kRuleSeverities);
  for (std::size_t i = 0; i < n; ++i)
    names += std::string(i == 0       ? ""
                         : i + 1 == n ? " or "
                                      : ", ") +
             std::string(kRuleSeverities[i]);
  return names;
}

// Where each rule id and rule set was first defined, across the files of one load.
struct Seen {
  std::map<std::string, std::string> rule_ids;
  std::map<std::string, std::string> rulesets;
};

class Reader : public YamlReader {
 public:
  using YamlReader::YamlReader;

  std::string word(const YAML::Node& value, const std::string& path, std::string_view chars,
                   std::size_t max, const std::string& what) const {
    return word_at(value, path, chars, max, what);
  }

  // A required key's node.
  YAML::Node required(const YAML::Node& map, const std::string& path, const std::string& key,
                      const std::string& what) const {
    const YAML::Node value = map[key];
    if (!value) fail(map, qualified_key(path, key) + ": missing (expected " + what + ")");
    return value;
  }

  // An optional list of scalars; `what` describes one item.
  std::vector<std::pair<std::string, YAML::Node>> scalars(const YAML::Node& list,
                                                          const std::string& path,
                                                          const std::string& what) const {
    if (!list.IsSequence())
      fail(list, path + ": expected a list of " + what + ", got '" + describe_node(list) + "'");
    std::vector<std::pair<std::string, YAML::Node>> items;
    std::size_t index = 0;
    for (const YAML::Node& item : list) {
      const std::string item_path = path + "[" + std::to_string(index++) + "]";
      if (!item.IsScalar())
        fail(item, item_path + ": expected " + what + ", got '" + describe_node(item) + "'");
      items.emplace_back(item.Scalar(), item);
    }
    return items;
  }
};

Rule parse_rule(const Reader& r, const YAML::Node& item, const std::string& path,
                const std::string& ruleset, const std::string& version, Seen& seen) {
  if (!item.IsMap())
    r.fail(item, path + ": expected a mapping with id, pattern, action, …, got '" +
                     describe_node(item) + "'");
  r.allow_only(item, path,
               {"id", "description", "pattern", "flags", "scope", "action", "tiers", "mode",
                "severity", "examples"});
  Rule rule;
  rule.ruleset = ruleset;
  rule.ruleset_version = version;
  rule.source = r.where(item);

  const YAML::Node id = r.required(item, path, "id", "a rule id");
  rule.id = r.word(id, path + ".id", kRuleIdChars, 128,
                   "a rule id of 1 to 128 characters from [A-Za-z0-9_.:-]");
  if (const auto [first, fresh] = seen.rule_ids.emplace(rule.id, r.where(id)); !fresh)
    r.fail(id, path + ".id: duplicate rule id '" + rule.id + "' (first defined at " +
                   first->second + ")");

  if (const YAML::Node description = item["description"]) {
    if (!description.IsScalar() && !description.IsNull())
      r.fail(description,
             path + ".description: expected text, got '" + describe_node(description) + "'");
    if (description.IsScalar()) rule.description = description.Scalar();
  }

  const YAML::Node pattern = r.required(item, path, "pattern", "a regular expression");
  if (!pattern.IsScalar() || pattern.Scalar().empty())
    r.fail(pattern, path + ".pattern: expected a non-empty regular expression, got '" +
                        describe_node(pattern) + "'");
  rule.pattern = pattern.Scalar();

  if (const YAML::Node flags = item["flags"]) {
    const std::string flags_path = path + ".flags";
    std::size_t index = 0;
    for (const auto& [name, node] : r.scalars(flags, flags_path, "a flag (" + flag_names() + ")")) {
      const std::string flag_path = flags_path + "[" + std::to_string(index++) + "]";
      const RuleFlag* flag = find_rule_flag(name);
      if (flag != nullptr && flag->hs_flags == 0)
        r.fail(node, flag_path + ": '" + name +
                         "' is refused: a rule must not match empty text (it would match every "
                         "request)");
      if (flag == nullptr)
        r.fail(node, flag_path + ": expected one of " + flag_names() + ", got '" + name + "'");
      if (std::find(rule.flags.begin(), rule.flags.end(), name) == rule.flags.end())
        rule.flags.push_back(name);
    }
  }

  if (const YAML::Node scope = item["scope"]) {
    const std::string text = scope.IsScalar() ? scope.Scalar() : describe_node(scope);
    const std::optional<ParsedScope> parsed =
        scope.IsScalar() ? parse_rule_scope(text) : std::nullopt;
    if (!parsed) {
      const bool header_without_name = text == "header" || text == "header:";
      r.fail(scope,
             path + ".scope: expected prompt, completion, path or header:<name>, got '" + text +
                 "'" +
                 (header_without_name ? " (a header rule names its field: header:<name>)" : ""));
    }
    rule.scope = parsed->scope;
    rule.header = parsed->header;
    if (rule.scope == RuleScope::kHeader && rule.header.size() > kMaxFieldNameBytes)
      r.fail(scope, path + ".scope: header names of rules are at most " +
                        std::to_string(kMaxFieldNameBytes) + " bytes");
    if (rule.scope == RuleScope::kHeader && is_secret_field(rule.header))
      r.fail(scope, path + ".scope: '" + rule.header +
                        "' can carry API keys or session secrets, which no rule reads");
  }
  if (!scope_is_canonical(rule.scope)) {
    // Hyperscan's UTF-8 modes are undefined on invalid UTF-8; paths and header values are raw
    // bytes (only prompt and completion text is canonical, hence valid, UTF-8).
    for (const char* flag : {"utf8", "ucp"}) {
      if (std::find(rule.flags.begin(), rule.flags.end(), flag) != rule.flags.end())
        r.fail(item["flags"], path + ".flags: '" + flag +
                                  "' is for prompt and completion rules only (paths and header "
                                  "values are raw bytes, maybe not UTF-8)");
    }
  }

  const YAML::Node action = r.required(item, path, "action", "block, flag or log");
  const std::optional<RuleAction> parsed_action =
      action.IsScalar() ? parse_rule_action(action.Scalar()) : std::nullopt;
  if (!parsed_action)
    r.fail(action,
           path + ".action: expected block, flag or log, got '" + describe_node(action) + "'");
  rule.action = *parsed_action;

  if (const YAML::Node tiers = item["tiers"]) {
    const std::string tiers_path = path + ".tiers";
    if (tiers.IsSequence() && tiers.size() == 0)
      r.fail(tiers, tiers_path +
                        ": expected a non-empty list of tier names (omit tiers for "
                        "every tier)");
    std::size_t index = 0;
    for (const auto& [name, node] : r.scalars(tiers, tiers_path, "a tier name")) {
      const std::string tier =
          r.word(node, tiers_path + "[" + std::to_string(index++) + "]", kTierChars, 64,
                 "a tier name of 1 to 64 characters from [a-z0-9_-]");
      if (std::find(rule.tiers.begin(), rule.tiers.end(), tier) == rule.tiers.end())
        rule.tiers.push_back(tier);
    }
  }

  if (const YAML::Node mode = item["mode"]) {
    const std::optional<RuleMode> parsed =
        mode.IsScalar() ? parse_rule_mode(mode.Scalar()) : std::nullopt;
    if (!parsed)
      r.fail(mode, path + ".mode: expected enforce or shadow, got '" + describe_node(mode) + "'");
    rule.mode = *parsed;
  }

  if (const YAML::Node severity = item["severity"]) {
    const std::string text = severity.IsScalar() ? severity.Scalar() : "";
    if (std::find(std::begin(kRuleSeverities), std::end(kRuleSeverities), text) ==
        std::end(kRuleSeverities))
      r.fail(severity, path + ".severity: expected " + severity_names() + ", got '" +
                           describe_node(severity) + "'");
    rule.severity = text;
  }

  if (const YAML::Node examples = item["examples"]) {
    const std::string examples_path = path + ".examples";
    if (!examples.IsMap())
      r.fail(examples, examples_path + ": expected a mapping with match and no_match lists, got '" +
                           describe_node(examples) + "'");
    r.allow_only(examples, examples_path, {"match", "no_match"});
    for (const char* key : {"match", "no_match"}) {
      const YAML::Node list = examples[key];
      if (!list) continue;
      const bool match = std::string_view(key) == "match";
      for (const auto& [text, node] :
           r.scalars(list, examples_path + "." + key, "an example text")) {
        (match ? rule.match_examples : rule.no_match_examples).push_back(text);
        (match ? rule.match_example_sources : rule.no_match_example_sources)
            .push_back(r.where(node));
      }
    }
  }
  return rule;
}

std::vector<Rule> parse_file(const YAML::Node& root, const std::string& source, Seen& seen) {
  const Reader r(source);
  if (!root || !root.IsMap())
    r.fail(root, "expected a mapping with the keys ruleset, version and rules");
  r.allow_only(root, "", {"ruleset", "version", "rules"});
  const YAML::Node name = r.required(root, "", "ruleset", "the rule set's name");
  const std::string ruleset = r.word(name, "ruleset", kRuleSetChars, 64,
                                     "a name of 1 to 64 characters from [A-Za-z0-9_.-]");
  if (const auto [first, fresh] = seen.rulesets.emplace(ruleset, r.where(name)); !fresh)
    r.fail(name, "ruleset: '" + ruleset + "' is already defined at " + first->second +
                     " (one file per rule set)");
  const YAML::Node version_node = r.required(root, "", "version", "the rule set's version");
  const std::string version =
      r.word(version_node, "version", kRuleSetChars, 64,
             "a version of 1 to 64 characters from [A-Za-z0-9_.-], e.g. \"2026.11.1\"");
  const YAML::Node list = r.required(root, "", "rules", "a list of rules");
  if (!list.IsSequence() || list.size() == 0)
    r.fail(list, "rules: expected a non-empty list of rules, got '" + describe_node(list) + "'");
  std::vector<Rule> rules;
  std::size_t index = 0;
  for (const YAML::Node& item : list) {
    rules.push_back(
        parse_rule(r, item, "rules[" + std::to_string(index++) + "]", ruleset, version, seen));
  }
  return rules;
}

}  // namespace

std::vector<Rule> load_rules_texts(const std::vector<RuleSourceText>& files) {
  Seen seen;
  std::vector<Rule> rules;
  for (const RuleSourceText& file : files) {
    std::vector<Rule> more = parse_file(parse_yaml_document(file.text, file.name), file.name, seen);
    rules.insert(rules.end(), std::make_move_iterator(more.begin()),
                 std::make_move_iterator(more.end()));
  }
  return rules;
}

std::vector<Rule> load_rules_text(std::string_view text, const std::string& source_name) {
  return load_rules_texts({RuleSourceText{source_name, std::string(text)}});
}

std::vector<std::string> expand_rule_paths(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code error;
    if (!fs::is_directory(path, error)) {
      files.push_back(path);  // reading it says what is wrong, if anything
      continue;
    }
    std::vector<std::string> found;
    for (const fs::directory_entry& entry : fs::directory_iterator(path, error)) {
      const std::string extension = entry.path().extension().string();
      if ((extension == ".yaml" || extension == ".yml") && entry.is_regular_file(error))
        found.push_back(entry.path().string());
    }
    if (error) throw ConfigError(path + ": cannot list the directory (" + error.message() + ")");
    if (found.empty()) throw ConfigError(path + ": no *.yaml or *.yml rule files in the directory");
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

std::vector<Rule> load_rule_files(const std::vector<std::string>& paths) {
  std::vector<RuleSourceText> files;
  for (const std::string& path : expand_rule_paths(paths))
    files.push_back({path, read_text_file(path, "rules file")});
  return load_rules_texts(files);
}

}  // namespace sluice
