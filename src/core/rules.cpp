// The rule database (load and validate the compiled file), the per-worker scratch and the
// streaming scan with its match callback and prefilter confirm step. See sluice/rules.hpp.
#include "sluice/rules.hpp"

#include <hs/hs.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <stdexcept>
#include <utility>

#include "rule_file.hpp"
#include "sluice/canonicalizer.hpp"
#include "sluice/stage_clock.hpp"

namespace sluice {
namespace {

constexpr std::string_view kScopeNames[] = {"prompt", "completion", "path", "header"};
constexpr std::string_view kActionNames[] = {"block", "flag", "log"};
constexpr std::string_view kModeNames[] = {"enforce", "shadow"};

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

// RFC 9110 §5.6.2: token = 1*tchar.
bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Hyperscan's strings (hs_database_info, hs_serialized_database_info) come from its allocator,
// malloc unless hs_set_misc_allocator says otherwise (Sluice never does).
std::string take_hs_string(char* text) {
  std::string copy = text != nullptr ? text : "";
  std::free(text);
  return copy;
}

}  // namespace

// ---- Names ------------------------------------------------------------------------------------

std::string_view to_string(RuleScope scope) {
  return kScopeNames[static_cast<int>(scope)];
}
std::string_view to_string(RuleAction action) {
  return kActionNames[static_cast<int>(action)];
}
std::string_view to_string(RuleMode mode) {
  return kModeNames[static_cast<int>(mode)];
}

std::optional<RuleAction> parse_rule_action(std::string_view text) {
  for (int i = 0; i < 3; ++i) {
    if (kActionNames[i] == text) return static_cast<RuleAction>(i);
  }
  return std::nullopt;
}

std::optional<RuleMode> parse_rule_mode(std::string_view text) {
  for (int i = 0; i < 2; ++i) {
    if (kModeNames[i] == text) return static_cast<RuleMode>(i);
  }
  return std::nullopt;
}

std::optional<ParsedScope> parse_rule_scope(std::string_view text) {
  for (int i = 0; i < 3; ++i) {
    if (kScopeNames[i] == text) return ParsedScope{static_cast<RuleScope>(i), {}};
  }
  constexpr std::string_view kHeaderPrefix = "header:";
  if (text.substr(0, kHeaderPrefix.size()) != kHeaderPrefix) return std::nullopt;
  const std::string_view name = text.substr(kHeaderPrefix.size());
  if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar)) return std::nullopt;
  ParsedScope parsed{RuleScope::kHeader, std::string(name)};
  std::transform(parsed.header.begin(), parsed.header.end(), parsed.header.begin(), ascii_lower);
  return parsed;
}

std::string scope_text(RuleScope scope, std::string_view header) {
  std::string text(to_string(scope));
  if (scope == RuleScope::kHeader) text += ":" + std::string(header);
  return text;
}

int action_strength(RuleAction action) {
  switch (action) {
    case RuleAction::kBlock:
      return 3;
    case RuleAction::kFlag:
      return 2;
    case RuleAction::kLog:
      return 1;
  }
  return 0;
}

const std::array<RuleFlag, 8> kRuleFlags = {{
    {"caseless", HS_FLAG_CASELESS},
    {"dotall", HS_FLAG_DOTALL},
    {"multiline", HS_FLAG_MULTILINE},
    {"singlematch", HS_FLAG_SINGLEMATCH},
    {"utf8", HS_FLAG_UTF8},
    {"ucp", HS_FLAG_UCP | HS_FLAG_UTF8},  // Hyperscan requires UTF8 with UCP
    {"allowempty", 0},
    {"som", HS_FLAG_SOM_LEFTMOST},
}};

