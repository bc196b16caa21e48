// Reading a YAML document for the control layer's loaders (config, identities, rules): one place
// that turns yaml-cpp's parse errors and unreadable files into ConfigErrors naming
// file:line:column, and the checks every loader makes in the same words.
#pragma once

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <string_view>

#include "sluice/config.hpp"

namespace sluice {

inline YAML::Node parse_yaml_document(std::string_view text, const std::string& source_name) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw ConfigError(source_name + ":" + std::to_string(e.mark.line + 1) + ":" +
                      std::to_string(e.mark.column + 1) + ": invalid YAML: " + e.msg);
  }
}

// "file:line:column" of a node (just the file when yaml-cpp has no mark for it).
inline std::string yaml_location(const std::string& source, const YAML::Node& at) {
  const YAML::Mark mark = at.Mark();
  std::string where = source;
  if (mark.line >= 0) {
    where += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
  }
  return where;
}

// "a.b" for key `b` under path `a`; just the key at the top.
inline std::string qualified_key(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// A value as a message quotes it.
inline std::string describe_node(const YAML::Node& value) {
  if (value.IsScalar()) return value.Scalar();
  if (value.IsSequence()) return "a list";
  if (value.IsMap()) return "a mapping";
  return "nothing";
}

// Throws for the first key of `map` outside `known`, naming the ones that are allowed.
inline void reject_unknown_keys(const YAML::Node& map, const std::string& path,
                                std::initializer_list<std::string_view> known,
                                const std::string& source) {
  for (const auto& entry : map) {
    const std::string key = entry.first.Scalar();
    bool found = false;
    for (std::string_view k : known) found = found || k == key;
    if (found) continue;
    std::string expected;
    for (std::string_view k : known) expected += (expected.empty() ? "" : ", ") + std::string(k);
    throw ConfigError(yaml_location(source, entry.first) + ": unknown key '" +
                      qualified_key(path, key) + "' (expected one of: " + expected + ")");
  }
}

// `what` names the file's role in the message ("config file", "identities file").
inline std::string read_text_file(const std::string& path, std::string_view what) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open " + std::string(what));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The message shape every loader shares: "file:line:column: key.path: what was expected".
class YamlReader {
 public:
  explicit YamlReader(const std::string& source) : source_(source) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& message) const {
    throw ConfigError(where(at) + ": " + message);
  }
  std::string where(const YAML::Node& at) const { return yaml_location(source_, at); }
  void allow_only(const YAML::Node& map, const std::string& path,
                  std::initializer_list<std::string_view> known) const {
    reject_unknown_keys(map, path, known, source_);
  }

  // The scalar `value` (at `path`) when it is [chars]{1,max}; `what` describes the form.
  std::string word_at(const YAML::Node& value, const std::string& path, std::string_view chars,
                      std::size_t max, const std::string& what) const {
    const std::string text = value.IsScalar() ? value.Scalar() : "";
    if (!value.IsScalar() || text.empty() || text.size() > max ||
        text.find_first_not_of(chars) != std::string::npos) {
      fail(value, path + ": expected " + what + ", got '" + describe_node(value) + "'");
    }
    return text;
  }

 protected:
  const std::string& source_;
};

}  // namespace sluice
