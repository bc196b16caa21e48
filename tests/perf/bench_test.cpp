// sluice-bench's own parts: the frames it builds are valid TCP/IPv4 with correct checksums, the
// per-lap rewrite keeps them valid (differentially against a full recomputation), the mix follows
// the profile, and the stage clock charges exclusive time.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "profile.hpp"
#include "sluice/classify.hpp"
#include "sluice/stage_clock.hpp"
#include "workload.hpp"

namespace sluice::bench {
namespace {

// Reference: the one's-complement sum of the whole TCP segment with its pseudo-header.
bool tcp_checksum_valid(std::span<const uint8_t> frame) {
  const uint8_t* ip = frame.data() + kEthernet;
  const std::size_t tcp_length = frame.size() - kEthernet - kIpv4;
  uint32_t sum = 6 + static_cast<uint32_t>(tcp_length);
  for (std::size_t i = 12; i < 20; i += 2) sum += uint32_t{ip[i]} << 8 | ip[i + 1];
  const uint8_t* tcp = ip + kIpv4;
  for (std::size_t i = 0; i < tcp_length; ++i) sum += (i % 2 == 0) ? uint32_t{tcp[i]} << 8 : tcp[i];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

class BenchWorkloadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("bench_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "small.yaml").string();
    std::ofstream(path) << "name: small\nconfig: " SLUICE_PROFILES_DIR "/sluice.yaml\n"
                        << "corpus: " SLUICE_CORPUS_DIR "\n"
                        << "sessions: 200\nlap_ms: 200\nidentities: 50\n"
                        << "requests_per_session: { min: 1, max: 3 }\n"
                        << "prompt_bytes: { median: 2000, spread: 0.5, max: 6000 }\n"
                        << "shares: { unknown_key: 0.25, over_limit: 0.1, malicious: 0 }\n"
                        << "capped_identity_share: 0.1\nseed: 7\n";
    profile_ = new BenchProfile(load_profile(path));
    workload_ = new Workload(build_workload(*profile_, nullptr));
    std::filesystem::remove_all(dir);
  }
  static void TearDownTestSuite() {
    delete workload_;
    delete profile_;
  }
  static std::span<const uint8_t> bytes_of(const Frame& f) {
    return {workload_->bytes.data() + f.offset, f.length};
  }
  static BenchProfile* profile_;
  static Workload* workload_;
};
BenchProfile* BenchWorkloadTest::profile_ = nullptr;
Workload* BenchWorkloadTest::workload_ = nullptr;

TEST_F(BenchWorkloadTest, EveryFrameIsValidTcpWithCorrectChecksums) {
  ASSERT_FALSE(workload_->frames.empty());
  for (const Frame& f : workload_->frames) {
    const std::span<const uint8_t> frame = bytes_of(f);
    const Classification c = classify(frame);
    ASSERT_FALSE(c.malformed);
    ASSERT_TRUE(c.info.is_tcp());
    EXPECT_TRUE(ipv4_header_checksum_ok(frame, c.info));
    EXPECT_TRUE(l4_checksum_ok(frame, c.info));
    EXPECT_TRUE(tcp_checksum_valid(frame));
    EXPECT_LE(c.info.payload_length, kMss);
    EXPECT_EQ(f.arrives_on == Side::kClient ? c.info.dst_port : c.info.src_port, kServerPort);
    EXPECT_LT(f.t_ns, workload_->lap_ns);
  }
}

TEST_F(BenchWorkloadTest, RestampKeepsChecksumsValidAtAnyLap) {
  std::size_t with_digits = 0;
  for (const uint64_t lap :
       {1ULL, 2ULL, 255ULL, 59'999ULL, 60'000ULL, 0xabcdefULL, 123'456'789ULL}) {
    for (const Frame& f : workload_->frames) {
      std::vector<uint8_t> frame(bytes_of(f).begin(), bytes_of(f).end());
      restamp(frame.data(), f, lap);
      ASSERT_TRUE(tcp_checksum_valid(frame)) << "lap " << lap;
      const Classification c = classify(frame);
      ASSERT_TRUE(l4_checksum_ok(frame, c.info));
      EXPECT_EQ(f.arrives_on == Side::kClient ? c.info.src_port : c.info.dst_port,
                client_port_of(lap));
      if (f.lap_digits != 0) {
        ++with_digits;
        char expected[9];
        std::snprintf(expected, sizeof expected, "%08x", static_cast<uint32_t>(lap));
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(frame.data()) + f.lap_digits, 8),
                  expected);
      }
    }
  }
  EXPECT_GT(with_digits, 0u);  // the fresh unknown keys were rewritten too
}

TEST(BenchChecksum, AdjustMatchesFullRecomputationAtEveryAlignment) {
  std::mt19937 random(11);
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint8_t> data(2 + random() % 200);
    for (uint8_t& b : data) b = static_cast<uint8_t>(random());
    const auto sum_of = [](const std::vector<uint8_t>& bytes) {
      uint32_t sum = 0;
      for (std::size_t i = 0; i < bytes.size(); ++i)
        sum += (i % 2 == 0) ? uint32_t{bytes[i]} << 8 : bytes[i];
      while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
      return static_cast<uint16_t>(~sum);
    };
    const uint16_t before = sum_of(data);
    const std::size_t offset = random() % data.size();
    const std::size_t length = 1 + random() % (data.size() - offset);
    std::vector<uint8_t> changed = data;
    for (std::size_t i = 0; i < length; ++i) changed[offset + i] = static_cast<uint8_t>(random());
    const uint16_t adjusted = adjust_checksum(before, data.data() + offset, changed.data() + offset,
                                              length, offset % 2 == 1);
    // 0x0000 and 0xffff are the same one's-complement value.
    const uint16_t full = sum_of(changed);
    EXPECT_TRUE(adjusted == full || (adjusted ^ full) == 0xffff)
        << "round " << round << " offset " << offset << " length " << length;
  }
}

