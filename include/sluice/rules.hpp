// Rules: what security staff write (rules/*.yaml, read by the control layer's rules_loader.hpp),
// the compiled database file (compile_rules → bytes → RuleDatabase::load), and the streaming scan
// the data path runs for each request body, path, header or response (RuleStream, with one
// RuleScratch per worker).
//
// One Hyperscan stream-mode database holds every rule of every rule set, expression id = rule
// index. Tiers, scopes and header names are not separate databases: the match callback keeps
// only the rules of the stream's TierSelection and scope. The first enforce-mode `block` rule
// decides (scanning stops there); `flag` and `log` rules and every `shadow` rule are recorded
// and never block.
//
// Hyperscan flags (rule `flags`, see kRuleFlags) are what the rule says, plus one: every rule
// without `som` is compiled HS_FLAG_SINGLEMATCH — a rule counts once per stream, so Hyperscan
// stops tracking it after its first match (on the shipped rules as first measured: 424 instead of
// 363 bytes of stream state — 441 today —, same compile time). HS_FLAG_UTF8 is NOT implied for
// prompt text, although the canonical text is valid UTF-8: with it `.` and negated classes become
// multi-byte automata, and on the shipped rules one pattern's database grew from 0.1 MB to 3.8 MB,
// another became "Pattern is too large" and the set took minutes to compile. Without it `.`,
// `[^…]`, `\W` match one byte, so a gap like `.{0,80}` counts bytes; literals (non-ASCII too) match
// as usual, and `caseless` folds ASCII only (with or without utf8, unless `ucp`). Say `utf8` where
// `.` must be one character, `ucp` (implies utf8) for Unicode classes and case folding.
//
// Prefilter rules: a pattern too large for an exact Hyperscan compile ("Pattern is too large",
// a resource limit) is compiled with HS_FLAG_PREFILTER, which may report matches the pattern does
// not have. Such a hit only counts once std::regex (ECMAScript, translated from the pattern)
// finds the pattern in the last kConfirmWindowBytes of the stream. A match longer than that
// window cannot be confirmed and is not counted; `sluicectl rules compile` says which rules are
// prefiltered. Streams of a database with a prefilter rule keep that window (128 KiB buffer per
// stream, allocated once, reused) and copy what they scan into it; other databases copy nothing.
// The confirm step: the pattern is translated for std::regex (`.` as one byte or, with utf8, one
// UTF-8 character; a leading `]` in a class escaped); what has no faithful ECMAScript form
// (\A \z \h \Q \x{…} \p, octal and backreferences, (?i) and other (?…) groups but (?:) makes
// the compile fail, naming the rule. Negated classes (`[^…]`, \W, \S, \D) still match one
// byte, caseless folds ASCII. libstdc++'s breadth-first executor runs it (no recursion per byte,
// no backtracking blow-up): O(window × pattern states) per confirm, and it allocates. Hits are
// not confirmed one by one: a rule's hits wait until the window is about to drop the bytes
// before them (every kConfirmWindowBytes scanned) or end(), then one search covers them all —
// linear work whatever number of false hits a text provokes. So a prefilter rule's match is
// recorded late: after rules that matched further on, and a block by it comes at end() at the
// latest, not at the hit (the verdict is only read at end() anyway).
//
// Hot reload: a RuleStream holds a reference to the database it was begun on, so a request in
// flight finishes on it and the old database is freed when the last stream lets go. The worker's
// scratch must fit both databases before the swap: build RuleScratch(new_db), reserve_for(old_db)
// off the data path and move it into the worker at a burst boundary (hs_alloc_scratch may move
// a scratch, so never grow one a worker is using).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/config.hpp"  // ConfigError

struct hs_database;
struct hs_scratch;
struct hs_stream;

