// sluicectl rules …: compile rule files into the database the appliance loads, test them on their
// examples and on corpora, scan JSON Lines with a compiled database, lint rule files.
// Everything scans the way the data path does: the same canonicalisation (prompt text) and the
// same match callback (sluice/rules.hpp).
#include "sluicectl_rules.hpp"

#include <hs/hs.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "sluice/rules.hpp"
#include "sluice/rules_loader.hpp"

namespace sluice::ctl {
namespace {

constexpr int kUsageError = 2;
constexpr int kFindings = 1;

constexpr std::string_view kRulesHelp = R"(usage: sluicectl rules COMMAND ...

  compile FILES|DIRS -o rules.db [--target native|avx2|generic]
                  validate and compile rule files (a directory: its *.yaml and *.yml files)
                  into the database file the appliance loads (`rules: rules.db` in its config)
  test FILES|DIRS [--corpus FILE.jsonl --expect block|none]...
                  compile in memory, report every rule's examples, and the hits per rule,
                  detection or false-positive rate on each corpus
  scan --db rules.db [--tier NAME] --jsonl IN.jsonl
                  one verdict line per input line, as the appliance would decide
  lint FILES|DIRS rules that can never match, shadowed rules, costly patterns

'sluicectl rules COMMAND --help' explains a command. Exit status: 0 done, 1 lint findings,
2 bad usage or bad input (errors name FILE:LINE:COLUMN, the rule id and what is wrong).
)";

constexpr std::string_view kCompileHelp =
    R"(usage: sluicectl rules compile FILES|DIRS -o rules.db [--target native|avx2|generic]

  Loads the rule files (a directory stands for its *.yaml and *.yml files, sorted), validates
  them (unknown keys, duplicate ids across files, bad values), compiles one Hyperscan
  stream-mode database, scans every rule's examples through the appliance's canonicalisation
  (a match example the rule misses, or a no_match example it matches, fails the compile),
  and writes the versioned database file: format version, rule table, rule set versions,
  content hash, the Hyperscan database and a SHA-256 checksum.

  A pattern too large for an exact compile becomes a prefilter: its hits count only once
  std::regex finds the pattern in the last 64 KiB of the scanned text, so a match longer than
  that is not counted. The output lists such rules.

  --target: the CPU the database is built for. Hyperscan refuses a database built for features
  the host lacks. native (default): this host's, the fastest where the appliance itself compiles;
  avx2: any x86-64 with AVX2; generic: any x86-64 (SSSE3), the slowest.

  Prints per rule set: rules by action and mode, its database size, stream state per scanned
  request and compile time on its own; then the same for the whole database (what the
  appliance loads), the scratch per worker, and the prefilter rules.
  Errors (exit status 2) name FILE:LINE:COLUMN, the rule id and Hyperscan's message.
)";

constexpr std::string_view kTestHelp =
    R"(usage: sluicectl rules test FILES|DIRS [--corpus FILE.jsonl --expect block|none]...

  Compiles the rules in memory and prints every rule's example results. Then, for each corpus
  (JSON Lines, one {"text": "..."} per line: the text of one user message), scans each line as
  prompt text with every rule of every tier and prints the lines each prompt rule hit, and:
    lines, lines blocked (an enforce-mode block rule matched), lines flagged, logged and hit
    by shadow rules;
    --expect block: the detection rate (blocked / lines);
    --expect none:  the false-positive rate (blocked / lines).
  Exit status 2 when an example fails (as compile would) or on bad input, else 0.
)";

constexpr std::string_view kScanHelp =
    R"(usage: sluicectl rules scan --db rules.db [--tier NAME] --jsonl IN.jsonl

  For each line {"text": "..."} of IN.jsonl ('-': stdin), the text of one user message,
  prints {"line": N, "action": "block"|"flag"|"log"|"none", "rules": [ids]}: the text is
  canonicalised as the appliance does and scanned with the rules of the tier.
    rules:  every rule of the tier that matched, in order of first match, shadow rules too;
    action: the strongest action among the matched enforce-mode rules (block > flag > log);
            shadow rules never count. The appliance stops at the first block; the scan goes on
            so that every matching rule is listed.
  --tier NAME: the rules without tiers and those listing NAME (a tier no rule names gets the
  untiered ones); '*' for every rule. Without --tier: the rules without tiers, as for a
  request that has no tier (admission off).
  A summary (lines, actions, time) goes to stderr. Blank lines are skipped; a line that is not
  a JSON object with a string "text" is an error (exit status 2).
)";

