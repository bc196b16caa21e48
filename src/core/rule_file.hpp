// The rule database file's pieces shared by the compiler (writes) and RuleDatabase (reads): the
// section tags, the rule table's JSON form and SHA-256. Layout: include/sluice/rules.hpp.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <regex>
#include <span>
#include <string>
#include <string_view>

#include "sluice/rules.hpp"

namespace sluice::rule_file {

inline constexpr std::string_view kRuleTable = "RULE";
inline constexpr std::string_view kRuleSets = "SETS";
inline constexpr std::string_view kContentHash = "HASH";
inline constexpr std::string_view kHyperscan = "HSDB";
inline constexpr std::size_t kDigestBytes = 32;
// magic · version · section count
inline constexpr std::size_t kHeaderBytes = kRulesMagic.size() + 4 + 4;

std::array<uint8_t, kDigestBytes> sha256(std::string_view bytes);
std::string hex(std::span<const uint8_t> bytes);

// A rule as the table stores it; with_examples and with_source for the content hash and not.
nlohmann::json rule_to_json(const Rule& rule, bool with_examples, bool with_source);
// Throws std::invalid_argument naming the field at fault.
Rule rule_from_json(const nlohmann::json& json);

// The prefilter confirm step's regex for a rule (confirm_regex_source with the rule's caseless and
// multiline flags); throws std::invalid_argument or std::regex_error.
std::regex confirm_regex(const Rule& rule);

inline void put_u32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(value >> (8 * i) & 0xff));
}
inline void put_u64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(value >> (8 * i) & 0xff));
}
inline uint64_t get_le(std::string_view bytes, std::size_t at, int width) {
  uint64_t value = 0;
  for (int i = 0; i < width; ++i) value |= uint64_t{static_cast<uint8_t>(bytes[at + i])} << (8 * i);
  return value;
}

}  // namespace sluice::rule_file
