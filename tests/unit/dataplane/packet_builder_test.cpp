#include "sluice/packet_builder.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "sluice/classify.hpp"

namespace sluice {
namespace {

// A TCP segment from 198.18.0.1:40000 to 198.18.0.2:8000, optionally VLAN-tagged; its
// checksums are not needed: only its headers are used as a template.
std::vector<uint8_t> template_frame(bool vlan, bool ipv6) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  if (vlan) f.insert(f.end(), {0x81, 0x00, 0x00, 0x2a});
  if (!ipv6) {
    f.insert(f.end(),
             {0x08, 0x00, 0x45, 0, 0, 44, 0, 1, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2});
  } else {
    f.insert(f.end(), {0x86, 0xdd, 0x60, 0, 0, 0, 0, 24, 6, 64});
    const std::array<uint8_t, 16> a = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    std::array<uint8_t, 16> b = a;
    b[15] = 2;
    f.insert(f.end(), a.begin(), a.end());
    f.insert(f.end(), b.begin(), b.end());
  }
  f.insert(f.end(),
           {0x9c, 0x40, 0x1f, 0x40, 0, 0, 0, 10, 0, 0, 0, 20, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0});
  f.insert(f.end(), {'d', 'a', 't', 'a'});
  return f;
}

struct BuilderCase {
  bool vlan;
  bool ipv6;
  bool reply;
};

class PacketBuilderTest : public ::testing::TestWithParam<BuilderCase> {};

TEST_P(PacketBuilderTest, BuildsAValidRstWithTheFlowsAddressesAndTags) {
  const BuilderCase c = GetParam();
  const std::vector<uint8_t> frame = template_frame(c.vlan, c.ipv6);
  const Classification original = classify(frame);
  ASSERT_FALSE(original.malformed);
  std::array<uint8_t, kMaxRstFrame> out{};
  const std::size_t length =
      build_tcp_rst(frame, original.info, c.reply, 0x11223344, 0x55667788, out);
  ASSERT_GT(length, 0u);
  const std::span<const uint8_t> rst{out.data(), length};
  const Classification built = classify(rst);
  ASSERT_FALSE(built.malformed);
  const PacketInfo& info = built.info;
  EXPECT_TRUE(info.is_tcp());
  EXPECT_EQ(info.tcp_flags, tcp_flag::kRst | tcp_flag::kAck);
  EXPECT_EQ(info.seq, 0x11223344u);
  EXPECT_EQ(info.ack, 0x55667788u);
  EXPECT_EQ(info.payload_length, 0);
  EXPECT_EQ(info.vlan_count, c.vlan ? 1 : 0);
  EXPECT_EQ(info.src, c.reply ? original.info.dst : original.info.src);
  EXPECT_EQ(info.dst, c.reply ? original.info.src : original.info.dst);
  EXPECT_EQ(info.src_port, c.reply ? 8000 : 40000);
  EXPECT_EQ(info.dst_port, c.reply ? 40000 : 8000);
  // Destination MAC: the receiver of the original, or its sender for a reply.
  EXPECT_EQ(rst[5], c.reply ? 0x01 : 0x02);
  EXPECT_EQ(rst[11], c.reply ? 0x02 : 0x01);
  EXPECT_TRUE(ipv4_header_checksum_ok(rst, info));
  EXPECT_TRUE(l4_checksum_ok(rst, info));
  EXPECT_EQ(length, (c.vlan ? 18u : 14u) + (c.ipv6 ? 40u : 20u) + 20u);
}

INSTANTIATE_TEST_SUITE_P(
    AllShapes, PacketBuilderTest,
    ::testing::Values(BuilderCase{false, false, false}, BuilderCase{false, false, true},
                      BuilderCase{true, false, false}, BuilderCase{true, false, true},
                      BuilderCase{false, true, false}, BuilderCase{true, true, true}));

TEST(PacketBuilder, BuildsADataSegmentWithFinForADenial) {
  const std::vector<uint8_t> frame = template_frame(true, false);
  const Classification original = classify(frame);
  const std::string answer = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
  std::array<uint8_t, kMaxRstFrame + 64> out{};
  const std::size_t length = build_tcp_segment(
      frame, original.info, true, 77, 88, tcp_flag::kFin | tcp_flag::kPsh | tcp_flag::kAck,
      {reinterpret_cast<const uint8_t*>(answer.data()), answer.size()}, out);
  ASSERT_EQ(length, 18u + 20u + 20u + answer.size());
  const Classification built = classify({out.data(), length});
  ASSERT_FALSE(built.malformed);
  EXPECT_EQ(built.info.tcp_flags, tcp_flag::kFin | tcp_flag::kPsh | tcp_flag::kAck);
  EXPECT_EQ(built.info.seq, 77u);
  EXPECT_EQ(built.info.ack, 88u);
  EXPECT_EQ(built.info.payload_length, answer.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()) + built.info.payload_offset,
                        answer.size()),
            answer);
  EXPECT_TRUE(ipv4_header_checksum_ok({out.data(), length}, built.info));
  EXPECT_TRUE(l4_checksum_ok({out.data(), length}, built.info));
}

TEST(PacketBuilder, RefusesATooSmallBuffer) {
  const std::vector<uint8_t> frame = template_frame(false, false);
  const Classification c = classify(frame);
  std::array<uint8_t, 40> small{};
  EXPECT_EQ(build_tcp_rst(frame, c.info, false, 1, 2, small), 0u);
}

}  // namespace
}  // namespace sluice
