// The rule compiler: rules → one stream-mode Hyperscan database (prefilter for patterns too large
// to compile exactly) → the versioned database file; every rule's examples scanned through the
// data path's canonicalisation. In core (not control) because it shares the file format, the
// scan and the canonicaliser with RuleDatabase; the YAML is read by control's rules_loader.
#include <hs/hs.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>

#include "rule_file.hpp"
#include "sluice/rules.hpp"

namespace sluice {
namespace {

bool has_flag(const Rule& rule, std::string_view name) {
  return std::find(rule.flags.begin(), rule.flags.end(), name) != rule.flags.end();
}

// Hyperscan errors an exact compile may give for a pattern that a prefilter compile can take.
bool too_large(std::string_view message) {
  return message.find("too large") != std::string_view::npos ||
         message.find("Resource limit") != std::string_view::npos ||
         message.find("too many") != std::string_view::npos;
}

std::string quote_example(std::string_view text) {
  constexpr std::size_t kMax = 120;
  std::string out = "\"";
  for (char c : text.substr(0, kMax)) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  if (text.size() > kMax) out += "…";
  return out + "\"";
}

struct HsDatabase {
  hs_database_t* db = nullptr;
  ~HsDatabase() {
    if (db != nullptr) hs_free_database(db);
  }
};

struct HsCompileError {
  hs_compile_error_t* error = nullptr;
  ~HsCompileError() {
    if (error != nullptr) hs_free_compile_error(error);
  }
};

// `.` as the confirm regex writes it: one UTF-8 character (the scanner's UTF8 mode) or one byte.
// Byte ranges never cross 0x7f/0x80, where libstdc++'s signed char and its unsigned comparisons
// would disagree.
constexpr std::string_view kUtf8Char =
    "(?:[\\x00-\\x7f]|[\\xc2-\\xdf][\\x80-\\xbf]|[\\xe0-\\xef][\\x80-\\xbf][\\x80-\\xbf]|"
    "[\\xf0-\\xf4][\\x80-\\xbf][\\x80-\\xbf][\\x80-\\xbf])";
constexpr std::string_view kUtf8CharButNewline =
    "(?:[\\x00-\\x09\\x0b-\\x7f]|[\\xc2-\\xdf][\\x80-\\xbf]|[\\xe0-\\xef][\\x80-\\xbf][\\x80-\\xbf]"
    "|"
    "[\\xf0-\\xf4][\\x80-\\xbf][\\x80-\\xbf][\\x80-\\xbf])";

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

std::optional<RuleTarget> parse_rule_target(std::string_view text) {
  if (text == "native") return RuleTarget::kNative;
  if (text == "avx2") return RuleTarget::kAvx2;
  if (text == "generic") return RuleTarget::kGeneric;
  return std::nullopt;
}

unsigned rule_hs_flags(const Rule& rule) {
  unsigned flags = 0;
  for (const std::string& name : rule.flags) {
    if (const RuleFlag* flag = find_rule_flag(name)) flags |= flag->hs_flags;
  }
  if (rule.prefilter) {
    // Neither is allowed with a prefilter: its hits are confirmed, each may be a false one.
    flags &= ~(HS_FLAG_SOM_LEFTMOST | HS_FLAG_SINGLEMATCH);
    return flags | HS_FLAG_PREFILTER;
  }
  if ((flags & HS_FLAG_SOM_LEFTMOST) == 0) flags |= HS_FLAG_SINGLEMATCH;
  return flags;
}

std::string confirm_regex_source(const Rule& rule) {
  const std::string& p = rule.pattern;
  const bool dotall = has_flag(rule, "dotall");
  const bool utf8 = (rule_hs_flags(rule) & HS_FLAG_UTF8) != 0;
  std::string out;
  bool in_class = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      if (i + 1 >= p.size()) throw std::invalid_argument("a trailing backslash");
      const char e = p[i + 1];
      const bool alnum = (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9');
      std::size_t length = 2;
      if (alnum) {
        if (e == 'x') {
          if (i + 3 >= p.size() || !is_hex(p[i + 2]) || !is_hex(p[i + 3]))
            throw std::invalid_argument("\\x other than \\xHH");
          length = 4;
        } else if (e == 'c') {
          if (i + 2 >= p.size()) throw std::invalid_argument("\\c without a letter");
          length = 3;
        } else if (e == '0') {
          if (i + 2 < p.size() && p[i + 2] >= '0' && p[i + 2] <= '9')
            throw std::invalid_argument("an octal escape \\0NN");
        } else if (std::string_view("dDwWsSbBnrtfv").find(e) == std::string_view::npos) {
          throw std::invalid_argument(std::string("the escape \\") + e +
                                      " (ECMAScript lacks it or reads it otherwise)");
        }
      }
      out.append(p, i, length);
      i += length - 1;
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
        const std::size_t close = p.find(":]", i + 2);
        if (close == std::string::npos) throw std::invalid_argument("an unterminated [:class:]");
        out.append(p, i, close + 2 - i);
        i = close + 1;
        continue;
      }
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += '[';
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      // PCRE reads a ']' first in a class as itself; ECMAScript would close an empty class.
      if (i + 1 < p.size() && p[i + 1] == ']') {
        out += "\\]";
        ++i;
      }
      continue;
    }
    if (c == '.') {
      if (utf8) {
        out += dotall ? kUtf8Char : kUtf8CharButNewline;
      } else {
        out += dotall ? "[\\s\\S]" : "[^\\n]";
      }
      continue;
    }
    if (c == '(' && i + 1 < p.size() && p[i + 1] == '?') {
      if (i + 2 >= p.size() || p[i + 2] != ':')
        throw std::invalid_argument("the group '(?" +
                                    std::string(1, p[std::min(i + 2, p.size() - 1)]) +
                                    "' (only (?: is translated)");
    }
    out += c;
  }
  if (in_class) throw std::invalid_argument("an unterminated character class");
  return out;
}