const RuleFlag* find_rule_flag(std::string_view name) {
  for (const RuleFlag& flag : kRuleFlags) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

// ---- TierSelection ----------------------------------------------------------------------------

TierSelection::TierSelection(std::string tier, std::size_t rule_count)
    : tier_(std::move(tier)), words_((rule_count + 63) / 64, 0) {}

std::size_t TierSelection::count() const {
  std::size_t n = 0;
  for (uint64_t word : words_) n += static_cast<std::size_t>(__builtin_popcountll(word));
  return n;
}

// ---- The file's pieces ------------------------------------------------------------------------

namespace rule_file {

std::array<uint8_t, kDigestBytes> sha256(std::string_view bytes) {
  std::array<uint8_t, kDigestBytes> digest{};
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    throw std::runtime_error("OpenSSL: SHA-256 failed");
  }
  return digest;
}

std::string hex(std::span<const uint8_t> bytes) {
  constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  text.reserve(bytes.size() * 2);
  for (uint8_t byte : bytes) {
    text.push_back(kHex[byte >> 4]);
    text.push_back(kHex[byte & 0xf]);
  }
  return text;
}

nlohmann::json rule_to_json(const Rule& rule, bool with_examples, bool with_source) {
  nlohmann::json json = {
      {"id", rule.id},
      {"description", rule.description},
      {"pattern", rule.pattern},
      {"flags", rule.flags},
      {"scope", scope_text(rule.scope, rule.header)},
      {"action", to_string(rule.action)},
      {"tiers", rule.tiers},
      {"mode", to_string(rule.mode)},
      {"severity", rule.severity},
      {"ruleset", rule.ruleset},
      {"ruleset_version", rule.ruleset_version},
  };
  if (with_examples) {
    json["examples"] = {{"match", rule.match_examples}, {"no_match", rule.no_match_examples}};
  }
  if (with_source) {
    json["source"] = rule.source;
    json["prefilter"] = rule.prefilter;
  }
  return json;
}

namespace {

std::string string_field(const nlohmann::json& json, const char* key) {
  const auto it = json.find(key);
  if (it == json.end() || !it->is_string())
    throw std::invalid_argument(std::string(key) + ": expected a string");
  return it->get<std::string>();
}

std::vector<std::string> string_list(const nlohmann::json& json, const char* key) {
  const auto it = json.find(key);
  if (it == json.end() || !it->is_array())
    throw std::invalid_argument(std::string(key) + ": expected a list of strings");
  std::vector<std::string> list;
  for (const nlohmann::json& item : *it) {
    if (!item.is_string())
      throw std::invalid_argument(std::string(key) + ": expected a list of strings");
    list.push_back(item.get<std::string>());
  }
  return list;
}

}  // namespace

Rule rule_from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw std::invalid_argument("expected an object");
  Rule rule;
  rule.id = string_field(json, "id");
  rule.description = string_field(json, "description");
  rule.pattern = string_field(json, "pattern");
  if (rule.id.empty() || rule.pattern.empty())
    throw std::invalid_argument("id and pattern must not be empty");
  rule.flags = string_list(json, "flags");
  for (const std::string& flag : rule.flags) {
    const RuleFlag* known = find_rule_flag(flag);
    if (known == nullptr || known->hs_flags == 0)
      throw std::invalid_argument("flags: unknown flag '" + flag + "'");
  }
  const std::string scope = string_field(json, "scope");
  const std::optional<ParsedScope> parsed = parse_rule_scope(scope);
  if (!parsed) throw std::invalid_argument("scope: unknown scope '" + scope + "'");
  rule.scope = parsed->scope;
  rule.header = parsed->header;
  const std::string action = string_field(json, "action");
  const std::optional<RuleAction> parsed_action = parse_rule_action(action);
  if (!parsed_action) throw std::invalid_argument("action: unknown action '" + action + "'");
  rule.action = *parsed_action;
  rule.tiers = string_list(json, "tiers");
  const std::string mode = string_field(json, "mode");
  const std::optional<RuleMode> parsed_mode = parse_rule_mode(mode);
  if (!parsed_mode) throw std::invalid_argument("mode: unknown mode '" + mode + "'");
  rule.mode = *parsed_mode;
  rule.severity = string_field(json, "severity");
  rule.ruleset = string_field(json, "ruleset");
  rule.ruleset_version = string_field(json, "ruleset_version");
  rule.source = string_field(json, "source");
  const auto prefilter = json.find("prefilter");
  if (prefilter == json.end() || !prefilter->is_boolean())
    throw std::invalid_argument("prefilter: expected true or false");
  rule.prefilter = prefilter->get<bool>();
  return rule;
}

std::regex confirm_regex(const Rule& rule) {
  auto syntax = std::regex::ECMAScript;
#ifdef __GLIBCXX__
  // libstdc++'s breadth-first executor: no recursion per input byte (the default backtracking one
  // overflows the stack on long inputs) and no exponential backtracking; it cannot do
  // backreferences, which Hyperscan lacks anyway.
  syntax |= std::regex_constants::__polynomial;
#endif
  const std::vector<std::string>& flags = rule.flags;
  if (std::find(flags.begin(), flags.end(), "caseless") != flags.end()) syntax |= std::regex::icase;
  if (std::find(flags.begin(), flags.end(), "multiline") != flags.end())
    syntax |= std::regex::multiline;
  return std::regex(confirm_regex_source(rule), syntax);
}

}  // namespace rule_file