constexpr std::string_view kLintHelp = R"(usage: sluicectl rules lint FILES|DIRS

  Reports, as FILE:LINE:COLUMN: rule 'id': finding:
    - patterns that do not compile, can never match, match empty text, or match only at the
      end of the scanned text (a $ anchor: the end of the last field of a prompt), and prompt
      or completion patterns anchored with ^ without multiline (the start of the first field);
    - costly patterns: a leading .* (redundant: rules match anywhere), nested unbounded
      quantifiers such as (a+)+, bounded repeats over 1000, more than 1 KiB of stream state on
      their own, and patterns too large for an exact compile (they become prefilters);
      with Hyperscan's min and max match widths (hs_expression_info);
    - rules shadowed by another (a heuristic): same rule set, scope and header, the other rule
      applies to every tier this one does, is enforce-mode (or this one is shadow), has an
      equal or stronger action, and matches every match example of this one. Review them:
      the examples may just be too few;
    - rules without match examples.
  Exit status: 0 clean, 1 findings, 2 bad usage or files that do not load.
)";

bool wants_help(std::string_view arg) {
  return arg == "--help" || arg == "-h" || arg == "help";
}

int usage_error(const std::string& message, std::string_view help) {
  std::cerr << "sluicectl: rules " << message << "\n\n" << help;
  return kUsageError;
}

int input_error(const std::string& message) {
  std::cerr << message << "\n";
  return kUsageError;
}

std::string percent(std::size_t part, std::size_t whole) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(whole >= 1000 ? 2 : 1)
      << (whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole))
      << " %";
  return out.str();
}

std::string seconds(double s) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(s < 10 ? 3 : 1) << s << " s";
  return out.str();
}

std::string width_text(unsigned width) {
  return width == UINT_MAX ? "unbounded" : std::to_string(width);
}

struct ActionCounts {
  std::size_t block = 0, flag = 0, log = 0, shadow = 0;
  void add(const Rule& rule) {
    if (rule.mode == RuleMode::kShadow) ++shadow;
    if (rule.action == RuleAction::kBlock) ++block;
    if (rule.action == RuleAction::kFlag) ++flag;
    if (rule.action == RuleAction::kLog) ++log;
  }
};

// One row of the compile table.
void print_row(const std::string& name, const std::string& version, std::size_t rules,
               const ActionCounts& counts, const RuleDatabase& db, double compile_seconds) {
  std::cout << "  " << std::left << std::setw(28) << name << std::setw(12) << version << std::right
            << std::setw(6) << rules << std::setw(7) << counts.block << std::setw(6) << counts.flag
            << std::setw(5) << counts.log << std::setw(8) << counts.shadow << std::setw(12)
            << db.database_bytes() << std::setw(8) << db.stream_state_bytes() << std::setw(10)
            << seconds(compile_seconds) << "\n";
}

// ---- compile ----------------------------------------------------------------------------------

