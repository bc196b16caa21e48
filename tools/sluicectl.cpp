// sluicectl: the operator's tool next to the appliance. So far: keys hash, identities check.
// Exit status: 0 done, 2 bad usage or bad input (the message says what was expected).
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/identities.hpp"
#include "sluice/identity.hpp"

namespace {

constexpr int kUsageError = 2;

constexpr std::string_view kHelp = R"(usage: sluicectl COMMAND [ARGS]

Commands:
  keys hash               read one API key on stdin, print its digest for the identities file
  identities check FILE   load and validate an identities file, print a summary
  help, --help            show this help; 'sluicectl COMMAND --help' explains a command

Exit status: 0 on success, 2 on bad usage or bad input (the message names what was expected).
)";

constexpr std::string_view kKeysHelp = R"(usage: sluicectl keys hash

  Reads ONE API key on stdin -- the token exactly as clients send it after 'Bearer ' in the
  Authorization header -- and prints 'sha256:<64 lowercase hex digits>', the form the
  identities file's 'keys' lists take. Keys are never stored in clear on the appliance.

  One trailing newline is removed (so 'echo KEY' and 'printf KEY' agree); nothing else is
  trimmed. Refused, with exit status 2: an empty key, more than one line, and control
  characters (a carriage return, say), which an HTTP header cannot carry.

  Example:  printf '%s' "$KEY" | sluicectl keys hash
            (reading from a pipe keeps the key out of the shell history and 'ps')
)";

constexpr std::string_view kIdentitiesHelp = R"(usage: sluicectl identities check FILE

  Loads FILE as an identities file and validates it the way the appliance will: known keys
  only, name, tier and keys present, names unique, every key digest in the form
  'sha256:<64 lowercase hex digits>' and listed once, limits positive integers.
  Prints 'FILE: N identities, M keys, tiers: a, b' or the first error as
  FILE:LINE:COLUMN: key.path: what was expected (exit status 2).
  Tier names are checked against the config's tiers when the appliance loads both.
)";

bool wants_help(std::string_view arg) {
  return arg == "--help" || arg == "-h" || arg == "help";
}

int usage_error(const std::string& message, std::string_view help) {
  std::cerr << "sluicectl: " << message << "\n\n" << help;
  return kUsageError;
}

int keys_hash() {
  std::string key((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (key.empty()) {
    std::cerr << "sluicectl keys hash: no key on stdin (expected one key, e.g. "
                 "printf '%s' \"$KEY\" | sluicectl keys hash)\n";
    return kUsageError;
  }
  if (key.find('\n') != std::string::npos) {
    std::cerr << "sluicectl keys hash: more than one line on stdin (expected exactly one key; "
                 "hash keys one at a time)\n";
    return kUsageError;
  }
  for (unsigned char c : key) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      std::cerr << "sluicectl keys hash: the key contains a control character"
                << (c == '\r' ? " (a carriage return: CRLF line ending?)" : "")
                << "; an HTTP header cannot carry it, so no client could present this key\n";
      return kUsageError;
    }
  }
  std::cout << sluice::sha256_of(key).to_string() << "\n";
  return 0;
}

int identities_check(const std::string& path) {
  try {
    const auto table = sluice::load_identities_file(path);
    std::string tiers;
    for (const std::string& tier : table->tiers()) tiers += (tiers.empty() ? "" : ", ") + tier;
    const size_t n = table->identities().size();
    const size_t m = table->key_count();
    std::cout << path << ": " << n << (n == 1 ? " identity, " : " identities, ") << m
              << (m == 1 ? " key" : " keys") << ", tiers: " << (tiers.empty() ? "none" : tiers)
              << "\n";
    return 0;
  } catch (const sluice::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return kUsageError;
  }
}

int run(const std::vector<std::string_view>& args) {
  if (args.empty()) return usage_error("missing command", kHelp);
  if (wants_help(args[0])) {
    std::cout << kHelp;
    return 0;
  }
  if (args[0] == "keys") {
    if (args.size() >= 2 && wants_help(args[1])) {
      std::cout << kKeysHelp;
      return 0;
    }
    if (args.size() == 2 && args[1] == "hash") return keys_hash();
    if (args.size() == 3 && args[1] == "hash" && wants_help(args[2])) {
      std::cout << kKeysHelp;
      return 0;
    }
    if (args.size() >= 2 && args[1] == "hash")
      return usage_error("keys hash takes no arguments (the key is read from stdin)", kKeysHelp);
    return usage_error("expected 'keys hash'", kKeysHelp);
  }
  if (args[0] == "identities") {
    if (args.size() >= 2 && wants_help(args[1])) {
      std::cout << kIdentitiesHelp;
      return 0;
    }
    if (args.size() >= 2 && args[1] == "check") {
      if (args.size() == 3 && wants_help(args[2])) {
        std::cout << kIdentitiesHelp;
        return 0;
      }
      if (args.size() == 3) return identities_check(std::string(args[2]));
      return usage_error("expected 'identities check FILE'", kIdentitiesHelp);
    }
    return usage_error("expected 'identities check FILE'", kIdentitiesHelp);
  }
  return usage_error("unknown command '" + std::string(args[0]) + "'", kHelp);
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  return run(std::vector<std::string_view>(argv + 1, argv + argc));
}