// ---- RuleDatabase -----------------------------------------------------------------------------

struct RuleDatabase::Confirm {
  std::regex regex;
};

RuleDatabase::RuleDatabase(Token, std::string source) : source_(std::move(source)) {}

RuleDatabase::~RuleDatabase() {
  if (db_ != nullptr) hs_free_database(db_);
}

std::shared_ptr<const RuleDatabase> RuleDatabase::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open rule database (" + std::strerror(errno) + ")");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw ConfigError(path + ": cannot read rule database");
  return from_bytes(bytes, path);
}

std::shared_ptr<const RuleDatabase> RuleDatabase::from_bytes(std::string_view bytes,
                                                             const std::string& source_name) {
  using namespace rule_file;
  const auto fail = [&](const std::string& what) { return ConfigError(source_name + ": " + what); };
  constexpr std::string_view kRecompile = "; compile it again with `sluicectl rules compile`";
  if (bytes.size() < kRulesMagic.size() || bytes.substr(0, kRulesMagic.size()) != kRulesMagic)
    throw fail("not a Sluice rule database (no SLUICERULES magic at the start)" +
               std::string(kRecompile));
  if (bytes.size() < kHeaderBytes + kDigestBytes)
    throw fail("truncated rule database (" + std::to_string(bytes.size()) + " bytes)");
  const uint64_t version = get_le(bytes, kRulesMagic.size(), 4);
  if (version != kRulesFormatVersion)
    throw fail("rule database format version " + std::to_string(version) +
               ", this build reads version " + std::to_string(kRulesFormatVersion) +
               std::string(kRecompile));
  const std::size_t body = bytes.size() - kDigestBytes;
  const auto digest = sha256(bytes.substr(0, body));
  if (std::memcmp(digest.data(), bytes.data() + body, kDigestBytes) != 0)
    throw fail("checksum mismatch: the rule database is corrupted or truncated" +
               std::string(kRecompile));

  // Sections, in their fixed order.
  constexpr std::string_view kOrder[] = {kRuleTable, kRuleSets, kContentHash, kHyperscan};
  const uint64_t count = get_le(bytes, kRulesMagic.size() + 4, 4);
  if (count != std::size(kOrder))
    throw fail("expected " + std::to_string(std::size(kOrder)) + " sections, found " +
               std::to_string(count));
  std::string_view sections[std::size(kOrder)];
  std::size_t at = kHeaderBytes;
  for (std::size_t i = 0; i < std::size(kOrder); ++i) {
    if (body - at < 12) throw fail("section " + std::string(kOrder[i]) + " is missing");
    const std::string_view tag = bytes.substr(at, 4);
    if (tag != kOrder[i])
      throw fail("expected section " + std::string(kOrder[i]) + " at byte " + std::to_string(at));
    const uint64_t length = get_le(bytes, at + 4, 8);
    at += 12;
    if (length > body - at)
      throw fail("section " + std::string(tag) + " runs past the end of the file");
    sections[i] = bytes.substr(at, length);
    at += length;
  }
  if (at != body) throw fail(std::to_string(body - at) + " stray bytes after the sections");

  auto db = std::make_shared<RuleDatabase>(Token{}, source_name);
  try {
    const nlohmann::json table = nlohmann::json::parse(sections[0]);
    if (!table.is_array()) throw std::invalid_argument("expected a list");
    for (std::size_t i = 0; i < table.size(); ++i) {
      try {
        db->rules_.push_back(rule_from_json(table[i]));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument("entry " + std::to_string(i) + ": " + e.what());
      }
    }
    const nlohmann::json sets = nlohmann::json::parse(sections[1]);
    if (!sets.is_array()) throw std::invalid_argument("rule sets: expected a list");
    for (const nlohmann::json& set : sets) {
      if (!set.is_object() || !set.contains("rules") || !set["rules"].is_number_unsigned())
        throw std::invalid_argument("rule sets: expected {name, version, rules}");
      db->rulesets_.push_back(
          {string_field(set, "name"), string_field(set, "version"), set["rules"].get<uint32_t>()});
    }
  } catch (const std::exception& e) {  // nlohmann's parse and type errors, ours
    throw fail(std::string("rule table: ") + e.what());
  }
  if (db->rules_.empty()) throw fail("rule table: no rules");
  std::size_t counted = 0;
  for (const RuleSetInfo& set : db->rulesets_) counted += set.rules;
  if (counted != db->rules_.size())
    throw fail("rule table: " + std::to_string(db->rules_.size()) +
               " rules, but the rule sets count " + std::to_string(counted));
  db->content_hash_ = std::string(sections[2]);
  if (db->content_hash_.size() != 7 + 2 * kDigestBytes ||
      db->content_hash_.rfind("sha256:", 0) != 0)
    throw fail("content hash: expected sha256:<64 hex digits>");

  // The Hyperscan database: its version and this CPU.
  if (hs_valid_platform() != HS_SUCCESS)
    throw fail("this CPU cannot run Hyperscan (it needs at least SSSE3)");
  const std::string_view hs_bytes = sections[3];
  const hs_error_t loaded = hs_deserialize_database(hs_bytes.data(), hs_bytes.size(), &db->db_);
  if (loaded != HS_SUCCESS) db->db_ = nullptr;
  if (loaded == HS_DB_VERSION_ERROR)
    throw fail("the Hyperscan database was built by another Hyperscan version (this is Hyperscan " +
               std::string(hs_version()) + ")" + std::string(kRecompile));
  char* info = nullptr;
  const std::string compiled_for =
      hs_serialized_database_info(hs_bytes.data(), hs_bytes.size(), &info) == HS_SUCCESS
          ? take_hs_string(info)
          : "no readable header";
  if (loaded == HS_DB_PLATFORM_ERROR)
    throw fail("the Hyperscan database was built for another CPU (" + compiled_for +
               ") whose features this host lacks; compile it again on this host, or for any "
               "host with `sluicectl rules compile --target avx2` (or generic)");
  if (loaded != HS_SUCCESS)
    throw fail("section HSDB: Hyperscan cannot load the database (error " + std::to_string(loaded) +
               ", " + compiled_for + ")");
  if (db->hyperscan_info().find("Mode: STREAM") == std::string::npos)
    throw fail("the Hyperscan database is not a stream-mode database (" + compiled_for + ")");
  std::size_t size = 0;
  if (hs_database_size(db->db_, &size) == HS_SUCCESS) db->database_bytes_ = size;
  if (hs_stream_size(db->db_, &size) == HS_SUCCESS) db->stream_state_bytes_ = size;
  {
    RuleScratch probe(*db);
    db->scratch_bytes_ = probe.bytes();
  }

  db->confirm_.resize(db->rules_.size());
  for (std::size_t i = 0; i < db->rules_.size(); ++i) {
    const Rule& rule = db->rules_[i];
    if (!rule.prefilter) continue;
    db->has_prefilter_ = true;
    try {
      db->confirm_[i] = std::make_unique<Confirm>(Confirm{confirm_regex(rule)});
    } catch (const std::exception& e) {
      throw fail("rule '" + rule.id +
                 "' (a prefilter rule): the confirm step cannot use its pattern: " + e.what());
    }
  }
  db->build_runtime();
  return db;
}