int compile(const std::vector<std::string_view>& args) {
  std::vector<std::string> paths;
  std::string output;
  RuleCompileOptions options;
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (wants_help(args[i])) {
      std::cout << kCompileHelp;
      return 0;
    }
    if (args[i] == "--target") {
      if (i + 1 >= args.size())
        return usage_error("compile: --target needs native, avx2 or generic", kCompileHelp);
      const std::optional<RuleTarget> target = parse_rule_target(args[++i]);
      if (!target)
        return usage_error("compile: --target: expected native, avx2 or generic, got '" +
                               std::string(args[i]) + "'",
                           kCompileHelp);
      options.target = *target;
    } else if (args[i] == "-o" || args[i] == "--output") {
      if (i + 1 >= args.size()) return usage_error("compile: -o needs a file name", kCompileHelp);
      output = std::string(args[++i]);
    } else if (args[i].starts_with("-")) {
      return usage_error("compile: unknown option '" + std::string(args[i]) + "'", kCompileHelp);
    } else {
      paths.emplace_back(args[i]);
    }
  }
  if (paths.empty()) return usage_error("compile: no rule files or directories", kCompileHelp);
  if (output.empty()) return usage_error("compile: missing -o rules.db", kCompileHelp);
  try {
    const std::vector<Rule> rules = load_rule_files(paths);
    const RuleCompileResult result = compile_rules(rules, options);
    const RuleDatabase& db = *result.database;

    const std::string temporary = output + ".tmp";
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      out.write(result.bytes.data(), static_cast<std::streamsize>(result.bytes.size()));
      out.close();
      if (!out) return input_error(output + ": cannot write the rule database");
    }
    std::error_code error;
    std::filesystem::rename(temporary, output, error);
    if (error)
      return input_error(output + ": cannot write the rule database (" + error.message() + ")");

    std::cout << output << ": " << rules.size() << " rules from " << db.rulesets().size()
              << (db.rulesets().size() == 1 ? " rule set" : " rule sets") << ", content "
              << db.content_hash() << ", format version " << kRulesFormatVersion << "\n";
    std::cout << "  " << std::left << std::setw(28) << "rule set" << std::setw(12) << "version"
              << std::right << std::setw(6) << "rules" << std::setw(7) << "block" << std::setw(6)
              << "flag" << std::setw(5) << "log" << std::setw(8) << "shadow" << std::setw(12)
              << "database B" << std::setw(8) << "state B" << std::setw(10) << "compile"
              << "\n";
    ActionCounts total;
    for (const RuleSetInfo& set : db.rulesets()) {
      std::vector<Rule> members;
      ActionCounts counts;
      for (const Rule& rule : rules) {
        if (rule.ruleset != set.name) continue;
        members.push_back(rule);
        counts.add(rule);
        total.add(rule);
      }
      RuleCompileOptions alone = options;
      alone.check_examples = false;
      const RuleCompileResult own =
          db.rulesets().size() == 1 ? RuleCompileResult{} : compile_rules(members, alone);
      print_row(set.name, set.version, members.size(), counts, own.database ? *own.database : db,
                own.database ? own.compile_seconds : result.compile_seconds);
    }
    print_row("all (the database file)", "", rules.size(), total, db, result.compile_seconds);
    std::cout << "  scratch " << db.scratch_bytes() << " bytes per worker; file "
              << result.bytes.size() << " bytes; " << db.hyperscan_info() << "\n";
    if (result.notes.empty()) {
      std::cout << "  prefilter rules: none\n";
    } else {
      std::cout << "  prefilter rules: " << result.notes.size() << "\n";
      for (const std::string& note : result.notes) std::cout << "    " << note << "\n";
    }
    std::size_t examples = 0;
    for (const Rule& rule : rules)
      examples += rule.match_examples.size() + rule.no_match_examples.size();
    std::cout << "  examples: " << examples << " passed\n";
    return 0;
  } catch (const ConfigError& e) {
    return input_error(e.what());
  } catch (const std::exception& e) {
    return input_error(std::string("sluicectl rules compile: ") + e.what());
  }
}

// ---- corpora ----------------------------------------------------------------------------------

// Calls on_text(line_number, text) for each non-blank line; returns an error message or "".
template <typename OnText>
std::string read_jsonl(std::istream& in, const std::string& name, OnText&& on_text) {
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
    if (json.is_discarded() || !json.is_object() || !json.contains("text") ||
        !json["text"].is_string()) {
      return name + ":" + std::to_string(number) +
             ": expected a JSON object with a string \"text\" (one per line)";
    }
    on_text(number, json["text"].get_ref<const std::string&>());
  }
  if (in.bad()) return name + ": read error";
  return "";
}

struct Corpus {
  std::string path;
  std::string expect;  // "block" or "none"
};

