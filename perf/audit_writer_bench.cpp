// Cost of the audit writer thread per record: what bounds how many decisions per second the
// trail keeps up with before the rings fill and drop.
//   BM_FormatLine        — format_json_line alone, a typical admitted record (≈ 540-byte line);
//   BM_ChainLine         — the hash chain's step on that line: SHA-256 (OpenSSL EVP) + hex;
//   BM_FormatLineWithPrompt/4096 — the line of a record carrying a 4 KiB captured prompt;
//   BM_WriterThroughput  — end to end: one producer pushes kRecords such records into a 16 Ki
//                          ring (waiting when full, so nothing is dropped), the writer formats,
//                          batches into 256 KiB buffers and writes them (io_uring, or pwrite
//                          where io_uring is unavailable) to a file under $TMPDIR (default
//                          /tmp); time from start() to stop() returning. items/s = records/s.
//   build/perf/audit_writer_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Measured: perf/README.md, "Audit writer".
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sluice/audit.hpp"

namespace {

using sluice::AuditRecord;

sluice::AuditEndpoint endpoint(const char* address, uint16_t port) {
  sluice::AuditEndpoint result;
  result.port = port;
  result.family = 4;
  inet_pton(AF_INET, address, result.address.data());
  return result;
}

AuditRecord typical_record(uint64_t sequence) {
  AuditRecord record;
  record.ts_ns = 1'795'000'000'000'000'000 + static_cast<int64_t>(sequence) * 1000;
  record.sequence = sequence;
  record.src = endpoint("198.18.203.1", 51022);
  record.dst = endpoint("198.18.203.2", 8000);
  record.identity.assign("alice");
  record.has_key_id = true;
  record.key_id = 0x2c5309751115;
  record.tier.assign("verified");
  record.verdict = sluice::AuditVerdict::admit;
  record.status = 200;
  record.reason.assign("ok");
  record.method.assign("POST");
  record.set_path("/v1/chat/completions");
  record.set_model("llama-3-70b-instruct");
  record.request_bytes = 812;
  record.prompt_tokens_est = 150;
  record.tokens_reserved = 8342;
  record.usage_reported = true;
  record.usage_prompt_tokens = 150;
  record.usage_completion_tokens = 211;
  record.usage_total_tokens = 361;
  record.tokens_charged = 361;
  return record;
}

std::string temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/sluice-audit-bench-XXXXXX";
  return mkdtemp(pattern.data());
}

void BM_FormatLine(benchmark::State& state) {
  const AuditRecord record = typical_record(7);
  std::vector<char> out(sluice::kMaxAuditLineBytes);
  std::size_t bytes = 0;
  for (auto _ : state) {
    const std::size_t n = sluice::format_json_line(record, out);
    benchmark::DoNotOptimize(out.data());
    bytes += n;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_FormatLine);

void BM_ChainLine(benchmark::State& state) {
  const AuditRecord record = typical_record(7);
  std::vector<char> out(sluice::kMaxAuditLineBytes);
  const std::size_t n = sluice::format_json_line(record, out, {.prev = sluice::kAuditGenesis});
  sluice::AuditChain chain;
  for (auto _ : state) {
    chain.advance(std::string_view(out.data(), n - 1));
    benchmark::DoNotOptimize(chain.prev().data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (n - 1)));
}
BENCHMARK(BM_ChainLine);

// A record with a captured prompt of `range(0)` bytes of plain text (the default cap: 4096).
void BM_FormatLineWithPrompt(benchmark::State& state) {
  AuditRecord record = typical_record(7);
  record.prompt = sluice::AuditPrompt::kCaptured;
  std::string prompt;
  while (prompt.size() < static_cast<std::size_t>(state.range(0)))
    prompt += "Summarise the following meeting notes in three bullet points. ";
  prompt.resize(static_cast<std::size_t>(state.range(0)));
  std::vector<char> out(sluice::max_audit_line_bytes(prompt.size()));
  std::size_t bytes = 0;
  for (auto _ : state) {
    bytes +=
        sluice::format_json_line(record, out, {.prompt = prompt, .prev = sluice::kAuditGenesis});
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_FormatLineWithPrompt)->Arg(4096);

void BM_WriterThroughput(benchmark::State& state) {
  constexpr uint64_t kRecords = 200'000;
  const std::string dir = temp_dir();
  std::vector<AuditRecord> records;
  for (uint64_t i = 0; i < 1024; ++i) records.push_back(typical_record(i));
  uint64_t bytes = 0;
  for (auto _ : state) {
    const std::string path = dir + "/audit.jsonl";
    std::filesystem::remove(path);
    sluice::AuditWriterConfig config;
    config.path = path;
    config.max_file_bytes = uint64_t{1} << 40;
    sluice::AuditRing ring(1 << 14);
    sluice::AuditWriter writer(config);
    writer.add_ring(ring);
    const auto begin = std::chrono::steady_clock::now();
    writer.start();
    std::thread producer([&] {
      for (uint64_t i = 0; i < kRecords; ++i) {
        while (!ring.try_push(records[i & 1023])) std::this_thread::yield();
      }
    });
    producer.join();
    writer.stop();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    state.SetIterationTime(seconds);
    bytes += writer.stats().bytes_written;
    if (writer.stats().records_written != kRecords) state.SkipWithError("records lost");
    state.SetLabel(writer.backend_description());
  }
  std::filesystem::remove_all(dir);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kRecords));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_WriterThroughput)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