void RuleDatabase::build_runtime() {
  const std::size_t n = rules_.size();
  runtime_.clear();
  untiered_ = TierSelection("", n);
  all_ = TierSelection("*", n);
  for (int s = 0; s < 4; ++s) scope_masks_[s] = TierSelection(std::string(kScopeNames[s]), n);
  std::vector<std::string> tier_names;
  for (uint32_t i = 0; i < n; ++i) {
    const Rule& rule = rules_[i];
    Runtime runtime{rule.scope, rule.action, rule.mode, rule.prefilter, -1};
    if (rule.scope == RuleScope::kHeader) {
      const auto it = std::find(header_names_.begin(), header_names_.end(), rule.header);
      runtime.header = static_cast<int16_t>(it - header_names_.begin());
      if (it == header_names_.end()) header_names_.push_back(rule.header);
    }
    runtime_.push_back(runtime);
    all_.add(i);
    scope_masks_[static_cast<int>(rule.scope)].add(i);
    if (rule.tiers.empty()) untiered_.add(i);
    tier_names.insert(tier_names.end(), rule.tiers.begin(), rule.tiers.end());
  }
  std::sort(tier_names.begin(), tier_names.end());
  tier_names.erase(std::unique(tier_names.begin(), tier_names.end()), tier_names.end());
  for (const std::string& tier : tier_names) {
    TierSelection selection(tier, n);
    for (uint32_t i = 0; i < n; ++i) {
      const std::vector<std::string>& tiers = rules_[i].tiers;
      if (tiers.empty() || std::find(tiers.begin(), tiers.end(), tier) != tiers.end())
        selection.add(i);
    }
    tier_selections_.push_back(std::move(selection));
  }
}

