// Evasion invariance: every `match` example of every enforce-mode `block` prompt rule of the
// shipped rule sets (rules/) must still be refused (403 content_policy_violation) when it
// reaches Sluice dressed up: JSON \u-escaped, cut at every byte across TCP segments, sent in
// 1-byte chunks, split across two messages or two roles, with zero-width, tag or fullwidth
// characters or homoglyphs, or gzip-encoded. The request goes through the real HTTP stage and
// admission, with the rules compiled from rules/ by the real compiler.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "sluice/admission.hpp"
#include "sluice/http_stage.hpp"
#include "sluice/identity.hpp"
#include "sluice/rules_loader.hpp"

#ifndef SLUICE_RULES_DIR
#error "SLUICE_RULES_DIR: the shipped rule sets"
#endif

namespace sluice {
namespace {

struct Shipped {
  std::vector<Rule> rules;
  std::shared_ptr<const RuleDatabase> db;
  std::vector<std::string> tiers;
};

// Compiled once for the whole test (Hyperscan compiles take seconds).
const Shipped& shipped() {
  static const Shipped compiled = [] {
    Shipped s;
    // SLUICE_RULES_DIR in the environment points the test at another rule directory.
    const char* override_dir = std::getenv("SLUICE_RULES_DIR");
    s.rules = load_rule_files({override_dir != nullptr ? override_dir : SLUICE_RULES_DIR});
    RuleCompileOptions options;
    options.check_examples = false;  // the compiler's own tests cover that
    s.db = compile_rules(s.rules, options).database;
    std::set<std::string> tiers{"default"};
    for (const Rule& rule : s.rules) tiers.insert(rule.tiers.begin(), rule.tiers.end());
    s.tiers.assign(tiers.begin(), tiers.end());
    return s;
  }();
  return compiled;
}

std::string key_of(const std::string& tier) {
  return "sk-evasion-" + tier;
}

// A policy with one identity per tier the rules name; generous limits.
std::shared_ptr<const AdmissionPolicy> make_policy(LimiterStore& store) {
  std::string text;
  for (const std::string& tier : shipped().tiers) {
    text += "  " + tier +
            ": { requests_per_second: 1000000, burst: 1000000, tokens_per_minute: 1000000000, "
            "token_burst: 100000000, max_concurrent: 1000000, max_body_bytes: 10000000, "
            "max_output_tokens: 1000 }\n";
  }
  const Config config = load_config_text("identities: i.yaml\ntiers:\n" + text, "evasion.yaml");
  std::vector<Identity> identities;
  for (const std::string& tier : shipped().tiers)
    identities.push_back(Identity{tier + "-user", tier, {sha256_of(key_of(tier))}, {}, {}});
  return build_policy(config, std::make_shared<const IdentityTable>(std::move(identities)), store,
                      shipped().db);
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned char>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Every code point as \uXXXX (surrogate pairs beyond the BMP).
std::string json_all_escaped(std::string_view utf8) {
  std::string out = "\"";
  for (std::size_t i = 0; i < utf8.size();) {
    const auto b = static_cast<unsigned char>(utf8[i]);
    const int length = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    uint32_t cp = length == 1 ? b : b & (0xFF >> (length + 1));
    for (int k = 1; k < length; ++k)
      cp = cp << 6 | (static_cast<unsigned char>(utf8[i + k]) & 0x3F);
    i += length;
    char escaped[16];
    if (cp >= 0x10000) {
      cp -= 0x10000;
      std::snprintf(escaped, sizeof escaped, "\\u%04x\\u%04x", 0xD800 + (cp >> 10),
                    0xDC00 + (cp & 0x3FF));
    } else {
      std::snprintf(escaped, sizeof escaped, "\\u%04x", cp);
    }
    out += escaped;
  }
  return out + "\"";
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | cp >> 6);
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | cp >> 12);
    out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | cp >> 18);
    out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
    out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Inserts `cp` after every ASCII letter.
std::string interleave(std::string_view text, uint32_t cp) {
  std::string out;
  for (const char c : text) {
    out += c;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') append_utf8(out, cp);
  }
  return out;
}

std::string fullwidth(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum)
      append_utf8(out, 0xFF00 + static_cast<uint32_t>(c) - 0x20);
    else
      out += c;
  }
  return out;
}