int test(const std::vector<std::string_view>& args) {
  std::vector<std::string> paths;
  std::vector<Corpus> corpora;
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (wants_help(args[i])) {
      std::cout << kTestHelp;
      return 0;
    }
    if (args[i] == "--corpus" || args[i] == "--expect") {
      if (i + 1 >= args.size())
        return usage_error("test: " + std::string(args[i]) + " needs a value", kTestHelp);
      const std::string value(args[++i]);
      if (args[i - 1] == "--corpus") {
        corpora.push_back({value, ""});
      } else {
        if (corpora.empty() || !corpora.back().expect.empty())
          return usage_error("test: --expect follows its --corpus FILE", kTestHelp);
        if (value != "block" && value != "none")
          return usage_error("test: --expect: expected block or none, got '" + value + "'",
                             kTestHelp);
        corpora.back().expect = value;
      }
    } else if (args[i].starts_with("-")) {
      return usage_error("test: unknown option '" + std::string(args[i]) + "'", kTestHelp);
    } else {
      paths.emplace_back(args[i]);
    }
  }
  if (paths.empty()) return usage_error("test: no rule files or directories", kTestHelp);
  for (const Corpus& corpus : corpora) {
    if (corpus.expect.empty())
      return usage_error("test: --corpus " + corpus.path + " needs --expect block|none", kTestHelp);
  }
  try {
    const std::vector<Rule> rules = load_rule_files(paths);
    RuleCompileOptions options;
    options.check_examples = false;
    const RuleCompileResult result = compile_rules(rules, options);
    const RuleDatabase& db = *result.database;
    for (const std::string& note : result.notes) std::cout << "note: " << note << "\n";

    // Examples, per rule.
    const std::vector<ExampleOutcome> outcomes = run_rule_examples(db, rules);
    std::size_t failed = 0;
    std::cout << "examples (" << rules.size() << " rules):\n";
    for (uint32_t i = 0; i < rules.size(); ++i) {
      std::size_t match_ok = 0, match_all = 0, none_ok = 0, none_all = 0;
      std::string details;
      for (const ExampleOutcome& outcome : outcomes) {
        if (outcome.rule != i) continue;
        (outcome.expect_match ? match_all : none_all)++;
        if (outcome.ok()) {
          (outcome.expect_match ? match_ok : none_ok)++;
          continue;
        }
        ++failed;
        details +=
            "        " + outcome.source + ": " +
            (outcome.expect_match ? "match example not matched: " : "no_match example matched: ") +
            nlohmann::json(outcome.text)
                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
            "\n";
      }
      const bool ok = match_ok == match_all && none_ok == none_all;
      std::cout << "  " << std::left << std::setw(6) << (ok ? "ok" : "FAIL") << std::setw(40)
                << rules[i].id << std::right << "match " << match_ok << "/" << match_all
                << "  no_match " << none_ok << "/" << none_all
                << (match_all == 0 ? "  (no match examples)" : "") << "\n"
                << details;
    }
    std::cout << "  " << (outcomes.size() - failed) << " of " << outcomes.size()
              << " examples pass\n";

    RuleTextScanner scanner(result.database);
    for (const Corpus& corpus : corpora) {
      std::ifstream in(corpus.path);
      if (!in) return input_error(corpus.path + ": cannot open corpus");
      std::vector<std::size_t> hits(db.rule_count(), 0);
      std::size_t lines = 0, blocked = 0, flagged = 0, logged = 0, shadow = 0;
      const std::string error =
          read_jsonl(in, corpus.path, [&](std::size_t, const std::string& text) {
            ++lines;
            scanner.scan(text, db.selection_all(), RuleScope::kPrompt);
            bool any_block = false, any_flag = false, any_log = false, any_shadow = false;
            for (uint32_t rule : scanner.matches()) {
              ++hits[rule];
              const Rule& r = db.rule(rule);
              if (r.mode == RuleMode::kShadow) {
                any_shadow = true;
                continue;
              }
              any_block |= r.action == RuleAction::kBlock;
              any_flag |= r.action == RuleAction::kFlag;
              any_log |= r.action == RuleAction::kLog;
            }
            blocked += any_block;
            flagged += any_flag;
            logged += any_log;
            shadow += any_shadow;
          });
      if (!error.empty()) return input_error(error);
      std::cout << "\ncorpus " << corpus.path << " (expect " << corpus.expect << "): " << lines
                << " lines\n  " << std::setw(7) << "lines"
                << "  rule\n";
      for (uint32_t i = 0; i < db.rule_count(); ++i) {
        const Rule& rule = db.rule(i);
        if (rule.scope != RuleScope::kPrompt) continue;
        std::string what(to_string(rule.action));
        if (rule.mode == RuleMode::kShadow) what += ", shadow";
        if (!rule.tiers.empty()) {
          what += ", tiers";
          for (const std::string& tier : rule.tiers) what += " " + tier;
        }
        std::cout << "  " << std::setw(7) << hits[i] << "  " << rule.id << " (" << what << ")\n";
      }
      std::cout << "  blocked " << blocked << " of " << lines << " lines ("
                << percent(blocked, lines) << "); flagged " << flagged << ", logged " << logged
                << ", shadow hits " << shadow << " lines\n";
      if (corpus.expect == "block") {
        std::cout << "  detection rate: " << percent(blocked, lines) << " (" << blocked << " of "
                  << lines << " lines blocked)\n";
      } else {
        std::cout << "  false-positive rate: " << percent(blocked, lines) << " (" << blocked
                  << " of " << lines << " lines blocked)\n";
      }
    }
    if (failed > 0) {
      std::cerr << "sluicectl rules test: " << failed
                << (failed == 1 ? " example fails" : " examples fail")
                << " (rules compile would refuse these rules)\n";
      return kUsageError;
    }
    return 0;
  } catch (const ConfigError& e) {
    return input_error(e.what());
  } catch (const std::exception& e) {
    return input_error(std::string("sluicectl rules test: ") + e.what());
  }
}