std::optional<uint32_t> RuleDatabase::find(std::string_view id) const {
  for (uint32_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].id == id) return i;
  }
  return std::nullopt;
}

const TierSelection& RuleDatabase::selection(std::string_view tier) const {
  for (const TierSelection& selection : tier_selections_) {
    if (selection.tier() == tier) return selection;
  }
  return untiered_;
}

std::vector<std::string> RuleDatabase::tiers() const {
  std::vector<std::string> names;
  for (const TierSelection& selection : tier_selections_) names.push_back(selection.tier());
  return names;
}

int RuleDatabase::header_index(std::string_view header_name) const {
  for (std::size_t i = 0; i < header_names_.size(); ++i) {
    if (iequals(header_names_[i], header_name)) return static_cast<int>(i);
  }
  return -1;
}

bool RuleDatabase::applies(const TierSelection& selection, RuleScope scope,
                           std::string_view header_name) const {
  const std::vector<uint64_t>& mask = scope_masks_[static_cast<int>(scope)].words();
  const std::vector<uint64_t>& chosen = selection.words();
  const int header = scope == RuleScope::kHeader ? header_index(header_name) : -1;
  if (scope == RuleScope::kHeader && header < 0) return false;
  for (std::size_t w = 0; w < mask.size() && w < chosen.size(); ++w) {
    uint64_t candidates = mask[w] & chosen[w];
    if (scope != RuleScope::kHeader && candidates != 0) return true;
    while (candidates != 0) {  // header rules: the name must match too
      const uint32_t rule = static_cast<uint32_t>(w * 64 + __builtin_ctzll(candidates));
      if (runtime_[rule].header == header) return true;
      candidates &= candidates - 1;
    }
  }
  return false;
}

std::string RuleDatabase::hyperscan_info() const {
  char* info = nullptr;
  if (db_ == nullptr || hs_database_info(db_, &info) != HS_SUCCESS) return "";
  return take_hs_string(info);
}

bool RuleDatabase::confirm(uint32_t rule, const char* first, const char* last, bool prev_available,
                           bool stream_start, bool at_end) const {
  const Confirm* check = confirm_[rule].get();
  if (check == nullptr) return true;
  namespace rc = std::regex_constants;
  auto flags = rc::match_default;
  if (prev_available) {
    flags |= rc::match_prev_avail;
  } else if (!stream_start) {
    flags |= rc::match_not_bol | rc::match_not_bow;
  }
  if (!at_end) flags |= rc::match_not_eol | rc::match_not_eow;
  try {
    return std::regex_search(first, last, check->regex, flags);
  } catch (const std::exception&) {  // regex_error (complexity, stack), bad_alloc: not confirmed
    return false;
  }
}

// ---- RuleScratch ------------------------------------------------------------------------------

RuleScratch::~RuleScratch() {
  if (scratch_ != nullptr) hs_free_scratch(scratch_);
}

RuleScratch& RuleScratch::operator=(RuleScratch&& other) noexcept {
  if (this != &other) {
    if (scratch_ != nullptr) hs_free_scratch(scratch_);
    scratch_ = other.scratch_;
    other.scratch_ = nullptr;
  }
  return *this;
}

void RuleScratch::reserve_for(const RuleDatabase& db) {
  hs_scratch_t* scratch = scratch_;
  const hs_error_t result = hs_alloc_scratch(db.hs(), &scratch);
  if (result != HS_SUCCESS)
    throw std::runtime_error("Hyperscan: cannot allocate scratch for " + db.source() + " (error " +
                             std::to_string(result) + ")");
  scratch_ = scratch;
}

std::size_t RuleScratch::bytes() const {
  std::size_t size = 0;
  if (scratch_ == nullptr || hs_scratch_size(scratch_, &size) != HS_SUCCESS) return 0;
  return size;
}

// ---- RuleStream -------------------------------------------------------------------------------

RuleStream::RuleStream() = default;