namespace sluice {

// ---- The rule model -----------------------------------------------------------------------

enum class RuleScope : uint8_t { kPrompt, kCompletion, kPath, kHeader };
enum class RuleAction : uint8_t { kBlock, kFlag, kLog };
enum class RuleMode : uint8_t { kEnforce, kShadow };

struct Rule {
  std::string id;
  std::string description;
  std::string pattern;
  std::vector<std::string> flags;  // names from kRuleFlags
  RuleScope scope = RuleScope::kPrompt;
  std::string header;  // lower-case header name, for scope header:<name>
  RuleAction action = RuleAction::kBlock;
  std::vector<std::string> tiers;  // empty: every tier
  RuleMode mode = RuleMode::kEnforce;
  std::string severity = "medium";  // info | low | medium | high | critical
  std::vector<std::string> match_examples, no_match_examples;
  // "file:line:col" of each example, parallel to the lists above (empty when not loaded from YAML).
  std::vector<std::string> match_example_sources, no_match_example_sources;
  std::string ruleset, ruleset_version;
  std::string source;  // "file:line:col" of the rule
  // Set by the compiler: compiled HS_FLAG_PREFILTER, hits confirmed on the stream's window.
  bool prefilter = false;
};

std::string_view to_string(RuleScope scope);  // prompt, completion, path, header
std::string_view to_string(RuleAction action);
std::string_view to_string(RuleMode mode);
std::optional<RuleAction> parse_rule_action(std::string_view text);
std::optional<RuleMode> parse_rule_mode(std::string_view text);
// "prompt" | "completion" | "path" | "header:<name>" (name: an HTTP token, returned lower-case).
struct ParsedScope {
  RuleScope scope;
  std::string header;
};
std::optional<ParsedScope> parse_rule_scope(std::string_view text);
// "header:x-user-agent" or the plain scope name.
std::string scope_text(RuleScope scope, std::string_view header);
// block 3 > flag 2 > log 1.
int action_strength(RuleAction action);
// Prompt and completion rules scan canonical text; path and header rules scan raw bytes.
constexpr bool scope_is_canonical(RuleScope scope) {
  return scope == RuleScope::kPrompt || scope == RuleScope::kCompletion;
}

struct RuleFlag {
  std::string_view name;
  unsigned hs_flags;  // 0 for allowempty, which the loader refuses
};
// caseless, dotall, multiline, singlematch, utf8, ucp, allowempty, som.
extern const std::array<RuleFlag, 8> kRuleFlags;
const RuleFlag* find_rule_flag(std::string_view name);
constexpr std::string_view kRuleSeverities[] = {"info", "low", "medium", "high", "critical"};

// ---- The compiled database --------------------------------------------------------------------

// Which rules apply to one tier: a bitset over rule indexes. Owned by its RuleDatabase.
class TierSelection {
 public:
  TierSelection() = default;
  TierSelection(std::string tier, std::size_t rule_count);
  bool contains(uint32_t rule) const {
    return rule / 64 < words_.size() && (words_[rule / 64] >> (rule % 64) & 1) != 0;
  }
  void add(uint32_t rule) { words_[rule / 64] |= uint64_t{1} << (rule % 64); }
  std::size_t count() const;
  const std::string& tier() const { return tier_; }  // "*" for every rule, "" for untiered
  const std::vector<uint64_t>& words() const { return words_; }

 private:
  std::string tier_;
  std::vector<uint64_t> words_;
};

struct RuleSetInfo {
  std::string name, version;
  uint32_t rules = 0;
};

// File layout (all integers little-endian), format version kRulesFormatVersion:
//   "SLUICERULES\0" · u32 format version · u32 section count
//   sections, each: 4-byte tag · u64 length · bytes — in this order:
//     RULE  the rule table, JSON (rule index = Hyperscan expression id; examples not kept)
//     SETS  rule set names, versions and rule counts, JSON
//     HASH  the content hash, "sha256:<hex>" of the canonicalised rule sources
//     HSDB  hs_serialize_database of the stream-mode database
//   SHA-256 (32 bytes) of everything before it.
inline constexpr std::string_view kRulesMagic{"SLUICERULES\0", 12};
inline constexpr uint32_t kRulesFormatVersion = 1;

class RuleDatabase : public std::enable_shared_from_this<RuleDatabase> {
  struct Token {};