// ---- scan -------------------------------------------------------------------------------------

int scan(const std::vector<std::string_view>& args) {
  std::string db_path, input;
  std::optional<std::string> tier;
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (wants_help(args[i])) {
      std::cout << kScanHelp;
      return 0;
    }
    if (i + 1 >= args.size())
      return usage_error("scan: '" + std::string(args[i]) + "' needs a value or is unknown",
                         kScanHelp);
    const std::string value(args[++i]);
    if (args[i - 1] == "--db") {
      db_path = value;
    } else if (args[i - 1] == "--tier") {
      tier = value;
    } else if (args[i - 1] == "--jsonl") {
      input = value;
    } else {
      return usage_error("scan: unknown option '" + std::string(args[i - 1]) + "'", kScanHelp);
    }
  }
  if (db_path.empty()) return usage_error("scan: missing --db rules.db", kScanHelp);
  if (input.empty()) return usage_error("scan: missing --jsonl IN.jsonl", kScanHelp);
  try {
    const auto started = std::chrono::steady_clock::now();
    const std::shared_ptr<const RuleDatabase> db = RuleDatabase::load(db_path);
    const RuleDatabase& rules = *db;
    const TierSelection& selection = !tier          ? rules.selection_untiered()
                                     : *tier == "*" ? rules.selection_all()
                                                    : rules.selection(*tier);
    RuleTextScanner scanner(db);

    std::ifstream file;
    std::vector<char> buffer(1 << 20);
    if (input != "-") {
      file.rdbuf()->pubsetbuf(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      file.open(input, std::ios::binary);
      if (!file) return input_error(input + ": cannot open");
    }
    std::istream& in = input == "-" ? std::cin : file;

    std::string out;
    out.reserve(1 << 16);
    std::size_t counts[4] = {};  // none, log, flag, block
    std::size_t lines = 0, bytes = 0;
    const std::string error =
        read_jsonl(in, input, [&](std::size_t number, const std::string& text) {
          ++lines;
          bytes += text.size();
          scanner.scan(text, selection, RuleScope::kPrompt);
          int strongest = 0;
          out += "{\"line\": " + std::to_string(number) + ", \"action\": \"";
          std::string ids;
          for (uint32_t index : scanner.matches()) {
            const Rule& rule = rules.rule(index);
            if (rule.mode == RuleMode::kEnforce)
              strongest = std::max(strongest, action_strength(rule.action));
            ids += (ids.empty() ? "\"" : ", \"") + rule.id + "\"";  // ids are [A-Za-z0-9_.:-]
          }
          static constexpr std::string_view kActions[] = {"none", "log", "flag", "block"};
          ++counts[strongest];
          out += kActions[strongest];
          out += "\", \"rules\": [" + ids + "]}\n";
          if (out.size() >= (1 << 16) - 512) {
            std::cout.write(out.data(), static_cast<std::streamsize>(out.size()));
            out.clear();
          }
        });
    std::cout.write(out.data(), static_cast<std::streamsize>(out.size()));
    std::cout.flush();
    if (!error.empty()) return input_error(error);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cerr << "sluicectl rules scan: " << lines << " lines (" << bytes << " bytes of text) in "
              << seconds(elapsed) << " (" << static_cast<uint64_t>(lines / std::max(elapsed, 1e-9))
              << " lines/s), tier " << (!tier ? "(none: untiered rules)" : *tier) << ": block "
              << counts[3] << ", flag " << counts[2] << ", log " << counts[1] << ", none "
              << counts[0] << "\n";
    return 0;
  } catch (const ConfigError& e) {
    return input_error(e.what());
  } catch (const std::exception& e) {
    return input_error(std::string("sluicectl rules scan: ") + e.what());
  }
}