RuleStream::~RuleStream() {
  release();
}

RuleStream::RuleStream(RuleStream&& other) noexcept {
  *this = std::move(other);
}

RuleStream& RuleStream::operator=(RuleStream&& other) noexcept {
  if (this == &other) return *this;
  release();
  db_ = std::move(other.db_);
  stream_ = std::exchange(other.stream_, nullptr);
  probe_ = std::exchange(other.probe_, nullptr);
  selection_ = other.selection_;
  scope_ = other.scope_;
  header_ = other.header_;
  active_ = std::exchange(other.active_, false);
  dirty_ = std::exchange(other.dirty_, false);
  stopped_ = other.stopped_;
  at_end_ = other.at_end_;
  stop_at_block_ = other.stop_at_block_;
  offset_ = other.offset_;
  confirms_ = other.confirms_;
  verdict_ = other.verdict_;
  seen_ = std::move(other.seen_);
  matches_ = std::move(other.matches_);
  pending_ = std::move(other.pending_);
  window_ = std::move(other.window_);
  window_len_ = other.window_len_;
  window_base_ = other.window_base_;
  return *this;
}

void RuleStream::begin(const RuleDatabase& db, const TierSelection& selection, RuleScope scope,
                       std::string_view header_name) {
  if (db_.get() != &db) {
    release();
    db_ = db.shared_from_this();
    seen_.assign((db.rule_count() + 63) / 64, 0);
    matches_.reserve(std::min<std::size_t>(db.rule_count(), 64));
  } else {
    if (dirty_) reset_hs_stream();  // the previous scan was not ended
    for (uint32_t rule : matches_) seen_[rule / 64] &= ~(uint64_t{1} << (rule % 64));
  }
  matches_.clear();
  pending_.clear();
  selection_ = &selection;
  scope_ = scope;
  header_ = scope == RuleScope::kHeader ? db.header_index(header_name) : -1;
  active_ = db.applies(selection, scope, header_name);
  stopped_ = false;
  at_end_ = false;
  offset_ = 0;
  confirms_ = 0;
  verdict_ = RuleVerdict{};
  window_len_ = 0;
  window_base_ = 0;
  if (!active_) return;
  if (stream_ == nullptr && hs_open_stream(db.hs(), 0, &stream_) != HS_SUCCESS) {
    stream_ = nullptr;
    verdict_.error = true;
    stopped_ = true;
    return;
  }
  if (db.has_prefilter() && !window_) window_ = std::make_unique<char[]>(2 * kConfirmWindowBytes);
}

void RuleStream::feed(std::string_view bytes, RuleScratch& scratch) {
  SLUICE_STAGE(kScan);
  if (!active_ || stopped_) return;
  const bool windowed = db_->has_prefilter();
  // With a window, pieces of at most the window's size keep it covering every hit's last
  // kConfirmWindowBytes; without, pieces fit hs_scan_stream's unsigned length.
  const std::size_t max_piece = windowed ? kConfirmWindowBytes : std::size_t{1} << 30;
  while (!bytes.empty() && !stopped_) {
    const std::string_view piece = bytes.substr(0, max_piece);
    bytes.remove_prefix(piece.size());
    if (windowed) {
      window_append(piece);  // may confirm pending hits, and find a block
      if (stopped_) return;
    }
    scan_piece(piece, scratch);
  }
}

void RuleStream::scan_piece(std::string_view piece, RuleScratch& scratch) {
  dirty_ = true;
  offset_ += piece.size();  // the data's edge, for the callback
  const hs_error_t result =
      hs_scan_stream(stream_, piece.data(), static_cast<unsigned int>(piece.size()), 0,
                     scratch.get(), &RuleStream::on_match, this);
  if (result == HS_SCAN_TERMINATED) {
    stopped_ = true;
    return;
  }
  if (result != HS_SUCCESS) {
    verdict_.error = true;
    stopped_ = true;
  }
}

void RuleStream::window_append(std::string_view piece) {
  // 2 × W bytes: when full, the last W move to the front (amortised one copy per byte), so the
  // W bytes before the current piece are always there. Pending prefilter hits are confirmed
  // first, while the bytes before them are still there: at most one confirm per pending rule
  // per W bytes scanned, so the confirm work stays linear in the stream's length whatever
  // number of false hits the text provokes.
  if (window_len_ + piece.size() > 2 * kConfirmWindowBytes) {
    if (!pending_.empty()) confirm_pending();
    const std::size_t drop = window_len_ - kConfirmWindowBytes;
    std::memmove(window_.get(), window_.get() + drop, kConfirmWindowBytes);
    window_base_ += drop;
    window_len_ = kConfirmWindowBytes;
  }
  std::memcpy(window_.get() + window_len_, piece.data(), piece.size());
  window_len_ += piece.size();
}