TEST_F(BenchWorkloadTest, TheMixFollowsTheProfile) {
  const auto& sessions = workload_->sessions_by_kind;
  EXPECT_EQ(sessions[static_cast<std::size_t>(SessionKind::kUnknownKey)], 50u);  // 25 % of 200
  EXPECT_EQ(sessions[static_cast<std::size_t>(SessionKind::kOverLimit)], 20u);
  EXPECT_EQ(sessions[static_cast<std::size_t>(SessionKind::kOk)], 130u);
  std::array<uint32_t, kSessionKinds> requests{};
  for (const BenchRequest& q : workload_->requests) {
    ++requests[static_cast<std::size_t>(q.kind)];
    EXPECT_NE(q.head.find("Content-Length: " + std::to_string(q.body.size()) + "\r\n"),
              std::string::npos);
    EXPECT_FALSE(q.canonical.empty());
    if (q.kind == SessionKind::kUnknownKey)
      EXPECT_EQ(q.identity, -1);
    else
      EXPECT_GE(q.identity, 0);
  }
  EXPECT_EQ(requests, workload_->requests_by_kind);
  // Refused kinds carry one request per session; admitted ones 1 to 3.
  EXPECT_EQ(requests[static_cast<std::size_t>(SessionKind::kUnknownKey)], 50u);
  EXPECT_GE(requests[static_cast<std::size_t>(SessionKind::kOk)], 130u);
  EXPECT_LE(requests[static_cast<std::size_t>(SessionKind::kOk)], 390u);
  // Identities: digests only; the keys never appear in the identities file.
  EXPECT_EQ(workload_->identities_yaml.find("sk-bench-"), std::string::npos);
  EXPECT_NE(workload_->identities_yaml.find("tier: capped"), std::string::npos);
}

TEST_F(BenchWorkloadTest, EachSessionsFramesStayInTimeOrder) {
  std::vector<uint64_t> last(workload_->sessions, 0);
  for (const Frame& f : workload_->frames) {
    EXPECT_GE(f.t_ns, last[f.session]);
    last[f.session] = f.t_ns;
  }
}

TEST(BenchProfile, ErrorsNameFileLineAndKey) {
  const std::string path = std::filesystem::temp_directory_path() / "bench_bad_profile.yaml";
  std::ofstream(path) << "config: x.yaml\nsessions: 10\nrequests_per_session: { min: 3, max: 2 }\n";
  try {
    load_profile(path);
    FAIL() << "accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":3:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("max is below min"), std::string::npos) << e.what();
  }
  std::ofstream(path) << "config: x.yaml\nsesions: 10\n";
  try {
    load_profile(path);
    FAIL() << "accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2:1: unknown key 'sesions'"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
}

// The stage clock (compiled in here): time is charged to the innermost stage, exclusively.
void spin(uint64_t cycles) {
  const uint64_t until = stage_clock::read_cycles() + cycles;
  while (stage_clock::read_cycles() < until) {
  }
}

TEST(StageClock, ChargesExclusiveTimeToTheInnermostStage) {
  using stage_clock::Stage;
  stage_clock::reset();
  {
    SLUICE_STAGE(kHttp);
    spin(2'000'000);
    {
      SLUICE_STAGE(kScan);
      spin(6'000'000);
    }
    spin(2'000'000);
  }
  stage_clock::settle();
  const stage_clock::Ledger& l = stage_clock::ledger;
  const auto at = [&](Stage s) { return l.cycles[static_cast<std::size_t>(s)]; };
  EXPECT_NEAR(static_cast<double>(at(Stage::kScan)), 6e6, 6e5);
  EXPECT_NEAR(static_cast<double>(at(Stage::kHttp)), 4e6, 4e5);
  EXPECT_LT(at(Stage::kOther), 1'000'000u);
  EXPECT_EQ(l.entries[static_cast<std::size_t>(Stage::kHttp)], 1u);
  EXPECT_EQ(l.entries[static_cast<std::size_t>(Stage::kScan)], 1u);
  EXPECT_EQ(l.interrupts[static_cast<std::size_t>(Stage::kHttp)], 1u);  // by the scan
  EXPECT_EQ(l.interrupts[static_cast<std::size_t>(Stage::kOther)], 1u);
  EXPECT_EQ(l.current, Stage::kOther);
}

TEST(StageClock, CalibrationMeasuresTheScopesOwnCostAndLeavesTheLedgerReset) {
  const stage_clock::Overhead overhead = stage_clock::calibrate();
  EXPECT_GT(overhead.inside + overhead.outside, 0);
  EXPECT_LT(overhead.inside + overhead.outside, 10'000);  // cycles: a TSC read is tens
  for (const uint64_t c : stage_clock::ledger.entries) EXPECT_EQ(c, 0u);
}

}  // namespace
}  // namespace sluice::bench
