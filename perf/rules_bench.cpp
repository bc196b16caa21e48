// Cost of the rule scan (sluice/rules.hpp) on the shipped rules (rules/*.yaml, loaded with
// load_rule_files and compiled once with compile_rules, check_examples off), with one RuleScratch
// and one reused RuleStream (begin → feed → end, scope prompt, selection_all), as a worker runs it:
//   BM_ScanCorpus/corpus:{0,1}/piece:{1460,0}/stop_at_block:{1,0}
//       — every line of a corpus scanned as one request: corpus 0 is
//         ../shared/corpus/benign_dev_gsm8k_train.jsonl, 1 is attack_dev.jsonl; piece 1460 feeds
//         the text in 1460-byte pieces (one TCP segment's worth), 0 in one feed; stop_at_block 1
//         stops at the first enforce block (the data path), 0 scans on (the tools). Bytes/s of
//         canonical text; counters: blocked and matched (per request).
//   BM_EmptyRequest — begin + end of a stream fed nothing: the per-request overhead. Its counters
//         describe the database: db_bytes (hs_database_size), stream_state_bytes (hs_stream_size),
//         scratch_bytes (this worker's RuleScratch), rules, prefilter_rules, compile_ms
//         (compile_rules, measured once with std::chrono: YAML already loaded; Hyperscan compile
//         plus loading the bytes).
// Each line's `text` is canonicalised once up front (sluice::Canonicalizer, one field), so only
// the scan is measured; the data path's canonicalisation cost is perf/canonicalizer_bench.cpp's.
//   build/perf/rules_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// Measured: perf/README.md, "Rule scan (perf/rules_bench.cpp)".
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/canonicalizer.hpp"
#include "sluice/rules.hpp"
#include "sluice/rules_loader.hpp"

#ifndef SLUICE_RULES_DIR
#error "SLUICE_RULES_DIR must name the rules directory (set in perf/meson.build)"
#endif
#ifndef SLUICE_CORPUS_DIR
#define SLUICE_CORPUS_DIR "/work/shared/corpus"
#endif

namespace sluice {
namespace {

constexpr std::size_t kPiece = 1460;
const char* const kCorpusFiles[] = {"benign_dev_gsm8k_train.jsonl", "attack_dev.jsonl"};

class StringSink final : public CanonicalSink {
 public:
  void on_canonical(std::string_view utf8) override { text.append(utf8); }
  std::string text;
};

struct Corpus {
  std::vector<std::string> texts;  // canonical text, one per line
  std::size_t bytes = 0;
  std::string error;  // non-empty: skip the cases that need it
};

struct Fixture {
  std::shared_ptr<const RuleDatabase> db;
  double compile_ms = 0;
  std::string error;
  Corpus corpora[2];
};

Corpus load_corpus(const std::string& path, Canonicalizer& canonicalizer) {
  Corpus corpus;
  std::ifstream in(path);
  if (!in) {
    corpus.error = "cannot open " + path;
    return corpus;
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("text") || !record["text"].is_string()) {
      corpus.error = path + ": a line without a string `text`";
      return corpus;
    }
    StringSink sink;
    canonicalizer.reset();
    canonicalizer.begin_field(sink);
    canonicalizer.feed(record["text"].get_ref<const std::string&>(), sink);
    canonicalizer.end_field(sink);
    corpus.bytes += sink.text.size();
    corpus.texts.push_back(std::move(sink.text));
  }
  if (corpus.texts.empty()) corpus.error = path + ": no lines";
  return corpus;
}

const Fixture& fixture() {
  static const Fixture instance = [] {
    Fixture f;
    try {
      const std::vector<Rule> rules = load_rule_files({SLUICE_RULES_DIR});
      RuleCompileOptions options;
      options.check_examples = false;
      const auto start = std::chrono::steady_clock::now();
      RuleCompileResult result = compile_rules(rules, options);
      const auto stop = std::chrono::steady_clock::now();
      f.compile_ms = std::chrono::duration<double, std::milli>(stop - start).count();
      f.db = std::move(result.database);
    } catch (const std::exception& e) {
      f.error = std::string("rules: ") + e.what();
    }
    Canonicalizer canonicalizer;
    for (std::size_t i = 0; i < 2; ++i)
      f.corpora[i] =
          load_corpus(std::string(SLUICE_CORPUS_DIR) + "/" + kCorpusFiles[i], canonicalizer);
    return f;
  }();
  return instance;
}

void BM_ScanCorpus(benchmark::State& state) {
  const Fixture& f = fixture();
  const auto corpus_index = static_cast<std::size_t>(state.range(0));
  const auto piece = static_cast<std::size_t>(state.range(1));
  const bool stop_at_block = state.range(2) != 0;
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  const Corpus& corpus = f.corpora[corpus_index];
  if (!corpus.error.empty()) {
    state.SkipWithError(corpus.error.c_str());
    return;
  }
  const RuleDatabase& db = *f.db;
  RuleScratch scratch(db);
  RuleStream stream;
  stream.set_stop_at_block(stop_at_block);
  uint64_t blocked = 0, matched = 0, errors = 0;
  for (auto _ : state) {
    for (const std::string& text : corpus.texts) {
      stream.begin(db, db.selection_all(), RuleScope::kPrompt);
      const std::string_view view(text);
      if (piece == 0) {
        stream.feed(view, scratch);
      } else {
        for (std::size_t at = 0; at < view.size(); at += piece)
          stream.feed(view.substr(at, piece), scratch);
      }
      const RuleVerdict verdict = stream.end(scratch);
      blocked += verdict.blocked() ? 1 : 0;
      matched += verdict.matched_count;
      errors += verdict.error ? 1 : 0;
      benchmark::DoNotOptimize(verdict);
    }
  }
  if (errors != 0) state.SkipWithError("a scan reported a Hyperscan error");
  const auto requests =
      static_cast<double>(state.iterations()) * static_cast<double>(corpus.texts.size());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(corpus.bytes));
  state.SetItemsProcessed(static_cast<int64_t>(requests));
  state.counters["requests"] = static_cast<double>(corpus.texts.size());
  state.counters["blocked"] = static_cast<double>(blocked) / requests;
  state.counters["matched"] = static_cast<double>(matched) / requests;
}
BENCHMARK(BM_ScanCorpus)
    ->ArgNames({"corpus", "piece", "stop_at_block"})
    ->ArgsProduct({{0, 1}, {static_cast<int64_t>(kPiece), 0}, {1, 0}});

void BM_EmptyRequest(benchmark::State& state) {
  const Fixture& f = fixture();
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  const RuleDatabase& db = *f.db;
  RuleScratch scratch(db);
  RuleStream stream;
  for (auto _ : state) {
    stream.begin(db, db.selection_all(), RuleScope::kPrompt);
    RuleVerdict verdict = stream.end(scratch);
    benchmark::DoNotOptimize(verdict);
  }
  state.counters["rules"] = static_cast<double>(db.rule_count());
  state.counters["prefilter_rules"] = static_cast<double>(std::count_if(
      db.rules().begin(), db.rules().end(), [](const Rule& r) { return r.prefilter; }));
  state.counters["db_bytes"] = static_cast<double>(db.database_bytes());
  state.counters["stream_state_bytes"] = static_cast<double>(db.stream_state_bytes());
  state.counters["scratch_bytes"] = static_cast<double>(scratch.bytes());
  state.counters["compile_ms"] = f.compile_ms;
}
BENCHMARK(BM_EmptyRequest);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