RuleVerdict RuleStream::end(RuleScratch& scratch) {
  SLUICE_STAGE(kScan);
  if (active_ && stream_ != nullptr && dirty_) {
    if (!stopped_) {
      at_end_ = true;
      const hs_error_t result =
          hs_reset_stream(stream_, 0, scratch.get(), &RuleStream::on_match, this);
      if (result != HS_SUCCESS && result != HS_SCAN_TERMINATED) verdict_.error = true;
      if (!pending_.empty() && !stopped_) confirm_pending();
      at_end_ = false;
    } else {
      hs_reset_stream(stream_, 0, nullptr, nullptr, nullptr);
    }
    dirty_ = false;
  }
  pending_.clear();
  active_ = false;
  return verdict_;
}

bool RuleStream::probe_end(std::string_view tail, RuleScratch& scratch) {
  SLUICE_STAGE(kScan);
  if (!active_ || stopped_ || stream_ == nullptr) return verdict_.blocked();
  if (probe_ == nullptr && hs_open_stream(db_->hs(), 0, &probe_) != HS_SUCCESS) {
    probe_ = nullptr;
    verdict_.error = true;
    stopped_ = true;
    return false;
  }
  hs_error_t result = hs_reset_and_copy_stream(probe_, stream_, nullptr, nullptr, nullptr);
  probing_ = true;
  if (result == HS_SUCCESS && !tail.empty())
    result = hs_scan_stream(probe_, tail.data(), static_cast<unsigned int>(tail.size()), 0,
                            scratch.get(), &RuleStream::on_match, this);
  if (result == HS_SUCCESS) {
    result = hs_reset_stream(probe_, 0, scratch.get(), &RuleStream::on_match, this);
  } else {
    hs_reset_stream(probe_, 0, nullptr, nullptr, nullptr);
  }
  probing_ = false;
  if (result != HS_SUCCESS && result != HS_SCAN_TERMINATED) verdict_.error = true;
  if (verdict_.blocked() || verdict_.error) stopped_ = true;
  return verdict_.blocked();
}

void RuleStream::cancel() {
  if (dirty_) reset_hs_stream();
  pending_.clear();
  active_ = false;
}

void RuleStream::release() {
  if (stream_ != nullptr) hs_close_stream(stream_, nullptr, nullptr, nullptr);
  if (probe_ != nullptr) hs_close_stream(probe_, nullptr, nullptr, nullptr);
  stream_ = nullptr;
  probe_ = nullptr;
  db_.reset();
  selection_ = nullptr;
  active_ = false;
  dirty_ = false;
  seen_.clear();
  matches_.clear();
  pending_.clear();
  window_.reset();
  window_len_ = 0;
  window_base_ = 0;
}

void RuleStream::reset_hs_stream() {
  if (stream_ != nullptr) hs_reset_stream(stream_, 0, nullptr, nullptr, nullptr);
  dirty_ = false;
}

int RuleStream::on_match(unsigned int id, unsigned long long /*from*/, unsigned long long to,
                         unsigned int /*flags*/, void* context) {
  return static_cast<RuleStream*>(context)->handle_match(id, to);
}

int RuleStream::handle_match(uint32_t rule, uint64_t to) {
  const RuleDatabase& db = *db_;
  if (rule >= db.rule_count() || !selection_->contains(rule)) return 0;
  const RuleDatabase::Runtime& runtime = db.runtime(rule);
  if (runtime.scope != scope_ || runtime.header != header_ || seen(rule)) return 0;
  if (probing_) {  // the copy looks for a block only (see probe_end)
    if (runtime.prefilter || runtime.mode != RuleMode::kEnforce ||
        runtime.action != RuleAction::kBlock)
      return 0;
    return record(rule) ? 1 : 0;
  }
  if (runtime.prefilter) {  // confirmed later: before the window moves on, or at the end
    for (PendingHit& hit : pending_) {
      if (hit.rule == rule) {
        hit.last = to;
        return 0;
      }
    }
    pending_.push_back({rule, to, to});
    return 0;
  }
  return record(rule) ? 1 : 0;
}