// ---- lint -------------------------------------------------------------------------------------

// A group whose body holds an unbounded quantifier, itself under an unbounded quantifier:
// (a+)+, (\w+\s?)*, (x|y*){2,}. Hyperscan does not backtrack, but such patterns cost state and
// say something other than what their author meant.
bool nested_unbounded(std::string_view p) {
  std::vector<bool> inner;                        // per open group: holds an unbounded quantifier
  bool last_group_unbounded = false;              // the group just closed held one
  const auto unbounded_at = [&](std::size_t i) {  // quantifier at i is + * or {n,}
    if (i >= p.size()) return false;
    if (p[i] == '+' || p[i] == '*') return true;
    if (p[i] != '{') return false;
    const std::size_t close = p.find('}', i);
    return close != std::string_view::npos && p[close - 1] == ',';
  };
  bool in_class = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      ++i;
      if (!inner.empty() && unbounded_at(i + 1)) inner.back() = true;
      continue;
    }
    if (in_class) {
      if (c == ']') {
        in_class = false;
        if (!inner.empty() && unbounded_at(i + 1)) inner.back() = true;
      }
      continue;
    }
    if (c == '[') {
      in_class = true;
      if (i + 1 < p.size() && p[i + 1] == '^') ++i;
      if (i + 1 < p.size() && p[i + 1] == ']') ++i;
      continue;
    }
    if (c == '(') {
      inner.push_back(false);
      continue;
    }
    if (c == ')' && !inner.empty()) {
      last_group_unbounded = inner.back();
      inner.pop_back();
      if (last_group_unbounded && unbounded_at(i + 1)) return true;
      if (!inner.empty() && (last_group_unbounded || unbounded_at(i + 1))) inner.back() = true;
      continue;
    }
    if (!inner.empty() && c != '+' && c != '*' && c != '?' && unbounded_at(i + 1))
      inner.back() = true;
  }
  return false;
}

// The largest {n} or {n,m} bound in the pattern (outside classes and escapes).
unsigned long largest_repeat(std::string_view p) {
  unsigned long largest = 0;
  bool in_class = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\') {
      ++i;
      continue;
    }
    if (in_class) {
      in_class = p[i] != ']';
      continue;
    }
    if (p[i] == '[') {
      in_class = true;
      continue;
    }
    if (p[i] != '{') continue;
    const std::size_t close = p.find('}', i);
    if (close == std::string_view::npos) break;
    const std::string inside(p.substr(i + 1, close - i - 1));
    if (inside.empty() || inside.find_first_not_of("0123456789,") != std::string::npos) continue;
    for (std::size_t at = 0; at < inside.size();) {
      const std::size_t comma = inside.find(',', at);
      const std::string number = inside.substr(at, comma - at);
      if (!number.empty()) largest = std::max(largest, std::strtoul(number.c_str(), nullptr, 10));
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  return largest;
}

struct Finding {
  std::size_t rule;
  std::string text;
};

