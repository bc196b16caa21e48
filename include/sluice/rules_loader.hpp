// Loading rule files (YAML) into the rule model of sluice/rules.hpp; compile_rules turns the
// result into a database file.
//
//   ruleset: prompt-injection            # [A-Za-z0-9_.-]{1,64}, one file per rule set
//   version: "2026.11.1"
//   rules:
//     - id: pi.ignore-previous           # [A-Za-z0-9_.:-]{1,128}, unique across every file
//       description: …                   # optional
//       pattern: 'ignore\s+(all\s+)?previous\s+instructions'
//       flags: [caseless]                # optional: caseless dotall multiline singlematch utf8
//                                        #   ucp som (allowempty is refused: a rule must not
//                                        #   match empty text)
//       scope: prompt                    # prompt (default) | completion | path | header:<name>
//       action: block                    # block | flag | log (required)
//       tiers: [free, verified]          # optional; omitted: every tier
//       mode: enforce                    # enforce (default) | shadow
//       severity: high                   # info | low | medium (default) | high | critical
//       examples: { match: [...], no_match: [...] }   # optional, scanned by the compiler
//
// Every problem is a ConfigError "FILE:LINE:COL: rules[3].scope: expected prompt, completion,
// path or header:<name>, got 'x'". Off the data path.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sluice/config.hpp"  // ConfigError
#include "sluice/rules.hpp"

namespace sluice {

struct RuleSourceText {
  std::string name;  // for messages: the file's path
  std::string text;
};

// One file's rules, in file order.
std::vector<Rule> load_rules_text(std::string_view text, const std::string& source_name);
// Several files: rules in the order given; rule ids and rule set names unique across them.
std::vector<Rule> load_rules_texts(const std::vector<RuleSourceText>& files);
// Files as given; a directory stands for its *.yaml and *.yml files (not recursive), sorted.
std::vector<std::string> expand_rule_paths(const std::vector<std::string>& paths);
// expand_rule_paths, read, load_rules_texts.
std::vector<Rule> load_rule_files(const std::vector<std::string>& paths);

}  // namespace sluice