 public:
  // Validates magic, format version, checksum, sections, the rule table, and the Hyperscan
  // database (its version and this CPU's features); a ConfigError names the file and the fault.
  static std::shared_ptr<const RuleDatabase> load(const std::string& path);
  static std::shared_ptr<const RuleDatabase> from_bytes(std::string_view bytes,
                                                        const std::string& source_name);

  RuleDatabase(Token, std::string source);
  ~RuleDatabase();
  RuleDatabase(const RuleDatabase&) = delete;
  RuleDatabase& operator=(const RuleDatabase&) = delete;

  std::size_t rule_count() const { return rules_.size(); }
  const Rule& rule(uint32_t index) const { return rules_[index]; }
  const std::vector<Rule>& rules() const { return rules_; }
  std::optional<uint32_t> find(std::string_view id) const;
  const std::vector<RuleSetInfo>& rulesets() const { return rulesets_; }
  const std::string& content_hash() const { return content_hash_; }
  const std::string& source() const { return source_; }
  bool has_prefilter() const { return has_prefilter_; }

  // The rules of a tier: those without tiers and those listing it. A tier no rule names gets the
  // untiered rules. The reference lives as long as the database.
  const TierSelection& selection(std::string_view tier) const;
  // Requests without a tier (admission off): the rules without tiers.
  const TierSelection& selection_untiered() const { return untiered_; }
  // Every rule, whatever its tiers: for compile-time examples and the tools.
  const TierSelection& selection_all() const { return all_; }
  // The tier names the rules mention, sorted.
  std::vector<std::string> tiers() const;
  // Whether a stream of this selection and scope (and header name) has any rule to look for:
  // when not, RuleStream::begin leaves the stream inactive and feed() costs nothing.
  bool applies(const TierSelection& selection, RuleScope scope,
               std::string_view header_name = {}) const;

  std::size_t database_bytes() const { return database_bytes_; }          // hs_database_size
  std::size_t stream_state_bytes() const { return stream_state_bytes_; }  // hs_stream_size
  std::size_t scratch_bytes() const { return scratch_bytes_; }  // hs_scratch_size, this db alone
  std::string hyperscan_info() const;                           // hs_database_info
  const hs_database* hs() const { return db_; }

  // What the match callback reads per rule, packed (4 bytes a rule).
  struct Runtime {
    RuleScope scope;
    RuleAction action;
    RuleMode mode;
    bool prefilter;
    int16_t header = -1;  // index into header_names_, -1 when not a header rule
  };
  const Runtime& runtime(uint32_t index) const { return runtime_[index]; }
  // Index of a header name among the header rules' names (ASCII case-insensitive), or -1.
  int header_index(std::string_view header_name) const;

  // The prefilter confirm step: whether the rule's pattern occurs in [first, last).
  // prev_available: first[-1] is readable; stream_start: first is the stream's first byte (else
  // the byte before it is unknown: no `^` or `\b` there); at_end: last is the end of the stream
  // (else no `$` or `\b` at last). True for a rule that is not a prefilter.
  bool confirm(uint32_t rule, const char* first, const char* last, bool prev_available,
               bool stream_start, bool at_end) const;

 private:
  void build_runtime();

