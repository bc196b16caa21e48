#include "sluice/content_decoder.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>
#include <string>
#include <vector>

namespace sluice {
namespace {

// Compresses with zlib itself (the reference implementation): windowBits 15+16 = gzip,
// 15 = zlib (HTTP "deflate"), -15 = raw deflate.
std::string compress(const std::string& input, int window_bits) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&z, input.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  z.avail_in = static_cast<uInt>(input.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

class Collect final : public DecodedSink {
 public:
  void on_decoded(std::span<const uint8_t> bytes) override {
    text.append(bytes.begin(), bytes.end());
  }
  std::string text;
};

struct Outcome {
  RequestReason feed = RequestReason::ok;
  RequestReason finish = RequestReason::ok;
  std::string text;
};

Outcome decode(ContentEncoding encoding, const std::vector<std::string_view>& pieces,
               DecodeLimits limits = {}) {
  ContentDecoder decoder(limits);
  Collect sink;
  decoder.begin(encoding);
  Outcome outcome;
  for (std::string_view piece : pieces) {
    outcome.feed =
        decoder.feed({reinterpret_cast<const uint8_t*>(piece.data()), piece.size()}, sink);
    if (outcome.feed != RequestReason::ok) break;
  }
  outcome.finish = decoder.finish();
  outcome.text = sink.text;
  return outcome;
}

std::string prompt_text() {
  std::string text = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"";
  std::mt19937 random(3);
  for (int i = 0; i < 3000; ++i) text += static_cast<char>('a' + random() % 26);
  return text + "\"}]}";
}

TEST(ContentDecoder, InflatesGzipAndDeflateSplitAtEveryByte) {
  const std::string original = prompt_text();
  for (const auto& [encoding, bits] :
       {std::pair{ContentEncoding::kGzip, 15 + 16}, std::pair{ContentEncoding::kDeflate, 15}}) {
    const std::string packed = compress(original, bits);
    const Outcome whole = decode(encoding, {packed});
    ASSERT_EQ(whole.feed, RequestReason::ok);
    ASSERT_EQ(whole.finish, RequestReason::ok);
    ASSERT_EQ(whole.text, original);
    const std::string_view view = packed;
    for (std::size_t cut = 1; cut < packed.size(); ++cut) {
      const Outcome split = decode(encoding, {view.substr(0, cut), view.substr(cut)});
      ASSERT_EQ(split.text, original) << "cut " << cut;
      ASSERT_EQ(split.finish, RequestReason::ok);
    }
    std::vector<std::string_view> single;
    for (std::size_t i = 0; i < packed.size(); ++i) single.push_back(view.substr(i, 1));
    EXPECT_EQ(decode(encoding, single).text, original);
  }
}

TEST(ContentDecoder, PassesIdentityThrough) {
  const Outcome outcome = decode(ContentEncoding::kIdentity, {"ab", "c"});
  EXPECT_EQ(outcome.text, "abc");
  EXPECT_EQ(outcome.finish, RequestReason::ok);
}

TEST(ContentDecoder, FailsClosedOnADecompressionBomb) {
  const std::string zeros(8 << 20, '\0');
  const std::string packed = compress(zeros, 15 + 16);  // ≈ 8 KB: a ratio near 1000
  const Outcome outcome = decode(ContentEncoding::kGzip, {packed});
  EXPECT_EQ(outcome.feed, RequestReason::content_decompression_bomb);
  // Stopped at the ratio (100 per byte received), not after inflating all 8 MiB.
  EXPECT_LE(outcome.text.size(), packed.size() * 100);
}

TEST(ContentDecoder, RefusesOutputOverTheSizeLimit) {
  DecodeLimits limits;
  limits.max_output_bytes = 1000;
  limits.max_ratio = 1'000'000;
  const Outcome outcome =
      decode(ContentEncoding::kGzip, {compress(prompt_text(), 15 + 16)}, limits);
  EXPECT_EQ(outcome.feed, RequestReason::content_decompression_bomb);
}

TEST(ContentDecoder, AllowsSmallBodiesToExpandWithinTheGrace) {
  const std::string spaces(60000, ' ');
  const Outcome outcome = decode(ContentEncoding::kGzip, {compress(spaces, 15 + 16)});
  EXPECT_EQ(outcome.feed, RequestReason::ok);
  EXPECT_EQ(outcome.text, spaces);
}

TEST(ContentDecoder, RefusesATruncatedStream) {
  const std::string packed = compress(prompt_text(), 15 + 16);
  const Outcome outcome =
      decode(ContentEncoding::kGzip, {std::string_view(packed).substr(0, packed.size() - 4)});
  EXPECT_EQ(outcome.feed, RequestReason::ok);
  EXPECT_EQ(outcome.finish, RequestReason::content_bad_compressed_data);
}

TEST(ContentDecoder, RefusesBytesAfterTheStream) {
  const std::string packed = compress("hello", 15 + 16);
  EXPECT_EQ(decode(ContentEncoding::kGzip, {packed + "X"}).feed,
            RequestReason::content_bad_compressed_data);
  EXPECT_EQ(decode(ContentEncoding::kGzip, {packed, packed}).feed,
            RequestReason::content_bad_compressed_data);
}

TEST(ContentDecoder, RefusesCorruptAndMislabelledData) {
  std::string packed = compress(prompt_text(), 15 + 16);
  packed[packed.size() / 2] ^= 0x55;
  EXPECT_NE(decode(ContentEncoding::kGzip, {packed}).finish, RequestReason::ok);
  EXPECT_EQ(decode(ContentEncoding::kGzip, {"not gzip at all"}).feed,
            RequestReason::content_bad_compressed_data);
  // HTTP "deflate" is the zlib format; raw deflate is refused rather than guessed.
  EXPECT_NE(decode(ContentEncoding::kDeflate, {compress("hello", -15)}).finish, RequestReason::ok);
}

}  // namespace
}  // namespace sluice
