#include "workload.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "sluice/canonicalizer.hpp"
#include "sluice/config.hpp"
#include "sluice/identity.hpp"
#include "sluice/packet_builder.hpp"

namespace sluice::bench {
namespace {

constexpr uint64_t kUs = 1000;
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kPsh = 0x08, kAck = 0x10;
constexpr uint32_t kServerIp = 0xC6130001;  // 198.19.0.1
constexpr const char* kHost = "inference.sluice.test";
constexpr const char* kSystemPrompt =
    "You are a careful assistant. Answer the question, show your working step by step, and "
    "say so plainly when the question cannot be answered from what it gives.";

uint32_t client_ip_of(uint32_t session) {
  return 0xC6120000 + session + 1;
}  // 198.18.0.0/16

uint32_t sum_bytes(const uint8_t* bytes, std::size_t length, bool odd_start, uint32_t sum = 0) {
  for (std::size_t i = 0; i < length; ++i)
    sum += ((i + (odd_start ? 1 : 0)) % 2 == 0) ? uint32_t{bytes[i]} << 8 : bytes[i];
  return sum;
}

uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

std::string hex(uint64_t value, int digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, value >>= 4)
    text[static_cast<std::size_t>(i)] = kDigits[value & 15];
  return text;
}

std::vector<std::string> corpus_lines(std::istream& in, const std::string& path) {
  std::vector<std::string> texts;
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    try {
      texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError(path + ":" + std::to_string(number) +
                        ": not a {\"text\": …} line: " + e.what());
    }
  }
  if (texts.empty()) throw ConfigError(path + ": no prompts in the corpus");
  return texts;
}

std::vector<std::string> corpus_texts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read the prompt corpus (profile key `corpus`)");
  return corpus_lines(in, path);
}

// Word problems in the corpus's style, for a checkout without ../shared/corpus.
std::vector<std::string> generated_questions(std::mt19937_64& random) {
  static constexpr const char* kNames[] = {"Ada", "Bruno", "Chen", "Dalia", "Emeka", "Farah"};
  static constexpr const char* kThings[] = {"apples", "pencils", "tickets", "bottles", "stamps"};
  std::vector<std::string> texts;
  for (int i = 0; i < 500; ++i) {
    const auto n = [&](int low, int high) { return std::to_string(low + random() % (high - low)); };
    const std::string who = kNames[random() % 6], what = kThings[random() % 5];
    texts.push_back(who + " has " + n(10, 90) + " " + what + ". " + who + " buys " + n(2, 9) +
                    " boxes of " + n(6, 24) + " " + what + " each and gives " + n(5, 40) +
                    " away to friends. How many " + what + " does " + who +
                    " have now? Explain each step.");
  }
  return texts;
}

// Popularity by rank, s the exponent: P(rank k) ∝ 1 / k^s.
class Zipf {
 public:
  Zipf(std::size_t n, double s) : cdf_(n) {
    double total = 0;
    for (std::size_t k = 0; k < n; ++k)
      cdf_[k] = total += 1.0 / std::pow(static_cast<double>(k + 1), s);
    for (double& c : cdf_) c /= total;
  }
  std::size_t draw(std::mt19937_64& random) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(random);
    const auto rank =
        static_cast<std::size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    return std::min(rank, cdf_.size() - 1);  // u == 1 after rounding
  }

 private:
  std::vector<double> cdf_;
};

class CollectSink final : public CanonicalSink {
 public:
  void on_canonical(std::string_view utf8) override { text.append(utf8); }
  std::string text;
};

// Builds one session's frames into the workload.
class SessionWriter {
 public:
  SessionWriter(Workload& workload, uint32_t session, bool rewrite)
      : w_(workload), session_(session), rewrite_(rewrite) {
    client_seq_ = 0x1000'0000u + session * 7919u;
    server_seq_ = 0x8000'0000u + session * 104729u;
  }

