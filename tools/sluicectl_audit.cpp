// sluicectl audit …: verify the audit trail's hash chain, and review a trail: who was admitted
// and denied, why, under which rules, when — and, with a newer rule database, which admitted
// requests it would now block (their captured prompts re-scanned as the data path scans them).
// Format of the trail, the chain and capture: docs/audit.md.
#include "sluicectl_audit.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sluice/audit.hpp"
#include "sluice/config.hpp"
#include "sluice/rules.hpp"

namespace sluice::ctl {
namespace {

constexpr int kUsageError = 2;
constexpr int kBroken = 1;

constexpr std::string_view kAuditHelp = R"(usage: sluicectl audit COMMAND ...

  verify FILE... [--partial | --after DIGEST]
                  check the trail's hash chain: every record carries the SHA-256 of the record
                  before it, so an edited, removed or reordered record breaks it
  review FILE... [--rules NEW.db] [--bucket 1h] [--json]
                  summaries by identity, tier, verdict and reason, rule and time; with --rules,
                  re-scan the captured prompts of admitted requests with a newer rule database
                  and list those it would now block

FILEs: the trail in order, oldest first. A rotated trail is PATH.keep … PATH.2 PATH.1 PATH:
  sluicectl audit verify $(ls -r /var/log/sluice/audit.jsonl.*) /var/log/sluice/audit.jsonl
(ls -r sorts .1 … .8 backwards; with keep >= 10, list them by number.)
'sluicectl audit COMMAND --help' explains a command. Exit status: 0 done (verify: the chain
holds), 1 verify found a break, 2 bad usage or a file that cannot be read.
)";

constexpr std::string_view kVerifyHelp =
    R"(usage: sluicectl audit verify FILE... [--partial | --after DIGEST]

  Walks the hash chain of the audit trail FILE... (in the order given, oldest first; a rotated
  trail: PATH.keep … PATH.1 PATH). Every line ends with "prev": the SHA-256 of the previous
  line's bytes (without its newline), or 64 zeros on the first line of a trail (the genesis
  value); rotation and restarts continue the chain. Prints

    OK: N records in F files, chain from genesis to head <digest>

  or names the first line whose link does not hold, FILE:LINE, and why:
    - its prev is not the digest of the line before it: that line was edited, or records
      between them were removed; the message says when the lines look reordered (the next
      line is the one that chains to the previous);
    - the first line's prev is not the genesis value: the head of the trail is missing (cut,
      or older rotated files not given first; the oldest kept file of a rotated trail whose
      older files were deleted starts mid-chain: use --partial);
    - no "prev" at the end of the line (edited, or written before the chain existed), or an
      incomplete last line (no newline: a write torn by a crash).
  An edited record is caught at the record after it; the last record of the trail is covered
  once the next one is written, or when the head digest printed here is kept elsewhere and
  given back later with --after (appending since then must still chain to it).

  --partial       the first line may chain to records not given (its prev is printed)
  --after DIGEST  the first line must chain to DIGEST (a head printed by an earlier verify)
Exit status: 0 the chain holds, 1 it is broken (the message names the line), 2 bad usage or
a file that cannot be read.
)";

constexpr std::string_view kReviewHelp =
    R"(usage: sluicectl audit review FILE... [--rules NEW.db] [--bucket 1h|10m|30s|1d] [--json]

  Reads the audit trail FILE... (rotated files too, in any order) and prints compact tables:
  records by identity, by tier, by verdict and reason, by rule id and by time bucket (--bucket,
  default 1h), with admitted, denied and flagged counts (flagged: a rule of any action or mode
  matched). Escalations (an identity demoted or suspended) count as records and by reason,
  not as decisions. It verifies nothing: 'sluicectl audit verify' checks the chain. Lines that
  are not audit records are skipped and counted.

  --rules NEW.db  post-hoc detection: every admitted request whose prompt the trail captured
                  (config audit.capture: flagged or all) is scanned again, as the data path
                  scans it, with NEW.db's prompt rules for the record's tier; the records NEW.db
                  would now block are listed (FILE:LINE, time, identity, tier, rule ids), with
                  a count of admitted records that cannot be re-scanned (no captured prompt)
                  and of prompts cut at capture_bytes (only their captured part is scanned).
  --json          one JSON object with the same tables instead
