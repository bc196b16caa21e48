// Reading a YAML document for the control layer's loaders (config, identities): one place that
// turns yaml-cpp's parse errors and unreadable files into ConfigErrors naming file:line:column.
#pragma once

#include <yaml-cpp/yaml.h>

#include <fstream>
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

// `what` names the file's role in the message ("config file", "identities file").
inline std::string read_text_file(const std::string& path, std::string_view what) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open " + std::string(what));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace sluice