  std::string source_;
  std::vector<Rule> rules_;
  std::vector<Runtime> runtime_;
  std::vector<std::string> header_names_;
  std::vector<RuleSetInfo> rulesets_;
  std::string content_hash_;
  hs_database* db_ = nullptr;
  std::size_t database_bytes_ = 0, stream_state_bytes_ = 0, scratch_bytes_ = 0;
  bool has_prefilter_ = false;
  std::vector<TierSelection> tier_selections_;
  TierSelection untiered_, all_;
  std::array<TierSelection, 4> scope_masks_;  // rules per scope (index: RuleScope)
  struct Confirm;
  std::vector<std::unique_ptr<Confirm>> confirm_;  // per rule; null unless prefilter
};

// One per worker: Hyperscan's scratch space (hs_alloc_scratch).
class RuleScratch {
 public:
  RuleScratch() = default;
  explicit RuleScratch(const RuleDatabase& db) { reserve_for(db); }
  ~RuleScratch();
  RuleScratch(RuleScratch&& other) noexcept : scratch_(other.scratch_) { other.scratch_ = nullptr; }
  RuleScratch& operator=(RuleScratch&& other) noexcept;
  RuleScratch(const RuleScratch&) = delete;
  RuleScratch& operator=(const RuleScratch&) = delete;

  // Grows the scratch so that it also fits `db` (it keeps fitting the databases it fitted).
  // May move the scratch: never while a scan uses it. Throws std::runtime_error on failure.
  void reserve_for(const RuleDatabase& db);
  std::size_t bytes() const;
  hs_scratch* get() const { return scratch_; }

 private:
  hs_scratch* scratch_ = nullptr;
};

// The outcome of one stream. Rule indexes refer to the stream's database.
struct RuleVerdict {
  static constexpr std::size_t kMaxMatched = 8;
  int32_t blocking_rule = -1;  // the first enforce-mode block rule that matched, or -1
  uint8_t matched_count = 0;   // distinct rules of the selection and scope matched (saturates)
  uint32_t matched[kMaxMatched] = {};  // the first kMaxMatched of them, in order of first match
  bool flagged = false;                // an enforce-mode flag rule matched
  bool logged = false;                 // an enforce-mode log rule matched
  bool error = false;  // Hyperscan refused the scan (scratch too small or in use): fail closed
  bool blocked() const { return blocking_rule >= 0; }
};

// Adds one matched rule to a verdict, as a stream records it: the first enforce-mode `block`
// decides, enforce-mode `flag` and `log` rules mark the verdict, shadow rules are only listed.
// Returns true for an enforce-mode block. Used by RuleStream and, for header fields (read before
// the key that names the tier), to judge a scan over every rule with the tier's selection later.
bool add_to_verdict(RuleVerdict& verdict, const RuleDatabase& db, uint32_t rule);

// One request's (or response's, path's, header's) streaming scan. Reused: end() resets the
// Hyperscan stream instead of freeing it, and begin() on the same database opens nothing, so a
// RuleStream allocates only when first begun on a database (stream state, the match bitset,
// and with prefilter rules the confirm window).
class RuleStream {
 public:
  static constexpr std::size_t kConfirmWindowBytes = 64 * 1024;

  RuleStream();
  ~RuleStream();
  RuleStream(RuleStream&& other) noexcept;
  RuleStream& operator=(RuleStream&& other) noexcept;
  RuleStream(const RuleStream&) = delete;
  RuleStream& operator=(const RuleStream&) = delete;

  // `selection` must outlive the scan (those of the database do). A scan not ended is dropped.
  // header_name: for scope kHeader, the field name (any case).
  void begin(const RuleDatabase& db, const TierSelection& selection, RuleScope scope,
             std::string_view header_name = {});
  // The next bytes of the scanned text (for prompt and completion: canonical text). Never throws.
  void feed(std::string_view bytes, RuleScratch& scratch);
  // Whether an enforce-mode block rule would match if the text ended after `tail` (bytes not
  // fed): the stream is copied (hs_reset_and_copy_stream into a second stream kept for it),
  // the copy scans `tail` and is closed, so that matches decided by the end of the data (`$`,
  // `\b`, and text held back by the canonicaliser, handed over as `tail`) are found now; the
  // stream itself goes on unchanged. A block found this way is the verdict's (the caller cuts the
  // text there); flag, log, shadow and prefilter rules are not looked for in the copy (they are
  // decided on the whole text). Cost: one copy of the stream state (stream_state_bytes()) and the
  // end-of-data pass: ≈ 0.3 µs with the shipped rules (441-byte state; g++ 12 -O2, AMD EPYC VM,
  // 200k calls after 1000 bytes fed), once per segment that carried completion text.
  bool probe_end(std::string_view tail, RuleScratch& scratch);
  // Delivers end-of-data matches and returns the verdict; the stream is ready for begin().
  RuleVerdict end(RuleScratch& scratch);
  // Drops the current scan without a verdict (request abandoned).
  void cancel();
  // Frees the Hyperscan stream and lets go of the database (an idle stream after a reload).
  void release();