Exit status: 0 done, 2 bad usage or a file or database that cannot be read.
)";

bool wants_help(std::string_view arg) {
  return arg == "--help" || arg == "-h" || arg == "help";
}

int usage_error(const std::string& message, std::string_view help) {
  std::cerr << "sluicectl audit: " << message << "\n\n" << help;
  return kUsageError;
}

// Reads a file line by line; the last line may lack its newline (reported).
class LineReader {
 public:
  explicit LineReader(const std::string& path) : in_(path, std::ios::binary) {
    in_.rdbuf()->pubsetbuf(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
  }
  bool ok() const { return static_cast<bool>(in_); }
  // False at the end. `complete`: the line ended with '\n'.
  bool next(std::string& line, bool& complete) {
    if (!std::getline(in_, line)) return false;
    complete = !in_.eof();
    return true;
  }

 private:
  std::vector<char> buffer_ = std::vector<char>(1 << 20);
  std::ifstream in_;
};

// ---- verify -----------------------------------------------------------------------------------

struct Line {
  std::string text;
  bool complete = true;
  std::size_t file = 0;
  uint64_t number = 0;
};

int verify(const std::vector<std::string_view>& args) {
  std::vector<std::string> files;
  bool partial = false;
  std::optional<std::string> after;
  for (std::size_t i = 2; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (wants_help(arg)) {
      std::cout << kVerifyHelp;
      return 0;
    }
    if (arg == "--partial") {
      partial = true;
    } else if (arg == "--after") {
      if (i + 1 >= args.size()) return usage_error("verify: --after needs a digest", kVerifyHelp);
      after = std::string(args[++i]);
    } else if (arg.starts_with("--")) {
      return usage_error("verify: unknown option '" + std::string(arg) + "'", kVerifyHelp);
    } else {
      files.emplace_back(arg);
    }
  }
  if (files.empty()) return usage_error("verify: no FILE given", kVerifyHelp);
  if (partial && after) return usage_error("verify: --partial or --after, not both", kVerifyHelp);

  AuditChain chain;  // the link the next line must carry
  if (after && !chain.set_prev(*after))
    return usage_error("verify: --after: expected 64 hex digits, got '" + *after + "'",
                       kVerifyHelp);
  const std::string start = after ? std::string(chain.prev()) : std::string("genesis");
  std::string started_at;  // --partial: the first line's prev

  // Lines go through a one-line look-ahead, so a break can tell reordering apart.
  std::vector<std::unique_ptr<LineReader>> readers;
  for (const std::string& file : files) {
    readers.push_back(std::make_unique<LineReader>(file));
    if (!readers.back()->ok()) {
      std::cerr << "sluicectl audit verify: " << file << ": cannot open\n";
      return kUsageError;
    }
  }
  std::size_t reading = 0;
  uint64_t line_number = 0;
  const auto read_line = [&](Line& line) -> bool {
    while (reading < readers.size()) {
      if (readers[reading]->next(line.text, line.complete)) {
        line.file = reading;
        line.number = ++line_number;
        return true;
      }
      ++reading;
      line_number = 0;
    }
    return false;
  };
  const auto where = [&](const Line& line) {
    return files[line.file] + ":" + std::to_string(line.number);
  };

  Line current, next, previous;
  bool have_next = read_line(next);
  bool have_previous = false;
  uint64_t records = 0;
  while (have_next) {
    current = std::move(next);
    have_next = read_line(next);
    if (!current.complete) {
      std::cout << where(current) << ": incomplete last line (no newline): a write torn by a "
                << "crash; the writer cuts it off at its next start\n";
      return kBroken;
    }
    const std::string_view prev = audit_line_prev(current.text);
    if (prev.empty()) {
      std::cout << where(current)
                << ": not a chained audit record (no \"prev\" at the end of the line): edited, "
                   "or written before the trail was chained\n";
      return kBroken;
    }
    if (!have_previous && partial) {
      started_at = std::string(prev);
      chain.set_prev(prev);
    }
    if (prev != chain.prev()) {
      std::cout << where(current) << ": digest mismatch: prev " << prev.substr(0, 16)
                << "… is not the digest of ";
      if (!have_previous) {
        if (after) {
          std::cout << "the head given with --after (" << chain.prev().substr(0, 16)
                    << "…): records between it and this line are missing, or it was edited\n";
        } else {
          std::cout << "the genesis value: this is not the start of the trail — its head is "
                       "missing (cut), or older rotated files were not given before this one "
                       "(--partial starts mid-trail)\n";
        }
      } else {
        std::cout << "the record before it (" << where(previous) << "): ";
        if (have_next && audit_line_prev(next.text) == chain.prev()) {
          std::cout << "records reordered (" << where(next) << " is the one that follows "
                    << where(previous) << ")\n";
        } else if (previous.file != current.file) {
          std::cout << "files out of order, a rotated file missing between them, or "
                    << where(previous) << " edited\n";
        } else {
          std::cout << "that record was edited, or records between them were removed\n";
        }
      }
      return kBroken;
    }
    chain.advance(current.text);
    previous = std::move(current);
    have_previous = true;
    ++records;
  }
  std::cout << "OK: " << records << (records == 1 ? " record" : " records") << " in "
            << files.size() << (files.size() == 1 ? " file" : " files") << ", chain from "
            << (partial ? (started_at.empty() ? "genesis" : started_at) : start) << " to head "
            << chain.prev() << "\n";
  return 0;
}

// ---- review -----------------------------------------------------------------------------------

// Days since 1970-01-01 of a civil date (H. Hinnant, "chrono-Compatible Low-Level Date
// Algorithms"): the inverse of the audit writer's civil_from_days.
int64_t days_from_civil(int64_t year, unsigned month, unsigned day) {
  year -= month <= 2;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const auto year_of_era = static_cast<unsigned>(year - era * 400);
  const unsigned day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + static_cast<int64_t>(day_of_era) - 719468;
}

// "2026-11-28T21:03:11.204Z" → seconds since the epoch; nullopt for anything else.
std::optional<int64_t> parse_ts(std::string_view ts) {
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (ts.size() < 20 || std::sscanf(std::string(ts).c_str(), "%4u-%2u-%2uT%2u:%2u:%2u", &year,
                                    &month, &day, &hour, &minute, &second) != 6)
    return std::nullopt;
  return days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

std::string format_bucket(int64_t seconds) {
  const int64_t days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400;
  int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
  const int64_t of_day = seconds - days * 86400;
  char text[96];
  std::snprintf(text, sizeof text, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ",
                static_cast<long long>(y), m, d, static_cast<long long>(of_day / 3600),
                static_cast<long long>(of_day / 60 % 60), static_cast<long long>(of_day % 60));
  return text;
}

// "1h", "10m", "30s", "1d" → seconds; 0 when malformed.
int64_t parse_bucket(std::string_view text) {
  if (text.size() < 2) return 0;
  int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    default:
      return 0;
  }
  int64_t value = 0;
  for (const char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9' || value > 1'000'000'000) return 0;
    value = value * 10 + (c - '0');
  }
  return value * unit;
}

