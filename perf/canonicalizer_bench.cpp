// Canonicalizer throughput on prompt text, fed in TCP-segment-sized pieces (1,448 bytes):
//   build/perf/canonicalizer_bench --benchmark_min_time=0.5
// BM_Canonicalize/{ascii,mixed}/{1024,4096,32768}: bytes/s of input. "ascii" is English prose
// with digits and punctuation; "mixed" is the same with one word in four replaced by accented
// Latin, Cyrillic, Greek, CJK, Hangul, emoji and homoglyph-spoofed English (≈ 30 % of bytes
// non-ASCII). BM_FoldLookup vs BM_NoFoldLookup: the per-character cost of the homoglyph fold
// (a table lookup) against the same path for non-foldable letters; BM_IcuSkeleton: what one
// ICU skeleton call per code point would cost instead.
#include <benchmark/benchmark.h>
#include <unicode/uspoof.h>
#include <unicode/utf16.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/canonicalizer.hpp"

namespace sluice {
namespace {

class CountingSink final : public CanonicalSink {
 public:
  void on_canonical(std::string_view utf8) override { bytes += utf8.size(); }
  std::size_t bytes = 0;
};

constexpr std::size_t kSegment = 1448;

const char* const kEnglish[] = {
    "the",  "model",    "should",  "answer", "every",     "question", "about",   "prices,",
    "and",  "then",     "explain", "how",    "many",      "apples",   "Natalia", "sold",
    "in",   "April",    "(about",  "48)",    "while",     "ignoring", "none",    "of",
    "the",  "previous", "rules.",  "Please", "summarise", "this",     "report:", "revenue",
    "grew", "12.5%",    "to",      "$3,400", "in",        "2023;",    "costs",   "fell.",
};
const char* const kForeign[] = {
    "caf\u00e9",                                         // accented Latin
    "na\u00efve",                                        //
    "\u043f\u0440\u0438\u0432\u0435\u0442",              // Cyrillic
    "\u0434\u0435\u043b\u0430",                          //
    "\u03ba\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1",  // Greek
    "\u4eca\u5929\u5929\u6c14",                          // CJK
    "\uc548\ub155\ud558\uc138\uc694",                    // Hangul
    "\U0001F600\U0001F44D\U0001F3FD",                    // emoji, with a skin-tone modifier
    "\u0456gn\u043er\u0435",                             // homoglyph-spoofed "ignore"
    "in\u200bstruc\u200dtions",                          // zero-width padding
};

std::string prompt(std::size_t bytes, bool mixed) {
  std::mt19937 random(42);
  std::string text;
  while (text.size() < bytes) {
    const bool foreign = mixed && random() % 4 == 0;
    text += foreign ? kForeign[random() % std::size(kForeign)]
                    : kEnglish[random() % std::size(kEnglish)];
    text += random() % 17 == 0 ? "\n\n" : " ";
  }
  // Cut at a character boundary at or before `bytes`.
  std::size_t end = bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80) --end;
  text.resize(end);
  return text;
}

void run(benchmark::State& state, const std::string& text) {
  Canonicalizer canonicalizer;
  CountingSink sink;
  for (auto _ : state) {
    canonicalizer.reset();
    canonicalizer.begin_field(sink);
    for (std::size_t at = 0; at < text.size(); at += kSegment) {
      canonicalizer.feed(std::string_view(text).substr(at, kSegment), sink);
    }
    canonicalizer.end_field(sink);
    benchmark::DoNotOptimize(canonicalizer.token_estimate());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["out_bytes"] = static_cast<double>(sink.bytes) / state.iterations();
}

void BM_Canonicalize(benchmark::State& state, bool mixed) {
  run(state, prompt(static_cast<std::size_t>(state.range(0)), mixed));
}
BENCHMARK_CAPTURE(BM_Canonicalize, ascii, false)->Arg(1024)->Arg(4096)->Arg(32768);
BENCHMARK_CAPTURE(BM_Canonicalize, mixed, true)->Arg(1024)->Arg(4096)->Arg(32768);

// 4,096 two-byte letters, separated by nothing: per-character cost = time / 4096.
std::string repeated(std::u8string_view letters, std::size_t count) {
  std::string text;
  const std::string_view bytes(reinterpret_cast<const char*>(letters.data()), letters.size());
  while (text.size() < count * 2) text += bytes;
  return text;
}

// Cyrillic а е о р с х у: every letter folds to ASCII.
void BM_FoldLookup(benchmark::State& state) {
  const std::string text = repeated(u8"\u0430\u0435\u043e\u0440\u0441\u0445\u0443", 4096);
  run(state, text);
  state.counters["ns_per_char"] =
      benchmark::Counter(static_cast<double>(state.iterations() * text.size() / 2),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_FoldLookup);

// Cyrillic б г д ж з л п: none folds; same lengths, same path otherwise.
void BM_NoFoldLookup(benchmark::State& state) {
  const std::string text = repeated(u8"\u0431\u0433\u0434\u0436\u0437\u043b\u043f", 4096);
  run(state, text);
  state.counters["ns_per_char"] =
      benchmark::Counter(static_cast<double>(state.iterations() * text.size() / 2),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_NoFoldLookup);

// One uspoof_getSkeleton call per code point: the cost the start-up table avoids.
void BM_IcuSkeleton(benchmark::State& state) {
  UErrorCode status = U_ZERO_ERROR;
  USpoofChecker* spoof = uspoof_open(&status);
  const UChar letters[] = {0x0430, 0x0435, 0x043e, 0x0440, 0x0441, 0x0445, 0x0443};
  UChar out[16];
  std::size_t i = 0;
  for (auto _ : state) {
    status = U_ZERO_ERROR;
    benchmark::DoNotOptimize(
        uspoof_getSkeleton(spoof, 0, &letters[i++ % std::size(letters)], 1, out, 16, &status));
  }
  uspoof_close(spoof);
}
BENCHMARK(BM_IcuSkeleton);

}  // namespace
}  // namespace sluice

BENCHMARK_MAIN();