  // Default true: stop scanning at the first enforce block (what the data path wants). The tools
  // turn it off to see every rule that matches.
  void set_stop_at_block(bool stop) { stop_at_block_ = stop; }
  // Whether this scan has anything to look for (see RuleDatabase::applies).
  bool active() const { return active_; }
  // The verdict so far (final after end()): a block shows here as soon as it is found.
  const RuleVerdict& verdict() const { return verdict_; }
  // Every rule recorded since begin(), in order of first match (the verdict keeps the first 8).
  std::span<const uint32_t> matches() const { return matches_; }
  const RuleDatabase* database() const { return db_.get(); }
  uint64_t bytes_scanned() const { return offset_; }
  // Prefilter confirm searches since begin() (each over at most 2 × kConfirmWindowBytes).
  uint32_t prefilter_confirms() const { return confirms_; }

 private:
  static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                      unsigned int flags, void* context);
  int handle_match(uint32_t rule, uint64_t to);
  bool seen(uint32_t rule) const { return (seen_[rule / 64] >> (rule % 64) & 1) != 0; }
  bool record(uint32_t rule);  // true: stop scanning (an enforce block, with stop_at_block)
  void scan_piece(std::string_view piece, RuleScratch& scratch);
  void window_append(std::string_view piece);
  bool confirm(uint32_t rule, uint64_t to) const;
  void confirm_pending();
  void reset_hs_stream();

  std::shared_ptr<const RuleDatabase> db_;
  hs_stream* stream_ = nullptr;
  hs_stream* probe_ = nullptr;  // probe_end()'s copy, opened by its first call
  const TierSelection* selection_ = nullptr;
  RuleScope scope_ = RuleScope::kPrompt;
  int header_ = -1;
  bool active_ = false;
  bool dirty_ = false;    // bytes scanned since the Hyperscan stream was last reset
  bool stopped_ = false;  // scanning stopped: enforce block found, or an error
  bool at_end_ = false;   // inside end(): end-of-data matches are being delivered
  bool probing_ = false;  // inside probe_end(): matches come from the copy
  bool stop_at_block_ = true;
  uint64_t offset_ = 0;  // bytes fed since begin()
  mutable uint32_t confirms_ = 0;
  RuleVerdict verdict_;
  std::vector<uint64_t> seen_;     // bitset over rule indexes: recorded this scan
  std::vector<uint32_t> matches_;  // recorded rules, in order
  // Prefilter hits not yet confirmed, one entry per rule: the end offsets of its first and last
  // hit. Confirmed before the window drops the bytes they need, and at end().
  struct PendingHit {
    uint32_t rule;
    uint64_t first, last;
  };
  std::vector<PendingHit> pending_;
  std::unique_ptr<char[]> window_;  // 2 × kConfirmWindowBytes, only with prefilter rules
  std::size_t window_len_ = 0;
  uint64_t window_base_ = 0;  // stream offset of window_[0]
};