std::string rules_content_hash(const std::vector<Rule>& rules) {
  std::vector<const Rule*> sorted;
  for (const Rule& rule : rules) sorted.push_back(&rule);
  std::sort(sorted.begin(), sorted.end(), [](const Rule* a, const Rule* b) {
    return std::tie(a->ruleset, a->id) < std::tie(b->ruleset, b->id);
  });
  nlohmann::json all = nlohmann::json::array();
  for (const Rule* rule : sorted) all.push_back(rule_file::rule_to_json(*rule, true, false));
  const auto digest =
      rule_file::sha256(all.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  return "sha256:" + rule_file::hex(digest);
}

RuleCompileResult compile_rules(const std::vector<Rule>& input, const RuleCompileOptions& options) {
  if (input.empty()) throw ConfigError("rules: nothing to compile (no rules)");
  std::vector<Rule> rules = input;
  std::map<std::string, const Rule*> ids;
  for (Rule& rule : rules) {
    rule.prefilter = false;
    const std::string where = rule.source.empty() ? "rules" : rule.source;
    if (rule.id.empty() || rule.pattern.empty())
      throw ConfigError(where + ": a rule needs an id and a pattern");
    if (const auto [it, fresh] = ids.emplace(rule.id, &rule); !fresh)
      throw ConfigError(where + ": duplicate rule id '" + rule.id + "' (first defined at " +
                        it->second->source + ")");
    for (const std::string& flag : rule.flags) {
      const RuleFlag* known = find_rule_flag(flag);
      if (known == nullptr || known->hs_flags == 0)
        throw ConfigError(where + ": rule '" + rule.id + "': flag '" + flag + "' is not allowed");
    }
  }

  // Every pattern alone first, so that all syntax errors are reported at once (the set compile
  // stops at the first). A pattern too large for an exact compile is left to the set compile.
  std::string errors;
  for (const Rule& rule : rules) {
    hs_expr_info_t* info = nullptr;
    HsCompileError error;
    if (hs_expression_info(rule.pattern.c_str(), rule_hs_flags(rule), &info, &error.error) !=
        HS_SUCCESS) {
      const std::string message = error.error != nullptr ? error.error->message : "unknown error";
      if (!too_large(message))
        errors += (errors.empty() ? "" : "\n") + rule.source + ": rule '" + rule.id +
                  "': Hyperscan: " + message;
    } else if (info != nullptr && info->min_width == 0) {
      errors += (errors.empty() ? "" : "\n") + rule.source + ": rule '" + rule.id +
                "': the pattern matches empty text; a rule must match at least one character";
    }
    std::free(info);
  }
  if (!errors.empty()) throw ConfigError(errors);

  const bool som = std::any_of(rules.begin(), rules.end(),
                               [](const Rule& rule) { return has_flag(rule, "som"); });
  const unsigned mode = HS_MODE_STREAM | (som ? HS_MODE_SOM_HORIZON_LARGE : 0);
  std::vector<std::string> exact_errors(rules.size());
  hs_platform_info_t platform{};
  if (hs_populate_platform(&platform) != HS_SUCCESS)
    throw ConfigError("rules: Hyperscan cannot describe this host's CPU");
  if (options.target == RuleTarget::kAvx2) {
    platform.cpu_features = HS_CPU_FEATURES_AVX2;
  } else if (options.target == RuleTarget::kGeneric) {
    platform.cpu_features = 0;
    platform.tune = HS_TUNE_FAMILY_GENERIC;
  }
  HsDatabase database;
  RuleCompileResult result;
  const auto started = std::chrono::steady_clock::now();
  for (;;) {
    std::vector<const char*> patterns;
    std::vector<unsigned> flags, ids_of;
    for (std::size_t i = 0; i < rules.size(); ++i) {
      patterns.push_back(rules[i].pattern.c_str());
      flags.push_back(rule_hs_flags(rules[i]));
      ids_of.push_back(static_cast<unsigned>(i));
    }
    HsCompileError error;
    if (hs_compile_multi(patterns.data(), flags.data(), ids_of.data(),
                         static_cast<unsigned>(rules.size()), mode, &platform, &database.db,
                         &error.error) == HS_SUCCESS) {
      break;
    }
    database.db = nullptr;
    const std::string message = error.error != nullptr ? error.error->message : "unknown error";
    const int at = error.error != nullptr ? error.error->expression : -1;
    if (at < 0 || static_cast<std::size_t>(at) >= rules.size())
      throw ConfigError("rules: Hyperscan cannot compile the set: " + message);
    Rule& rule = rules[static_cast<std::size_t>(at)];
    if (!rule.prefilter && too_large(message)) {
      rule.prefilter = true;
      exact_errors[static_cast<std::size_t>(at)] = message;
      continue;
    }
    throw ConfigError(rule.source + ": rule '" + rule.id + "': Hyperscan: " + message +
                      (rule.prefilter ? " (as a prefilter; the exact compile said: " +
                                            exact_errors[static_cast<std::size_t>(at)] + ")"
                                      : ""));
  }
  result.compile_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Rule& rule = rules[i];
    if (!rule.prefilter) continue;
    try {
      (void)rule_file::confirm_regex(rule);
    } catch (const std::exception& e) {  // our translation's refusal, std::regex_error
      throw ConfigError(rule.source + ": rule '" + rule.id + "': too large for Hyperscan (" +
                        exact_errors[i] +
                        ") and the prefilter's confirm step cannot read it: " + e.what());
    }
    result.notes.push_back(rule.id +
                           ": compiled as a prefilter (exact compile: " + exact_errors[i] +
                           "); a hit counts only once std::regex finds the pattern in the last " +
                           std::to_string(RuleStream::kConfirmWindowBytes) +
                           " bytes of the stream: a longer match is not counted");
  }

  char* serialized = nullptr;
  std::size_t serialized_length = 0;
  if (hs_serialize_database(database.db, &serialized, &serialized_length) != HS_SUCCESS)
    throw ConfigError("rules: Hyperscan cannot serialize the database");
  const std::string hs_bytes(serialized, serialized_length);
  std::free(serialized);

  nlohmann::json table = nlohmann::json::array();
  for (const Rule& rule : rules) table.push_back(rule_file::rule_to_json(rule, false, true));
  nlohmann::json sets = nlohmann::json::array();
  std::vector<std::string> set_order;
  std::map<std::string, std::pair<std::string, uint32_t>> set_info;
  for (const Rule& rule : rules) {
    auto [it, fresh] = set_info.try_emplace(rule.ruleset, rule.ruleset_version, 0);
    if (fresh) set_order.push_back(rule.ruleset);
    ++it->second.second;
  }
  for (const std::string& name : set_order) {
    sets.push_back(
        {{"name", name}, {"version", set_info[name].first}, {"rules", set_info[name].second}});
  }
  std::string table_text, sets_text;
  try {
    table_text = table.dump();
    sets_text = sets.dump();
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(std::string("rules: a rule holds text that is not valid UTF-8: ") + e.what());
  }

  std::string& out = result.bytes;
  out.append(kRulesMagic);
  rule_file::put_u32(out, kRulesFormatVersion);
  rule_file::put_u32(out, 4);
  const auto section = [&out](std::string_view tag, std::string_view payload) {
    out.append(tag);
    rule_file::put_u64(out, payload.size());
    out.append(payload);
  };
  section(rule_file::kRuleTable, table_text);
  section(rule_file::kRuleSets, sets_text);
  section(rule_file::kContentHash, rules_content_hash(rules));
  section(rule_file::kHyperscan, hs_bytes);
  const auto checksum = rule_file::sha256(out);
  out.append(reinterpret_cast<const char*>(checksum.data()), checksum.size());

  result.database = RuleDatabase::from_bytes(out, "<compiled rules>");

  if (options.check_examples) {
    std::string failures;
    std::size_t failed = 0;
    for (const ExampleOutcome& outcome : run_rule_examples(*result.database, rules)) {
      if (outcome.ok()) continue;
      ++failed;
      const Rule& rule = rules[outcome.rule];
      failures +=
          (failures.empty() ? "" : "\n") + (outcome.source.empty() ? rule.source : outcome.source) +
          ": rule '" + rule.id + "': " +
          (outcome.expect_match ? "match example not matched: " : "no_match example matched: ") +
          quote_example(outcome.text);
      if (outcome.canonical != outcome.text)
        failures += " (scanned as " + quote_example(outcome.canonical) + ")";
    }
    if (failed > 0)
      throw ConfigError(failures + "\n" + std::to_string(failed) +
                        (failed == 1 ? " example fails" : " examples fail"));
  }
  return result;
}