// Records of a row: admit and deny decisions; escalate records (an identity demoted or
// suspended, graduated response) count in `records` only.
struct Counts {
  uint64_t records = 0, admit = 0, deny = 0, escalate = 0, flagged = 0;
  void add(std::string_view verdict, bool flagged_record) {
    ++records;
    if (verdict == "admit") {
      ++admit;
    } else if (verdict == "escalate") {
      ++escalate;
    } else {
      ++deny;
    }
    if (flagged_record) ++flagged;
  }
};

struct Blocked {
  std::string where, ts, identity, tier;
  std::vector<std::string> rules;
  bool truncated = false;
};

// A table printed with its columns aligned: the first left, the numbers right.
void print_table(std::ostream& out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  const auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      const std::size_t pad = width[c] - row[c].size();
      if (c == 0) {
        line += row[c] + std::string(pad, ' ');
      } else {
        line += "  " + std::string(pad, ' ') + row[c];
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
  out << "\n";
}

std::string text_or(const nlohmann::json& value, std::string_view absent) {
  return value.is_string() ? value.get<std::string>() : std::string(absent);
}

int review(const std::vector<std::string_view>& args) {
  std::vector<std::string> files;
  std::string rules_path;
  std::string bucket_text = "1h";
  bool as_json = false;
  for (std::size_t i = 2; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (wants_help(arg)) {
      std::cout << kReviewHelp;
      return 0;
    }
    if (arg == "--json") {
      as_json = true;
    } else if (arg == "--rules" || arg == "--bucket") {
      if (i + 1 >= args.size())
        return usage_error("review: " + std::string(arg) + " needs a value", kReviewHelp);
      (arg == "--rules" ? rules_path : bucket_text) = std::string(args[++i]);
    } else if (arg.starts_with("--")) {
      return usage_error("review: unknown option '" + std::string(arg) + "'", kReviewHelp);
    } else {
      files.emplace_back(arg);
    }
  }
  if (files.empty()) return usage_error("review: no FILE given", kReviewHelp);
  const int64_t bucket = parse_bucket(bucket_text);
  if (bucket <= 0)
    return usage_error(
        "review: --bucket: expected a number and s, m, h or d (e.g. 1h, 10m), got '" + bucket_text +
            "'",
        kReviewHelp);

  std::shared_ptr<const RuleDatabase> db;
  std::unique_ptr<RuleScratch> scratch;
  RuleStream stream;
  stream.set_stop_at_block(false);  // every rule that matches is listed
  if (!rules_path.empty()) {
    try {
      db = RuleDatabase::load(rules_path);
      scratch = std::make_unique<RuleScratch>(*db);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return kUsageError;
    }
  }

  std::map<std::string, Counts> by_identity, by_tier, by_rule;
  std::map<std::pair<std::string, std::string>, uint64_t> by_reason;
  std::map<int64_t, Counts> by_time;
  Counts total;
  uint64_t skipped = 0;
  std::string first_skipped;
  std::string first_ts, last_ts;
  uint64_t admitted = 0, rescanned = 0, not_rescannable = 0, truncated = 0, rescan_flagged = 0;
  std::vector<Blocked> blocked;

  for (const std::string& file : files) {
    LineReader reader(file);
    if (!reader.ok()) {
      std::cerr << "sluicectl audit review: " << file << ": cannot open\n";
      return kUsageError;
    }
    std::string line;
    bool complete = true;
    uint64_t number = 0;
    while (reader.next(line, complete)) {
      ++number;
      const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
      if (record.is_discarded() || !record.is_object() || !record.contains("verdict")) {
        if (first_skipped.empty()) first_skipped = file + ":" + std::to_string(number);
        ++skipped;
        continue;
      }
      const std::string verdict = text_or(record.value("verdict", nlohmann::json()), "");
      const bool admit = verdict == "admit";
      // An escalate record repeats the rules of the request that tipped it: not counted again.
      const nlohmann::json& rules =
          record.contains("rules") && verdict != "escalate" ? record["rules"] : nlohmann::json();
      const bool flagged = rules.is_array() && !rules.empty();
      const std::string ts = text_or(record.value("ts", nlohmann::json()), "");
      total.add(verdict, flagged);
      by_identity[text_or(record.value("identity", nlohmann::json()), "(none)")].add(verdict,
                                                                                     flagged);
      by_tier[text_or(record.value("tier", nlohmann::json()), "(none)")].add(verdict, flagged);
      ++by_reason[{verdict, text_or(record.value("reason", nlohmann::json()), "")}];
      if (rules.is_array()) {
        for (const auto& rule : rules) by_rule[text_or(rule, "?")].add(verdict, flagged);
      }
      if (const std::optional<int64_t> seconds = parse_ts(ts)) {
        const int64_t start = (*seconds >= 0 ? *seconds : *seconds - bucket + 1) / bucket * bucket;
        by_time[start].add(verdict, flagged);
        if (first_ts.empty() || ts < first_ts) first_ts = ts;
        if (ts > last_ts) last_ts = ts;
      }
      if (!db || !admit) continue;
      ++admitted;
      const auto prompt = record.find("prompt");
      if (prompt == record.end() || !prompt->is_string()) {
        ++not_rescannable;
        continue;
      }
      ++rescanned;
      const bool cut = record.value("prompt_truncated", false);
      if (cut) ++truncated;
      // The captured text is the canonical text the data path scanned: scanned as it is, with
      // the prompt rules of the record's tier (no tier: admission was off, the untiered rules).
      const nlohmann::json& tier_value = record.value("tier", nlohmann::json());
      const TierSelection& selection = tier_value.is_string()
                                           ? db->selection(tier_value.get<std::string>())
                                           : db->selection_untiered();
      stream.begin(*db, selection, RuleScope::kPrompt);
      stream.feed(prompt->get_ref<const std::string&>(), *scratch);
      const RuleVerdict now = stream.end(*scratch);
      if (now.flagged) ++rescan_flagged;
      if (!now.blocked()) continue;
      Blocked hit{file + ":" + std::to_string(number),
                  ts,
                  text_or(record.value("identity", nlohmann::json()), "(none)"),
                  text_or(tier_value, "(none)"),
                  {db->rule(static_cast<uint32_t>(now.blocking_rule)).id},
                  cut};
      for (const uint32_t rule : stream.matches()) {
        if (static_cast<int32_t>(rule) != now.blocking_rule) hit.rules.push_back(db->rule(rule).id);
      }
      blocked.push_back(std::move(hit));
    }
  }

  // Tables sorted by records (most first), then by name.
  const auto sorted = [](const std::map<std::string, Counts>& counts) {
    std::vector<std::pair<std::string, Counts>> rows(counts.begin(), counts.end());
    std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      return a.second.records > b.second.records;
    });
    return rows;
  };
  std::vector<std::pair<std::pair<std::string, std::string>, uint64_t>> reasons(by_reason.begin(),
                                                                                by_reason.end());
  std::stable_sort(reasons.begin(), reasons.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });

  if (as_json) {
    using nlohmann::json;
    const auto counts_json = [](const Counts& c) {
      return json{
          {"records", c.records}, {"admit", c.admit}, {"deny", c.deny}, {"flagged", c.flagged}};
    };
    json out{{"files", files},
             {"records", total.records},
             {"admit", total.admit},
             {"deny", total.deny},
             {"escalate", total.escalate},
             {"flagged", total.flagged},
             {"skipped_lines", skipped},
             {"first_ts", first_ts.empty() ? json() : json(first_ts)},
             {"last_ts", last_ts.empty() ? json() : json(last_ts)},
             {"bucket_seconds", bucket}};
    for (const auto& [name, table] : {std::pair{"identity", &by_identity},
                                      std::pair{"tier", &by_tier}, std::pair{"rule", &by_rule}}) {
      json rows = json::array();
      for (const auto& [key, c] : sorted(*table)) {
        json row = counts_json(c);
        if (std::string_view(name) == "rule") row.erase("flagged");
        row[name] = key == "(none)" && std::string_view(name) != "rule" ? json() : json(key);
        rows.push_back(row);
      }
      out[std::string("by_") + name] = rows;
    }
    json reason_rows = json::array();
    for (const auto& [key, n] : reasons)
      reason_rows.push_back({{"verdict", key.first}, {"reason", key.second}, {"records", n}});
    out["by_reason"] = reason_rows;
    json time_rows = json::array();
    for (const auto& [start, c] : by_time) {
      json row = counts_json(c);
      row["start"] = format_bucket(start);
      time_rows.push_back(row);
    }
    out["by_time"] = time_rows;
    if (db) {
      json rows = json::array();
      for (const Blocked& b : blocked)
        rows.push_back({{"where", b.where},
                        {"ts", b.ts},
                        {"identity", b.identity == "(none)" ? json() : json(b.identity)},
                        {"tier", b.tier == "(none)" ? json() : json(b.tier)},
                        {"rules", b.rules},
                        {"prompt_truncated", b.truncated}});
      out["rescan"] = {{"rules", rules_path},
                       {"content_hash", db->content_hash()},
                       {"admitted", admitted},
                       {"rescanned", rescanned},
                       {"not_rescannable", not_rescannable},
                       {"prompts_truncated", truncated},
                       {"would_flag", rescan_flagged},
                       {"would_block", rows}};
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::ostream& out = std::cout;
  out << total.records << " records (admit " << total.admit << ", deny " << total.deny;
  if (total.escalate > 0) out << ", escalate " << total.escalate;
  out << ", flagged " << total.flagged << ") in " << files.size()
      << (files.size() == 1 ? " file" : " files");
  if (!first_ts.empty()) out << ", " << first_ts << " … " << last_ts;
  out << "\n";
  if (skipped > 0)
    out << "skipped " << skipped << " lines that are not audit records (first: " << first_skipped
        << ")\n";
  out << "\n";
  const auto counts_table = [&](const std::string& title,
                                const std::map<std::string, Counts>& table, bool with_flagged) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [key, c] : sorted(table)) {
      rows.push_back(
          {key, std::to_string(c.records), std::to_string(c.admit), std::to_string(c.deny)});
      if (with_flagged) rows.back().push_back(std::to_string(c.flagged));
    }
    std::vector<std::string> header{title, "records", "admit", "deny"};
    if (with_flagged) header.push_back("flagged");
    print_table(out, header, rows);
  };
  counts_table("identity", by_identity, true);
  counts_table("tier", by_tier, true);
  {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [key, n] : reasons)
      rows.push_back({key.first + " " + key.second, std::to_string(n)});
    print_table(out, {"verdict reason", "records"}, rows);
  }
  if (!by_rule.empty()) counts_table("rule", by_rule, false);  // every one is flagged
  {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [start, c] : by_time)
      rows.push_back({format_bucket(start), std::to_string(c.records), std::to_string(c.admit),
                      std::to_string(c.deny), std::to_string(c.flagged)});
    print_table(out, {"time (" + bucket_text + ")", "records", "admit", "deny", "flagged"}, rows);
  }
  if (db) {
    out << "re-scan with " << rules_path << " (" << db->content_hash() << "): " << admitted
        << " admitted, " << rescanned << " re-scanned";
    if (truncated > 0) out << " (" << truncated << " prompts cut at capture: their captured part)";
    out << ", " << not_rescannable << " not re-scannable (no captured prompt); would now block "
        << blocked.size() << ", flag " << rescan_flagged << "\n";
    if (!blocked.empty()) {
      std::vector<std::vector<std::string>> rows;
      for (const Blocked& b : blocked) {
        std::string ids;
        for (const std::string& id : b.rules) ids += (ids.empty() ? "" : ",") + id;
        if (b.truncated) ids += " (prompt cut)";
        rows.push_back({b.where, b.ts, b.identity, b.tier, ids});
      }
      // Left-aligned throughout: these are names, not counts.
      std::vector<std::size_t> width(5);
      const std::vector<std::string> header{"where", "ts", "identity", "tier", "rules"};
      for (std::size_t c = 0; c < 5; ++c) width[c] = header[c].size();
      for (const auto& row : rows)
        for (std::size_t c = 0; c < 5; ++c) width[c] = std::max(width[c], row[c].size());
      const auto print_row = [&](const std::vector<std::string>& row) {
        std::string line;
        for (std::size_t c = 0; c < 5; ++c)
          line += row[c] + (c + 1 < 5 ? std::string(width[c] - row[c].size() + 2, ' ') : "");
        out << line << "\n";
      };
      print_row(header);
      for (const auto& row : rows) print_row(row);
    }
  }
  return 0;
}

}  // namespace

int audit_command(const std::vector<std::string_view>& args) {
  if (args.size() < 2 || wants_help(args[1])) {
    if (args.size() < 2)
      return usage_error("expected 'audit verify' or 'audit review'", kAuditHelp);
    std::cout << kAuditHelp;
    return 0;
  }
  if (args[1] == "verify") return verify(args);
  if (args[1] == "review") return review(args);
  return usage_error("unknown command 'audit " + std::string(args[1]) + "'", kAuditHelp);
}

}  // namespace sluice::ctl