// Cyrillic lookalikes for a, c, e, o, p, x, y and A, B, C, E, H, K, M, O, P, T, X.
std::string homoglyphs(std::string_view text) {
  static const std::map<char, uint32_t> kLookalikes = {
      {'a', 0x430}, {'c', 0x441}, {'e', 0x435}, {'o', 0x43E}, {'p', 0x440}, {'x', 0x445},
      {'y', 0x443}, {'A', 0x410}, {'B', 0x412}, {'C', 0x421}, {'E', 0x415}, {'H', 0x41D},
      {'K', 0x41A}, {'M', 0x41C}, {'O', 0x41E}, {'P', 0x420}, {'T', 0x422}, {'X', 0x425}};
  std::string out;
  for (const char c : text) {
    const auto it = kLookalikes.find(c);
    if (it != kLookalikes.end())
      append_utf8(out, it->second);
    else
      out += c;
  }
  return out;
}

// Tag characters (U+E0020…U+E007E) mirroring each ASCII letter, after it.
std::string tags(std::string_view text) {
  std::string out;
  for (const char c : text) {
    out += c;
    if (c >= 0x20 && c < 0x7F) append_utf8(out, 0xE0000 + static_cast<uint32_t>(c));
  }
  return out;
}

std::string gzip(std::string_view text) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, text.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string chat_body(const std::vector<std::pair<std::string, std::string>>& messages) {
  std::string body = R"({"model":"m","messages":[)";
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i > 0) body += ',';
    body += R"({"role":")" + messages[i].first + R"(","content":)" + messages[i].second + "}";
  }
  return body + "]}";
}

std::string request(const std::string& tier, std::string_view body,
                    std::string_view extra_headers = "") {
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
         "Authorization: Bearer " +
         key_of(tier) + "\r\n" + std::string(extra_headers) +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

std::string chunked_request(const std::string& tier, std::string_view body) {
  std::string out =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
      "Authorization: Bearer " +
      key_of(tier) + "\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const char c : body) {
    out += "1\r\n";
    out += c;
    out += "\r\n";
  }
  return out + "0\r\n\r\n";
}

// What Sluice answers to `input` cut into the given pieces: the denial, or "" when admitted.
class Gate {
 public:
  Gate() : source_(make_policy(store_)), admission_(source_, nullptr, 0, 0) {}

  std::string answer(const std::vector<std::string_view>& pieces) {
    HttpStage stage(&config_, admission_);
    const uint32_t flow = 1;
    stage.on_open(flow, {});
    std::string denial;
    for (std::string_view piece : pieces) {
      const StreamVerdict verdict =
          stage.on_data(flow, Direction::kToServer,
                        {reinterpret_cast<const uint8_t*>(piece.data()), piece.size()}, 1000);
      if (verdict == StreamVerdict::kDeny) {
        const auto bytes = stage.denial(flow);
        denial.assign(bytes.begin(), bytes.end());
        break;
      }
    }
    stage.on_close(flow);
    return denial;
  }
  std::string answer(std::string_view input) { return answer(std::vector{input}); }

 private:
  HttpStageConfig config_;
  LimiterStore store_;
  PolicySource source_;
  Admission admission_;
};

bool refused_by_rule(const std::string& denial) {
  return denial.find(R"("code":"content_policy_violation")") != std::string::npos;
}

struct Example {
  std::string rule;
  std::string tier;
  std::string text;
};

std::vector<Example> blocking_examples() {
  std::vector<Example> examples;
  for (const Rule& rule : shipped().rules) {
    if (rule.scope != RuleScope::kPrompt || rule.action != RuleAction::kBlock ||
        rule.mode != RuleMode::kEnforce)
      continue;
    for (const std::string& text : rule.match_examples)
      examples.push_back({rule.id, rule.tiers.empty() ? "default" : rule.tiers.front(), text});
  }
  return examples;
}