int lint(const std::vector<std::string_view>& args) {
  std::vector<std::string> paths;
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (wants_help(args[i])) {
      std::cout << kLintHelp;
      return 0;
    }
    if (args[i].starts_with("-"))
      return usage_error("lint: unknown option '" + std::string(args[i]) + "'", kLintHelp);
    paths.emplace_back(args[i]);
  }
  if (paths.empty()) return usage_error("lint: no rule files or directories", kLintHelp);
  std::vector<Rule> rules;
  try {
    rules = load_rule_files(paths);
  } catch (const ConfigError& e) {
    return input_error(e.what());
  }

  std::vector<Finding> findings;
  std::vector<Rule> compilable;  // for the shadowing analysis
  std::vector<std::size_t> compilable_index;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Rule& rule = rules[i];
    const auto note = [&](const std::string& text) { findings.push_back({i, text}); };
    hs_expr_info_t* info = nullptr;
    hs_compile_error_t* error = nullptr;
    const unsigned flags = rule_hs_flags(rule);
    if (hs_expression_info(rule.pattern.c_str(), flags, &info, &error) != HS_SUCCESS) {
      note(std::string("does not compile: Hyperscan: ") + (error ? error->message : "?"));
      hs_free_compile_error(error);
      continue;
    }
    const unsigned min_width = info->min_width, max_width = info->max_width;
    const bool only_at_end = info->matches_only_at_eod != 0;
    std::free(info);
    const std::string widths =
        " (match width " + width_text(min_width) + " to " + width_text(max_width) + " bytes)";
    const bool multiline =
        std::find(rule.flags.begin(), rule.flags.end(), "multiline") != rule.flags.end();
    if (min_width == 0) note("matches empty text" + widths);
    if (only_at_end)
      note("matches only at the end of the scanned text ($ or \\z)" +
           std::string(scope_is_canonical(rule.scope)
                           ? ": in a prompt, the end of its last field only"
                           : "") +
           widths);
    if (scope_is_canonical(rule.scope) && !multiline &&
        (rule.pattern.starts_with("^") || rule.pattern.starts_with("\\A")))
      note(
          "anchored at the start of the scanned text (^ without multiline): in a prompt, the "
          "start of its first field only" +
          widths);
    const std::string_view p = rule.pattern;
    if (p.starts_with(".*") || p.starts_with("^.*") || p.starts_with("(.*") ||
        p.starts_with(".+") || p.starts_with("(?:.*"))
      note(
          "leading .* is redundant (a rule matches anywhere in the stream) and unbounds the "
          "match" +
          widths);
    if (nested_unbounded(p))
      note("nested unbounded quantifiers (like (a+)+): costly, and rarely what was meant" + widths);
    if (const unsigned long repeat = largest_repeat(p); repeat > 1000)
      note("a bounded repeat of " + std::to_string(repeat) + ": large stream state or a prefilter" +
           widths);

    // On its own, exactly: stream state, and whether it needs a prefilter.
    hs_database_t* alone = nullptr;
    if (hs_compile(rule.pattern.c_str(), flags,
                   HS_MODE_STREAM | (flags & HS_FLAG_SOM_LEFTMOST ? HS_MODE_SOM_HORIZON_LARGE : 0),
                   nullptr, &alone, &error) != HS_SUCCESS) {
      note(std::string("too large for an exact compile (") + (error ? error->message : "?") +
           "): it becomes a prefilter, confirmed on the last 64 KiB of the stream" + widths);
      hs_free_compile_error(error);
    } else {
      std::size_t state = 0;
      hs_stream_size(alone, &state);
      hs_free_database(alone);
      if (state > 1024)
        note("stream state " + std::to_string(state) + " bytes per stream on its own" + widths);
    }
    if (rule.match_examples.empty())
      note("no match examples: the compiler cannot check it, nor lint its shadowing");
    compilable.push_back(rule);
    compilable_index.push_back(i);
  }

  // Shadowing, from the examples, on one database of every rule that compiles.
  std::shared_ptr<const RuleDatabase> db;
  if (!compilable.empty()) {
    try {
      RuleCompileOptions options;
      options.check_examples = false;
      db = compile_rules(compilable, options).database;
    } catch (const ConfigError& e) {
      std::cout << "the rules do not compile together, shadowing not checked: " << e.what() << "\n";
      findings.push_back({rules.size(), ""});
    }
  }
  if (db) {
    RuleTextScanner scanner(db);
    const auto covers_tiers = [](const Rule& wide, const Rule& narrow) {
      if (wide.tiers.empty()) return true;
      if (narrow.tiers.empty()) return false;
      return std::all_of(narrow.tiers.begin(), narrow.tiers.end(), [&](const std::string& t) {
        return std::find(wide.tiers.begin(), wide.tiers.end(), t) != wide.tiers.end();
      });
    };
    // covering[a]: rules (indexes into compilable) matching every match example of a.
    std::vector<std::set<uint32_t>> covering(compilable.size());
    for (uint32_t a = 0; a < compilable.size(); ++a) {
      const Rule& rule = compilable[a];
      bool first = true;
      for (const std::string& example : rule.match_examples) {
        scanner.scan(example, db->selection_all(), rule.scope, rule.header);
        std::set<uint32_t> matched(scanner.matches().begin(), scanner.matches().end());
        if (first) {
          covering[a] = std::move(matched);
          first = false;
        } else {
          std::set<uint32_t> both;
          std::set_intersection(covering[a].begin(), covering[a].end(), matched.begin(),
                                matched.end(), std::inserter(both, both.begin()));
          covering[a] = std::move(both);
        }
      }
    }
    for (uint32_t a = 0; a < compilable.size(); ++a) {
      const Rule& rule = compilable[a];
      for (uint32_t b : covering[a]) {
        if (b == a) continue;
        const Rule& other = compilable[b];
        const bool shadows = other.ruleset == rule.ruleset && other.scope == rule.scope &&
                             other.header == rule.header && covers_tiers(other, rule) &&
                             (other.mode == RuleMode::kEnforce || rule.mode == RuleMode::kShadow) &&
                             action_strength(other.action) >= action_strength(rule.action);
        if (!shadows) continue;
        // Two rules that shadow each other: the later one is reported.
        const bool mutual = covering[b].count(a) != 0 && covers_tiers(rule, other) &&
                            rule.mode == other.mode && rule.action == other.action;
        if (mutual && a < b) continue;
        findings.push_back(
            {compilable_index[a],
             "shadowed by '" + other.id + "' (" + other.source + "): it matches all " +
                 std::to_string(rule.match_examples.size()) +
                 " match examples of this rule, in the same scope and tiers, with action " +
                 std::string(to_string(other.action)) +
                 " >= " + std::string(to_string(rule.action)) +
                 " (a heuristic: check what this rule catches that the other does not)"});
        break;
      }
    }
  }

  std::stable_sort(findings.begin(), findings.end(),
                   [](const Finding& x, const Finding& y) { return x.rule < y.rule; });
  std::set<std::size_t> flagged_rules;
  for (const Finding& finding : findings) {
    if (finding.rule >= rules.size()) continue;
    const Rule& rule = rules[finding.rule];
    std::cout << rule.source << ": rule '" << rule.id << "': " << finding.text << "\n";
    flagged_rules.insert(finding.rule);
  }
  if (findings.empty()) {
    std::cout << "clean: " << rules.size() << (rules.size() == 1 ? " rule" : " rules") << "\n";
    return 0;
  }
  std::cout << findings.size() << (findings.size() == 1 ? " finding" : " findings") << " in "
            << flagged_rules.size() << " of " << rules.size() << " rules\n";
  return kFindings;
}

}  // namespace

int rules_command(const std::vector<std::string_view>& args) {
  if (args.size() < 2) return usage_error("needs a command", kRulesHelp);
  const std::string_view command = args[1];
  if (wants_help(command)) {
    std::cout << kRulesHelp;
    return 0;
  }
  if (command == "compile") return compile(args);
  if (command == "test") return test(args);
  if (command == "scan") return scan(args);
  if (command == "lint") return lint(args);
  return usage_error("unknown command '" + std::string(command) + "'", kRulesHelp);
}

}  // namespace sluice::ctl