bool add_to_verdict(RuleVerdict& verdict, const RuleDatabase& db, uint32_t rule) {
  if (verdict.matched_count < RuleVerdict::kMaxMatched)
    verdict.matched[verdict.matched_count] = rule;
  if (verdict.matched_count < UINT8_MAX) ++verdict.matched_count;
  const RuleDatabase::Runtime& runtime = db.runtime(rule);
  if (runtime.mode != RuleMode::kEnforce) return false;  // shadow: recorded, never decides
  switch (runtime.action) {
    case RuleAction::kBlock:
      if (verdict.blocking_rule < 0) verdict.blocking_rule = static_cast<int32_t>(rule);
      return true;
    case RuleAction::kFlag:
      verdict.flagged = true;
      return false;
    case RuleAction::kLog:
      verdict.logged = true;
      return false;
  }
  return false;
}

bool RuleStream::record(uint32_t rule) {
  seen_[rule / 64] |= uint64_t{1} << (rule % 64);
  matches_.push_back(rule);
  return add_to_verdict(verdict_, *db_, rule) && stop_at_block_;
}

bool RuleStream::confirm(uint32_t rule, uint64_t to) const {
  // The region: from the hit's end minus the window (or the oldest byte kept) to the data's edge.
  // A match found anywhere in it is a real match; one longer than the window is not found.
  const uint64_t lowest = to > kConfirmWindowBytes ? to - kConfirmWindowBytes : 0;
  const uint64_t start = std::max(window_base_, lowest);
  const char* first = window_.get() + (start - window_base_);
  const char* last = window_.get() + window_len_;
  ++confirms_;
  return db_->confirm(rule, first, last, start > window_base_, start == 0, at_end_);
}

void RuleStream::confirm_pending() {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    PendingHit hit = pending_[i];
    if (seen(hit.rule)) continue;
    // From the first hit's start of window to the data's edge: every hit since is covered.
    if (confirm(hit.rule, hit.first)) {
      if (record(hit.rule)) {
        stopped_ = true;
        break;
      }
      continue;
    }
    // A hit at the data's edge may need the next byte (`\b`, `$`): it waits for it.
    if (!at_end_ && hit.last >= offset_) {
      hit.first = hit.last;
      pending_[kept++] = hit;
    }
  }
  pending_.resize(kept);
}

// ---- RuleStreamPool ---------------------------------------------------------------------------

RuleStreamPool::RuleStreamPool(std::size_t capacity) : streams_(capacity) {
  free_.reserve(capacity);
  for (std::size_t i = capacity; i > 0; --i) free_.push_back(&streams_[i - 1]);
}

RuleStream* RuleStreamPool::acquire() {
  if (free_.empty()) return nullptr;
  RuleStream* stream = free_.back();
  free_.pop_back();
  return stream;
}

void RuleStreamPool::release(RuleStream* stream) {
  stream->cancel();
  free_.push_back(stream);
}

void RuleStreamPool::release_idle_not_on(const RuleDatabase* current) {
  for (RuleStream* stream : free_) {
    if (stream->database() != current) stream->release();
  }
}

// ---- RuleTextScanner --------------------------------------------------------------------------

struct RuleTextScanner::Impl final : CanonicalSink {
  Canonicalizer canonicalizer;
  std::string* out = nullptr;
  void on_canonical(std::string_view utf8) override { out->append(utf8); }
};

RuleTextScanner::RuleTextScanner(std::shared_ptr<const RuleDatabase> db)
    : db_(std::move(db)), impl_(std::make_unique<Impl>()), scratch_(*db_) {
  stream_.set_stop_at_block(false);
}

RuleTextScanner::~RuleTextScanner() = default;

const RuleVerdict& RuleTextScanner::scan(std::string_view text, const TierSelection& selection,
                                         RuleScope scope, std::string_view header_name) {
  text_.clear();
  if (scope_is_canonical(scope)) {
    impl_->out = &text_;
    impl_->canonicalizer.reset();
    impl_->canonicalizer.begin_field(*impl_);
    impl_->canonicalizer.feed(text, *impl_);
    impl_->canonicalizer.end_field(*impl_);
  } else {
    text_.assign(text);
  }
  stream_.begin(*db_, selection, scope, header_name);
  stream_.feed(text_, scratch_);
  verdict_ = stream_.end(scratch_);
  return verdict_;
}

}  // namespace sluice