std::vector<ExampleOutcome> run_rule_examples(const RuleDatabase& db,
                                              const std::vector<Rule>& rules) {
  std::vector<ExampleOutcome> outcomes;
  RuleTextScanner scanner(db.shared_from_this());
  for (uint32_t i = 0; i < rules.size() && i < db.rule_count(); ++i) {
    const Rule& rule = rules[i];
    for (int pass = 0; pass < 2; ++pass) {
      const bool expect = pass == 0;
      const std::vector<std::string>& texts = expect ? rule.match_examples : rule.no_match_examples;
      const std::vector<std::string>& sources =
          expect ? rule.match_example_sources : rule.no_match_example_sources;
      for (std::size_t k = 0; k < texts.size(); ++k) {
        scanner.scan(texts[k], db.selection_all(), rule.scope, rule.header);
        const auto matches = scanner.matches();
        ExampleOutcome outcome;
        outcome.rule = i;
        outcome.expect_match = expect;
        outcome.matched = std::find(matches.begin(), matches.end(), i) != matches.end();
        outcome.text = texts[k];
        outcome.canonical = scanner.scanned_text();
        outcome.source = k < sources.size() ? sources[k] : rule.source;
        outcomes.push_back(std::move(outcome));
      }
    }
  }
  return outcomes;
}

}  // namespace sluice