  // Appends a frame at time t; returns its index.
  std::size_t frame(uint64_t t, bool from_client, uint8_t flags, std::string_view payload = {},
                    bool preamble = false) {
    Frame f;
    f.offset = static_cast<uint32_t>(w_.bytes.size());
    f.length = static_cast<uint16_t>(kHeaders + payload.size());
    f.arrives_on = from_client ? Side::kClient : Side::kServer;
    f.rewrite = rewrite_;
    f.preamble = preamble;
    f.session = session_;
    f.t_ns = t;
    w_.bytes.resize(w_.bytes.size() + f.length);
    uint8_t* p = w_.bytes.data() + f.offset;
    static constexpr uint8_t kClientMac[6] = {0x02, 0, 0, 0, 0, 0x01};
    static constexpr uint8_t kServerMac[6] = {0x02, 0, 0, 0, 0, 0x02};
    std::copy_n(from_client ? kServerMac : kClientMac, 6, p);
    std::copy_n(from_client ? kClientMac : kServerMac, 6, p + 6);
    store_be16(p + 12, 0x0800);
    uint8_t* ip = p + kEthernet;
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(kIpv4 + kTcp + payload.size()));
    store_be16(ip + 4, static_cast<uint16_t>(ip_id_++));
    store_be16(ip + 6, 0x4000);  // DF
    ip[8] = 64;
    ip[9] = 6;
    const uint32_t client = client_ip_of(session_);
    store_be32(ip + 12, from_client ? client : kServerIp);
    store_be32(ip + 16, from_client ? kServerIp : client);
    store_be16(ip + 10, static_cast<uint16_t>(~fold(sum_bytes(ip, kIpv4, false))));
    uint8_t* tcp = ip + kIpv4;
    const uint16_t client_port = client_port_of(0);  // moved on every lap
    store_be16(tcp, from_client ? client_port : kServerPort);
    store_be16(tcp + 2, from_client ? kServerPort : client_port);
    uint32_t& own = from_client ? client_seq_ : server_seq_;
    const uint32_t other = from_client ? server_seq_ : client_seq_;
    store_be32(tcp + 4, own);
    store_be32(tcp + 8, (flags & kAck) ? other : 0);
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    store_be16(tcp + 14, 65535);
    std::copy(payload.begin(), payload.end(), tcp + kTcp);
    uint32_t pseudo = sum_bytes(ip + 12, 8, false);
    pseudo += 6 + static_cast<uint32_t>(kTcp + payload.size());
    store_be16(tcp + 16,
               static_cast<uint16_t>(~fold(sum_bytes(tcp, kTcp + payload.size(), false, pseudo))));
    own += static_cast<uint32_t>(payload.size()) + ((flags & (kSyn | kFin)) ? 1 : 0);
    w_.frames.push_back(f);
    return w_.frames.size() - 1;
  }

  // The bytes as TCP segments of at most one MSS, `gap` apart; returns the time of the last.
  uint64_t data(uint64_t t, bool from_client, std::string_view bytes, uint64_t gap,
                uint16_t lap_digits_at = 0) {
    for (std::size_t at = 0; at < bytes.size(); at += kMss) {
      const std::string_view piece = bytes.substr(at, kMss);
      const bool last = at + kMss >= bytes.size();
      const std::size_t index =
          frame(t, from_client, static_cast<uint8_t>(kAck | (last ? kPsh : 0)), piece);
      if (lap_digits_at != 0 && lap_digits_at >= at &&
          std::size_t{lap_digits_at} + 8 <= at + piece.size())
        w_.frames[index].lap_digits = static_cast<uint16_t>(kHeaders + lap_digits_at - at);
      if (!last) t += gap;
    }
    return t;
  }

  uint64_t handshake(uint64_t t, bool preamble = false) {
    frame(t, true, kSyn, {}, preamble);
    frame(t + 20 * kUs, false, kSyn | kAck, {}, preamble);
    frame(t + 40 * kUs, true, kAck, {}, preamble);
    return t + 50 * kUs;
  }

 private:
  Workload& w_;
  uint32_t session_;
  bool rewrite_;
  uint32_t client_seq_, server_seq_;
  uint32_t ip_id_ = 1;
};