// A fixed set of RuleStreams for one worker: acquire one when a scan starts, release it when
// it ends. Released streams keep their Hyperscan stream, so the steady state allocates nothing.
class RuleStreamPool {
 public:
  explicit RuleStreamPool(std::size_t capacity);
  RuleStream* acquire();  // nullptr when every stream is in use
  void release(RuleStream* stream);
  // After a reload: free the Hyperscan streams of idle streams begun on another database, so the
  // old database can go.
  void release_idle_not_on(const RuleDatabase* current);
  std::size_t capacity() const { return streams_.size(); }
  std::size_t in_use() const { return streams_.size() - free_.size(); }

 private:
  std::vector<RuleStream> streams_;
  std::vector<RuleStream*> free_;
};

// Scans one text the way the data path scans one field, for tools and the compiler's examples:
// prompt and completion text is canonicalised (begin_field, feed, end_field); path and header
// text is scanned as it is. Not for the data path (it owns a Canonicalizer and allocates).
class RuleTextScanner {
 public:
  explicit RuleTextScanner(std::shared_ptr<const RuleDatabase> db);
  ~RuleTextScanner();
  const RuleVerdict& scan(std::string_view text, const TierSelection& selection, RuleScope scope,
                          std::string_view header_name = {});
  // Every rule matched by the last scan, in order (scanning does not stop at a block).
  std::span<const uint32_t> matches() const { return stream_.matches(); }
  // The last scan's scanned text (canonical for prompt and completion).
  const std::string& scanned_text() const { return text_; }

 private:
  std::shared_ptr<const RuleDatabase> db_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  RuleScratch scratch_;
  RuleStream stream_;
  RuleVerdict verdict_;
  std::string text_;
};

// ---- The compiler (src/core/rule_compiler.cpp) ------------------------------------------------

// The CPU a database is compiled for. Hyperscan refuses to load a database built for features the
// host lacks: kNative (this host's features, the fastest) suits a database compiled on the
// appliance itself; kAvx2 loads on any x86-64 with AVX2; kGeneric on any with SSSE3.
enum class RuleTarget : uint8_t { kNative, kAvx2, kGeneric };
std::optional<RuleTarget> parse_rule_target(std::string_view text);  // native | avx2 | generic

struct RuleCompileOptions {
  bool check_examples = true;  // scan every rule's examples; a mismatch fails the compile
  RuleTarget target = RuleTarget::kNative;
};

struct RuleCompileResult {
  std::string bytes;                             // the database file
  std::shared_ptr<const RuleDatabase> database;  // loaded from `bytes`
  double compile_seconds = 0;                    // Hyperscan compile time (all attempts)
  std::vector<std::string> notes;                // one line per prefiltered rule, why and what
};

// Compiles rules (rule index = position) into the database file. Throws ConfigError naming
// file:line:col, the rule id and Hyperscan's message; with check_examples, every example that
// the rule does not match (match) or matches (no_match) is listed.
RuleCompileResult compile_rules(const std::vector<Rule>& rules,
                                const RuleCompileOptions& options = {});

// The result of one example of one rule.
struct ExampleOutcome {
  uint32_t rule = 0;
  bool expect_match = true;
  bool matched = false;
  std::string text, canonical, source;
  bool ok() const { return expect_match == matched; }
};
// Runs every example of `rules` (rules[i] compiled as rule i of db) in its rule's scope, with the
// selection of every tier.
std::vector<ExampleOutcome> run_rule_examples(const RuleDatabase& db,
                                              const std::vector<Rule>& rules);

// "sha256:<hex>" over the canonicalised rule sources: every field but source locations, rules
// sorted by rule set and id, so reformatting or moving files changes nothing.
std::string rules_content_hash(const std::vector<Rule>& rules);

// The Hyperscan flags a rule compiles with (HS_FLAG_PREFILTER, and neither SINGLEMATCH nor
// SOM_LEFTMOST, when rule.prefilter).
unsigned rule_hs_flags(const Rule& rule);

// The pattern as the confirm step's std::regex (ECMAScript) reads it; throws
// std::invalid_argument naming a construct it cannot translate.
std::string confirm_regex_source(const Rule& rule);

}  // namespace sluice