TEST(RulesEvasion, TheShippedRulesHaveBlockingExamples) {
  EXPECT_GE(blocking_examples().size(), 20u);
}

TEST(RulesEvasion, ABenignRequestIsAdmittedSoTheChecksBelowCanFail) {
  Gate gate;
  EXPECT_EQ(
      gate.answer(request("default", chat_body({{"user", json_string("What is 7 times 6?")}}))),
      "");
}

TEST(RulesEvasion, EveryBlockingExampleBlocksHoweverItIsDressed) {
  Gate gate;
  for (const Example& e : blocking_examples()) {
    SCOPED_TRACE(e.rule + ": " + e.text);
    const std::string plain = request(e.tier, chat_body({{"user", json_string(e.text)}}));
    ASSERT_TRUE(refused_by_rule(gate.answer(plain))) << "plain";
    EXPECT_TRUE(refused_by_rule(
        gate.answer(request(e.tier, chat_body({{"user", json_all_escaped(e.text)}})))))
        << "\\u-escaped";
    EXPECT_TRUE(refused_by_rule(
        gate.answer(chunked_request(e.tier, chat_body({{"user", json_string(e.text)}})))))
        << "1-byte chunks";
    // Two messages, and two roles: cut at the middle space.
    const std::size_t middle = e.text.find(' ', e.text.size() / 2);
    if (middle != std::string::npos) {
      const std::string first = e.text.substr(0, middle);
      const std::string second = e.text.substr(middle + 1);
      EXPECT_TRUE(refused_by_rule(gate.answer(request(
          e.tier, chat_body({{"user", json_string(first)}, {"user", json_string(second)}})))))
          << "two messages";
      EXPECT_TRUE(refused_by_rule(gate.answer(request(
          e.tier, chat_body({{"system", json_string(first)}, {"user", json_string(second)}})))))
          << "two roles";
    }
    EXPECT_TRUE(refused_by_rule(gate.answer(
        request(e.tier, chat_body({{"user", json_string(interleave(e.text, 0x200B))}})))))
        << "zero-width spaces";
    EXPECT_TRUE(refused_by_rule(
        gate.answer(request(e.tier, chat_body({{"user", json_string(tags(e.text))}})))))
        << "tag characters";
    EXPECT_TRUE(refused_by_rule(
        gate.answer(request(e.tier, chat_body({{"user", json_string(fullwidth(e.text))}})))))
        << "fullwidth";
    EXPECT_TRUE(refused_by_rule(
        gate.answer(request(e.tier, chat_body({{"user", json_string(homoglyphs(e.text))}})))))
        << "homoglyphs";
    EXPECT_TRUE(refused_by_rule(gate.answer(request(
        e.tier, gzip(chat_body({{"user", json_string(e.text)}})), "Content-Encoding: gzip\r\n"))))
        << "gzip";
  }
}

TEST(RulesEvasion, EveryBlockingExampleBlocksCutAtEveryByte) {
  Gate gate;
  for (const Example& e : blocking_examples()) {
    SCOPED_TRACE(e.rule + ": " + e.text);
    const std::string input = request(e.tier, chat_body({{"user", json_string(e.text)}}));
    for (std::size_t cut = 1; cut < input.size(); ++cut) {
      const std::string_view whole(input);
      ASSERT_TRUE(refused_by_rule(gate.answer({whole.substr(0, cut), whole.substr(cut)})))
          << "cut at " << cut;
    }
    std::vector<std::string_view> bytes;
    for (std::size_t i = 0; i < input.size(); ++i)
      bytes.push_back(std::string_view(input).substr(i, 1));
    EXPECT_TRUE(refused_by_rule(gate.answer(bytes))) << "one byte per segment";
  }
}

}  // namespace
}  // namespace sluice