std::string compose(const std::vector<std::string>& texts, std::size_t target,
                    std::mt19937_64& random) {
  std::string text;
  while (text.size() < target) {
    if (!text.empty()) text += "\n\n";
    text += texts[random() % texts.size()];
  }
  std::size_t cut = std::min(target, text.size());
  while (cut > 0 && cut < text.size() && (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) --cut;
  text.resize(cut);
  return text;
}

std::string canonical_of(const nlohmann::json& messages) {
  static Canonicalizer canonicalizer;
  CollectSink sink;
  canonicalizer.reset();
  for (const auto& message : messages) {
    canonicalizer.begin_field(sink);
    canonicalizer.feed(message.at("content").get<std::string>(), sink);
    canonicalizer.end_field(sink);
  }
  return sink.text;
}

bool blocked_in_standard(const RuleDatabase& db, const std::string& canonical) {
  static RuleScratch scratch;
  scratch.reserve_for(db);
  RuleStream stream;
  stream.begin(db, db.selection("standard"), RuleScope::kPrompt);
  stream.feed(canonical, scratch);
  return stream.end(scratch).blocked();
}

std::string response_body(std::size_t size, uint64_t prompt_tokens,
                          const std::vector<std::string>& texts, std::mt19937_64& random) {
  nlohmann::json body = {
      {"id", "chatcmpl-bench"},
      {"object", "chat.completion"},
      {"created", 1764000000},
      {"model", "small-1"},
      {"choices",
       {{{"index", 0},
         {"message", {{"role", "assistant"}, {"content", ""}}},
         {"finish_reason", "stop"}}}},
      {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", 0}, {"total_tokens", 0}}}};
  const std::size_t frame = body.dump().size() + 8;
  const std::string answer = compose(texts, size > frame ? size - frame : 16, random);
  body["choices"][0]["message"]["content"] = answer;
  const uint64_t completion_tokens = answer.size() / 4 + 1;
  body["usage"]["completion_tokens"] = completion_tokens;
  body["usage"]["total_tokens"] = prompt_tokens + completion_tokens;
  return body.dump();
}

}  // namespace

std::string_view to_string(SessionKind kind) {
  static constexpr std::string_view kNames[] = {"ok", "unknown_key", "over_limit", "malicious",
                                                "acks"};
  return kNames[static_cast<std::size_t>(kind)];
}

uint64_t Workload::lap_packets() const {
  return static_cast<uint64_t>(
      std::count_if(frames.begin(), frames.end(), [](const Frame& f) { return !f.preamble; }));
}

uint64_t Workload::lap_bytes() const {
  uint64_t total = 0;
  for (const Frame& f : frames) total += f.preamble ? 0 : f.length;
  return total;
}

uint16_t adjust_checksum(uint16_t checksum, const uint8_t* before, const uint8_t* after,
                         std::size_t length, bool odd_offset) {
  uint32_t sum = static_cast<uint16_t>(~checksum);
  sum += static_cast<uint16_t>(~fold(sum_bytes(before, length, odd_offset)));
  sum += fold(sum_bytes(after, length, odd_offset));
  return static_cast<uint16_t>(~fold(sum));
}

uint16_t client_port_of(uint64_t lap) {
  return static_cast<uint16_t>(1024 + lap % 60000);
}

void restamp(uint8_t* frame, const Frame& f, uint64_t lap) {
  uint8_t* tcp = frame + kEthernet + kIpv4;
  uint8_t* port = tcp + (f.arrives_on == Side::kClient ? 0 : 2);
  const uint16_t value = client_port_of(lap);
  const uint8_t next[2] = {static_cast<uint8_t>(value >> 8), static_cast<uint8_t>(value)};
  uint16_t checksum = static_cast<uint16_t>(tcp[16] << 8 | tcp[17]);
  checksum = adjust_checksum(checksum, port, next, 2, false);
  std::memcpy(port, next, 2);
  if (f.lap_digits != 0) {
    const std::string digits = hex(lap & 0xffffffff, 8);  // short: no allocation
    const auto* bytes = reinterpret_cast<const uint8_t*>(digits.data());
    uint8_t* at = frame + f.lap_digits;
    checksum = adjust_checksum(checksum, at, bytes, 8, (f.lap_digits - kEthernet - kIpv4) % 2 == 1);
    std::memcpy(at, bytes, 8);
  }
  tcp[16] = static_cast<uint8_t>(checksum >> 8);
  tcp[17] = static_cast<uint8_t>(checksum);
}

Workload build_workload(const BenchProfile& p, const RuleDatabase* rules,
                        const std::vector<Rule>& rule_sources) {
  std::mt19937_64 random(p.seed);
  Workload w;
  w.sessions = p.sessions;
  w.lap_ns = static_cast<uint64_t>(p.lap_ms * 1e6);

  // Identities: the hottest ranks in `standard`, the coldest share in `capped`.
  const uint32_t capped = std::min<uint32_t>(
      p.identities - 1, static_cast<uint32_t>(std::lround(p.identities * p.capped_identity_share)));
  const uint32_t standard = p.identities - capped;
  std::vector<std::string> keys(p.identities);
  w.identities_yaml = "# generated by sluice-bench from " + p.source + "\nidentities:\n";
  for (uint32_t i = 0; i < p.identities; ++i) {
    keys[i] = "sk-bench-" + hex(random(), 16) + hex(random(), 16);
    w.identities_yaml += "  - { name: bench-" + std::to_string(i) +
                         ", tier: " + (i < standard ? "standard" : "capped") + ", keys: [\"" +
                         sha256_of(keys[i]).to_string() + "\"] }\n";
  }
  const Zipf standard_ranks(standard, p.zipf);
  const Zipf capped_ranks(std::max<uint32_t>(capped, 1), p.zipf);

  // Session kinds: exact counts from the shares, in shuffled order.
  std::vector<SessionKind> kinds(p.sessions,
                                 p.acks_per_session > 0 ? SessionKind::kAcks : SessionKind::kOk);
  if (p.acks_per_session == 0) {
    std::size_t at = 0;
    const auto assign = [&](double share, SessionKind kind) {
      const auto n = static_cast<std::size_t>(std::lround(share * p.sessions));
      for (std::size_t i = 0; i < n && at < kinds.size(); ++i) kinds[at++] = kind;
    };
    assign(p.unknown_key_share, SessionKind::kUnknownKey);
    assign(p.over_limit_share, SessionKind::kOverLimit);
    assign(p.malicious_share, SessionKind::kMalicious);
    if (p.over_limit_share > 0 && capped == 0)
      throw ConfigError(p.source + ": shares.over_limit needs capped_identity_share > 0");
    std::shuffle(kinds.begin(), kinds.end(), random);
  }

  // The corpus when this checkout has it beside it; otherwise generated questions, and the
  // shipped rules' own examples as attacks (the report says which).
  const bool corpus = std::filesystem::exists(p.corpus_dir + "/benign_dev_gsm8k_train.jsonl");
  w.prompt_source =
      corpus ? "corpus " + p.corpus_dir : "generated questions (" + p.corpus_dir + " not found)";
  const std::vector<std::string> benign =
      corpus ? corpus_texts(p.corpus_dir + "/benign_dev_gsm8k_train.jsonl")
             : generated_questions(random);
  std::vector<std::string> attacks;
  if (p.malicious_share > 0) {
    if (rules == nullptr) throw ConfigError(p.source + ": shares.malicious needs `rules`");
    std::vector<std::string> candidates;
    if (corpus) {
      candidates = corpus_texts(p.corpus_dir + "/attack_dev.jsonl");
    } else {
      for (const Rule& rule : rule_sources)
        candidates.insert(candidates.end(), rule.match_examples.begin(), rule.match_examples.end());
      w.prompt_source += ", attacks from the rules' own examples";
    }
    for (const std::string& text : candidates) {
      const nlohmann::json messages = {{{"role", "user"}, {"content", text}}};
      if (blocked_in_standard(*rules, canonical_of(messages))) attacks.push_back(text);
    }
    if (attacks.empty())
      throw ConfigError(p.source + ": no attack prompt (" + w.prompt_source +
                        ") is blocked in tier standard");
  }
  w.attack_prompts_usable = static_cast<uint32_t>(attacks.size());

  std::lognormal_distribution<double> prompt_size(std::log(p.prompt_median_bytes), p.prompt_spread);
  std::uniform_int_distribution<uint32_t> per_session(p.requests_per_session.min,
                                                      p.requests_per_session.max);
  const auto latency = static_cast<uint64_t>(p.latency_ms * 1e6);
  constexpr uint64_t kSegmentGap = 2 * kUs, kAckDelay = 20 * kUs, kThink = 100 * kUs;

  for (uint32_t s = 0; s < p.sessions; ++s) {
    const SessionKind kind = kinds[s];
    ++w.sessions_by_kind[static_cast<std::size_t>(kind)];
    SessionWriter writer(w, s, kind != SessionKind::kAcks);
    if (kind == SessionKind::kAcks) {
      // Handshake once, before the first lap; then pure ACKs both ways, spread over the lap.
      writer.handshake(0, true);
      for (uint32_t a = 0; a < p.acks_per_session; ++a) {
        const uint64_t t = (w.lap_ns / p.acks_per_session) * a +
                           (random() % (w.lap_ns / p.acks_per_session / 2 + 1));
        writer.frame(t, true, kAck);
        writer.frame(t + 1 * kUs, false, kAck);
      }
      continue;
    }
    const uint32_t requests = kind == SessionKind::kOk ? per_session(random) : 1;
    std::vector<BenchRequest> made;
    uint64_t duration = 150 * kUs;
    for (uint32_t r = 0; r < requests; ++r) {
      BenchRequest q;
      q.kind = kind;
      std::string user;
      if (kind == SessionKind::kMalicious) {
        user = attacks[random() % attacks.size()];
      } else {
        const double size = std::clamp(prompt_size(random), 64.0, double(p.prompt_max_bytes));
        user = compose(benign, static_cast<std::size_t>(size), random);
      }
      switch (kind) {
        case SessionKind::kUnknownKey:
          q.key = "sk-unknown-" + hex(0, 8) + hex(random(), 16) + hex(random(), 8);
          break;
        case SessionKind::kOverLimit:
          q.identity = standard + static_cast<int64_t>(capped_ranks.draw(random));
          break;
        default:
          q.identity = static_cast<int64_t>(standard_ranks.draw(random));
      }
      if (q.identity >= 0) q.key = keys[static_cast<std::size_t>(q.identity)];
      const nlohmann::json messages = {{{"role", "system"}, {"content", kSystemPrompt}},
                                       {{"role", "user"}, {"content", user}}};
      q.body = nlohmann::json{
          {"model", "small-1"},
          {"messages", messages},
          {"max_tokens", 256},
          {"temperature",
           0.7}}.dump();
      q.canonical = canonical_of(messages);
      q.head = std::string("POST /v1/chat/completions HTTP/1.1\r\nHost: ") + kHost +
               "\r\nUser-Agent: sluice-bench/1\r\nAccept: application/json\r\nAuthorization: "
               "Bearer " +
               q.key + "\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(q.body.size()) + "\r\n\r\n";
      duration += (q.head.size() + q.body.size()) / kMss * kSegmentGap + latency +
                  (p.response_bytes / kMss + 1) * kSegmentGap + kAckDelay + kThink;
      made.push_back(std::move(q));
    }
    if (duration >= w.lap_ns) {
      throw ConfigError(p.source + ": lap_ms " + std::to_string(p.lap_ms) +
                        " is shorter than a session (" + std::to_string(duration / 1e6) +
                        " ms): raise lap_ms, or lower latency_ms or requests_per_session");
    }
    uint64_t t = random() % (w.lap_ns - duration);
    t = writer.handshake(t);
    for (BenchRequest& q : made) {
      const std::string request = q.head + q.body;
      const std::size_t key_at = q.head.find("sk-unknown-");
      const bool fresh = kind == SessionKind::kUnknownKey && p.unknown_keys_fresh;
      t = writer.data(t, true, request, kSegmentGap,
                      fresh ? static_cast<uint16_t>(key_at + 11) : uint16_t{0});
      if (kind != SessionKind::kOk) {
        writer.frame(t + kThink, true, kAck | kFin);  // the client closes after Sluice's answer
        break;
      }
      writer.frame(t + kAckDelay, false, kAck);
      const std::string body = response_body(p.response_bytes, q.body.size() / 4, benign, random);
      const std::string response =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body;
      t = writer.data(t + latency, false, response, kSegmentGap);
      writer.frame(t + kAckDelay, true, kAck);
      t += kAckDelay + kThink;
    }
    if (kind == SessionKind::kOk) {
      writer.frame(t, true, kAck | kFin);
      writer.frame(t + kAckDelay, false, kAck | kFin);
      writer.frame(t + 2 * kAckDelay, true, kAck);
    }
    for (BenchRequest& q : made) {
      ++w.requests_by_kind[static_cast<std::size_t>(kind)];
      w.requests.push_back(std::move(q));
    }
  }
  std::stable_sort(w.frames.begin(), w.frames.end(), [](const Frame& a, const Frame& b) {
    return a.preamble != b.preamble ? a.preamble : a.t_ns < b.t_ns;
  });
  return w;
}

std::string request_mix_jsonl(const BenchProfile& profile, const Workload& workload,
                              uint64_t standard_rps, uint64_t standard_burst, uint64_t capped_rps,
                              uint64_t capped_burst) {
  nlohmann::json header = {
      {"profile", profile.name},
      {"tiers",
       {{"standard", {{"requests_per_second", standard_rps}, {"burst", standard_burst}}},
        {"capped", {{"requests_per_second", capped_rps}, {"burst", capped_burst}}}}},
      {"response_bytes", profile.response_bytes},
      {"requests", workload.requests.size()}};
  std::string out = header.dump() + "\n";
  for (const BenchRequest& q : workload.requests) {
    nlohmann::json line = {
        {"kind", to_string(q.kind)},      {"tier", nullptr}, {"key", q.key}, {"method", "POST"},
        {"path", "/v1/chat/completions"}, {"body", q.body}};
    if (q.kind == SessionKind::kOverLimit)
      line["tier"] = "capped";
    else if (q.identity >= 0)
      line["tier"] = "standard";
    out += line.dump() + "\n";
  }
  return out;
}

}  // namespace sluice::bench
