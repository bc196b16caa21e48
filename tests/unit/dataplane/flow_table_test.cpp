// Specification of flow keys and the per-worker flow table: canonical keys, fixed capacity,
// seeded hashing, and idle expiry per state in least-recently-seen order. Time is simulated
// (nanosecond counts passed in); nothing sleeps.
#include "sluice/flow_table.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace sluice {
namespace {

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;

constexpr IpAddress kClientV4 = {192, 0, 2, 1};
constexpr IpAddress kServerV4 = {198, 51, 100, 2};
constexpr IpAddress kClientV6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
constexpr IpAddress kServerV6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};

// Timeouts small enough to reason about by hand, in simulated nanoseconds.
constexpr FlowTimeouts kTimeouts{.half_open_ns = 10, .established_ns = 100, .closing_ns = 5};
constexpr uint64_t kSeed = 0x5eed5eed5eed5eedULL;

PacketInfo packet(const IpAddress& src, uint16_t src_port, const IpAddress& dst, uint16_t dst_port,
                  L3 l3 = L3::kIpv4, uint8_t protocol = kProtoTcp) {
  PacketInfo info;
  info.l3 = l3;
  info.l4 = protocol == kProtoTcp ? L4::kTcp : L4::kUdp;
  info.l4_protocol = protocol;
  info.src = src;
  info.dst = dst;
  info.src_port = src_port;
  info.dst_port = dst_port;
  return info;
}

PacketInfo reversed(PacketInfo info) {
  std::swap(info.src, info.dst);
  std::swap(info.src_port, info.dst_port);
  return info;
}

PacketInfo tagged(PacketInfo info, std::vector<uint16_t> tcis) {
  info.vlan_count = static_cast<uint8_t>(tcis.size());
  for (std::size_t i = 0; i < tcis.size(); ++i) {
    info.vlan_tpid[i] = i + 1 < tcis.size() ? 0x88a8 : 0x8100;
    info.vlan_tci[i] = tcis[i];
  }
  return info;
}

// A distinct IPv4 TCP key for every n.
FlowKey key_number(uint32_t n) {
  const IpAddress client = {10, static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8),
                            static_cast<uint8_t>(n)};
  return make_flow_key(packet(client, static_cast<uint16_t>(1024 + n % 50000), kServerV4, 443)).key;
}

bool same_bytes(const FlowKey& a, const FlowKey& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// ---- keys ------------------------------------------------------------------------------------

TEST(FlowKey, BothDirectionsGiveTheSameKeyAndHash) {
  struct Case {
    std::string name;
    PacketInfo info;
  };
  const std::vector<Case> cases = {
      {"ipv4 tcp", packet(kClientV4, 49152, kServerV4, 443)},
      {"ipv4 udp", packet(kClientV4, 5353, kServerV4, 53, L3::kIpv4, kProtoUdp)},
      {"ipv4, higher address first", packet(kServerV4, 443, kClientV4, 49152)},
      {"ipv6 tcp", packet(kClientV6, 49152, kServerV6, 443, L3::kIpv6)},
      {"same address, different ports", packet(kClientV4, 80, kClientV4, 8080)},
      {"same address, same port", packet(kClientV4, 80, kClientV4, 80)},
      {"802.1Q", tagged(packet(kClientV4, 49152, kServerV4, 443), {0x0064})},
      {"QinQ", tagged(packet(kClientV6, 49152, kServerV6, 443, L3::kIpv6), {0x02c8, 0xa064})},
  };
  const FlowTable table(4, kSeed, kTimeouts);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const KeyedPacket forward = make_flow_key(c.info);
    const KeyedPacket backward = make_flow_key(reversed(c.info));
    EXPECT_TRUE(forward.key == backward.key);
    EXPECT_TRUE(same_bytes(forward.key, backward.key));
    EXPECT_EQ(table.hash(forward.key), table.hash(backward.key));
  }
}

TEST(FlowKey, SourceIsLowTellsWhichEndpointSent) {
  const PacketInfo from_client = packet(kClientV4, 49152, kServerV4, 443);  // 192.… < 198.…
  const KeyedPacket forward = make_flow_key(from_client);
  const KeyedPacket backward = make_flow_key(reversed(from_client));
  EXPECT_TRUE(forward.source_is_low);
  EXPECT_FALSE(backward.source_is_low);
  EXPECT_EQ(forward.key.address_low, kClientV4);
  EXPECT_EQ(forward.key.port_low, 49152);
  EXPECT_EQ(forward.key.address_high, kServerV4);
  EXPECT_EQ(forward.key.port_high, 443);
  EXPECT_EQ(forward.key.family, 4);
  EXPECT_EQ(forward.key.protocol, kProtoTcp);
}

TEST(FlowKey, SameAddressesAreOrderedByPort) {
  const KeyedPacket forward = make_flow_key(packet(kClientV4, 8080, kClientV4, 80));
  const KeyedPacket backward = make_flow_key(packet(kClientV4, 80, kClientV4, 8080));
  EXPECT_FALSE(forward.source_is_low);
  EXPECT_TRUE(backward.source_is_low);
  EXPECT_EQ(forward.key.port_low, 80);
  EXPECT_EQ(forward.key.port_high, 8080);
}

TEST(FlowKey, DifferentVlanIdsGiveDifferentKeys) {
  const PacketInfo base = packet(kClientV4, 49152, kServerV4, 443);
  const std::vector<PacketInfo> variants = {
      base,
      tagged(base, {100}),
      tagged(base, {101}),
      tagged(base, {100, 200}),
      tagged(base, {100, 201}),
      tagged(base, {200, 100}),
  };
  for (std::size_t i = 0; i < variants.size(); ++i) {
    for (std::size_t j = i + 1; j < variants.size(); ++j) {
      EXPECT_FALSE(make_flow_key(variants[i]).key == make_flow_key(variants[j]).key)
          << "variants " << i << " and " << j;
    }
  }
}

TEST(FlowKey, VlanPriorityAndDropEligibleBitsAreNotPartOfTheKey) {
  const PacketInfo base = packet(kClientV4, 49152, kServerV4, 443);
  const FlowKey plain = make_flow_key(tagged(base, {0x0064, 0x00c8})).key;
  const FlowKey marked = make_flow_key(tagged(base, {0xb064, 0xf0c8})).key;  // PCP, DEI set
  EXPECT_TRUE(plain == marked);
  EXPECT_EQ(plain.vlan_outer, 0x064);
  EXPECT_EQ(plain.vlan_inner, 0x0c8);
}

TEST(FlowKey, Ipv4AndIpv6WithTheSameLeadingBytesGiveDifferentKeys) {
  // IPv4 addresses are stored in the first 4 bytes of an IpAddress, the rest zero.
  IpAddress v6_client{};
  IpAddress v6_server{};
  std::memcpy(v6_client.data(), kClientV4.data(), 4);
  std::memcpy(v6_server.data(), kServerV4.data(), 4);
  const FlowKey v4 = make_flow_key(packet(kClientV4, 49152, kServerV4, 443)).key;
  const FlowKey v6 = make_flow_key(packet(v6_client, 49152, v6_server, 443, L3::kIpv6)).key;
  EXPECT_FALSE(v4 == v6);
  EXPECT_EQ(v4.family, 4);
  EXPECT_EQ(v6.family, 6);
}

TEST(FlowKey, DifferentProtocolsOrPortsGiveDifferentKeys) {
  const FlowKey tcp = make_flow_key(packet(kClientV4, 49152, kServerV4, 443)).key;
  const FlowKey udp =
      make_flow_key(packet(kClientV4, 49152, kServerV4, 443, L3::kIpv4, kProtoUdp)).key;
  const FlowKey other_port = make_flow_key(packet(kClientV4, 49153, kServerV4, 443)).key;
  EXPECT_FALSE(tcp == udp);
  EXPECT_FALSE(tcp == other_port);
}

TEST(FlowKey, ReservedBytesAreZeroSoEqualKeysHashEqually) {
  const FlowKey key = make_flow_key(tagged(packet(kClientV6, 1, kServerV6, 2, L3::kIpv6), {7})).key;
  for (uint8_t byte : key.reserved) EXPECT_EQ(byte, 0);
}

// ---- table: insert, find, remove -------------------------------------------------------------

TEST(FlowTable, FindsAnInsertedFlowAsAFreshHalfOpenFlow) {
  FlowTable table(8, kSeed, kTimeouts);
  const FlowKey key = key_number(1);
  Flow* inserted = table.insert(key, table.hash(key), 42);
  ASSERT_NE(inserted, nullptr);
  EXPECT_TRUE(inserted->in_use);
  EXPECT_TRUE(inserted->key == key);
  EXPECT_EQ(inserted->state, FlowState::kHalfOpen);
  EXPECT_EQ(inserted->last_seen_ns, 42u);
  EXPECT_EQ(table.find(key, table.hash(key)), inserted);
  EXPECT_EQ(&table.at(table.index_of(*inserted)), inserted);
  EXPECT_EQ(table.find(key_number(2), table.hash(key_number(2))), nullptr);
}

TEST(FlowTable, ReusedSlotStartsFresh) {
  FlowTable table(1, kSeed, kTimeouts);
  const FlowKey first = key_number(1);
  Flow* flow = table.insert(first, table.hash(first), 0);
  ASSERT_NE(flow, nullptr);
  table.set_state(*flow, FlowState::kEstablished, 1);
  flow->client_is_low = true;
  flow->tcp.of(Direction::kToServer).initialized = true;
  table.remove(*flow);
  const FlowKey second = key_number(2);
  Flow* reused = table.insert(second, table.hash(second), 2);
  ASSERT_EQ(reused, flow);
  EXPECT_EQ(reused->state, FlowState::kHalfOpen);
  EXPECT_FALSE(reused->client_is_low);
  EXPECT_FALSE(reused->tcp.of(Direction::kToServer).initialized);
  EXPECT_EQ(table.find(first, table.hash(first)), nullptr);
}

TEST(FlowTable, OpenFlowsCountsHalfOpenAndEstablishedButNotClosing) {
  FlowTable table(8, kSeed, kTimeouts);
  Flow* a = table.insert(key_number(1), table.hash(key_number(1)), 0);
  Flow* b = table.insert(key_number(2), table.hash(key_number(2)), 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(table.open_flows(), 2u);
  table.set_state(*a, FlowState::kEstablished, 1);
  table.touch(*a, 2);
  EXPECT_EQ(table.open_flows(), 2u);
  table.set_state(*a, FlowState::kClosing, 3);
  EXPECT_EQ(table.open_flows(), 1u);
  EXPECT_EQ(table.size(), 2u);
  table.set_state(*b, FlowState::kKilled, 4);
  EXPECT_EQ(table.open_flows(), 0u);
  table.remove(*a);
  table.remove(*b);
  EXPECT_EQ(table.open_flows(), 0u);
  EXPECT_EQ(table.size(), 0u);
}

TEST(FlowTable, InsertFailsWhenFullAndRemoveFreesASlot) {
  constexpr uint32_t kCapacity = 16;
  FlowTable table(kCapacity, kSeed, kTimeouts);
  EXPECT_EQ(table.capacity(), kCapacity);
  std::vector<Flow*> flows;
  for (uint32_t n = 0; n < kCapacity; ++n) {
    const FlowKey key = key_number(n);
    Flow* flow = table.insert(key, table.hash(key), n);
    ASSERT_NE(flow, nullptr) << n;
    flows.push_back(flow);
    EXPECT_EQ(table.size(), n + 1);
  }
  const FlowKey extra = key_number(kCapacity);
  EXPECT_EQ(table.insert(extra, table.hash(extra), 100), nullptr);
  EXPECT_EQ(table.size(), kCapacity);

  const FlowKey removed = flows[5]->key;
  table.remove(*flows[5]);
  EXPECT_EQ(table.size(), kCapacity - 1);
  EXPECT_EQ(table.find(removed, table.hash(removed)), nullptr);
  for (uint32_t n = 0; n < kCapacity; ++n) {
    if (n == 5) continue;
    EXPECT_NE(table.find(key_number(n), table.hash(key_number(n))), nullptr) << n;
  }

  Flow* flow = table.insert(extra, table.hash(extra), 101);
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(table.size(), kCapacity);
  EXPECT_EQ(table.find(extra, table.hash(extra)), flow);
  EXPECT_EQ(table.insert(removed, table.hash(removed), 102), nullptr);

  table.remove(*flow);
  Flow* again = table.insert(removed, table.hash(removed), 103);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(table.find(removed, table.hash(removed)), again);
  EXPECT_EQ(table.find(extra, table.hash(extra)), nullptr);
}

TEST(FlowTable, ZeroCapacityTableRefusesEveryInsert) {
  FlowTable table(0, kSeed, kTimeouts);
  const FlowKey key = key_number(1);
  EXPECT_EQ(table.insert(key, table.hash(key), 0), nullptr);
  EXPECT_EQ(table.find(key, table.hash(key)), nullptr);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.next_expired(1'000), nullptr);
  EXPECT_EQ(table.oldest_half_open(), nullptr);
}

TEST(FlowTable, FlowsSharingOneBucketAreAllFoundAndRemovable) {
  // Keys whose hashes agree in their low 16 bits share a bucket in any table of up to 2^16
  // buckets; with capacity 12 every one of them lands in the same chain.
  constexpr uint32_t kCapacity = 12;
  FlowTable table(kCapacity, kSeed, kTimeouts);
  std::vector<FlowKey> keys;
  const uint64_t bucket_bits = table.hash(key_number(0)) & 0xffff;
  for (uint32_t n = 0; keys.size() < kCapacity; ++n) {
    ASSERT_LT(n, 1u << 24) << "no colliding keys found";
    const FlowKey key = key_number(n);
    if ((table.hash(key) & 0xffff) == bucket_bits) keys.push_back(key);
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ASSERT_NE(table.insert(keys[i], table.hash(keys[i]), i), nullptr);
  }
  for (const FlowKey& key : keys) ASSERT_NE(table.find(key, table.hash(key)), nullptr);
  // Remove from the chain's middle, head and tail, checking the rest after each.
  std::vector<bool> present(keys.size(), true);
  for (std::size_t victim : {5, 11, 0, 6, 1}) {
    table.remove(*table.find(keys[victim], table.hash(keys[victim])));
    present[victim] = false;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      Flow* flow = table.find(keys[i], table.hash(keys[i]));
      EXPECT_EQ(flow != nullptr, present[i]) << "key " << i << " after removing " << victim;
      if (flow != nullptr) {
        EXPECT_TRUE(flow->key == keys[i]);
      }
    }
  }
  EXPECT_EQ(table.size(), kCapacity - 5);
}

TEST(FlowTable, DifferentSeedsHashTheSameKeyDifferently) {
  const FlowTable one(4, 1, kTimeouts);
  const FlowTable same(4, 1, kTimeouts);
  const FlowTable two(4, 2, kTimeouts);
  for (uint32_t n = 0; n < 100; ++n) {
    const FlowKey key = key_number(n);
    EXPECT_EQ(one.hash(key), same.hash(key));
    EXPECT_NE(one.hash(key), two.hash(key));
  }
}

// ---- expiry ----------------------------------------------------------------------------------

struct Clocked {
  FlowTable table{16, kSeed, kTimeouts};

  Flow& add(uint32_t n, uint64_t now_ns) {
    const FlowKey key = key_number(n);
    Flow* flow = table.insert(key, table.hash(key), now_ns);
    EXPECT_NE(flow, nullptr);
    return *flow;
  }
  // The key number of the next expired flow, removed; nullopt when none has expired.
  std::optional<uint32_t> pop_expired(uint64_t now_ns) {
    Flow* flow = table.next_expired(now_ns);
    if (flow == nullptr) return std::nullopt;
    const uint32_t n = number_of(*flow);
    table.remove(*flow);
    return n;
  }
  static uint32_t number_of(const Flow& flow) {
    const IpAddress& a = flow.key.address_low;
    return uint32_t{a[1]} << 16 | uint32_t{a[2]} << 8 | a[3];
  }
};

TEST(FlowExpiry, TimeoutsAreConfiguredPerState) {
  const FlowTable table(1, kSeed, kTimeouts);
  EXPECT_EQ(table.timeout_of(FlowState::kHalfOpen), 10u);
  EXPECT_EQ(table.timeout_of(FlowState::kEstablished), 100u);
  EXPECT_EQ(table.timeout_of(FlowState::kClosing), 5u);
  EXPECT_EQ(table.timeout_of(FlowState::kKilled), 5u);
}

TEST(FlowExpiry, AFlowExpiresExactlyWhenItsIdleTimeoutHasPassed) {
  Clocked clocked;
  clocked.add(1, 100);
  EXPECT_EQ(clocked.table.next_expired(109), nullptr);
  EXPECT_EQ(clocked.pop_expired(110), 1u);
  EXPECT_EQ(clocked.table.size(), 0u);
}

TEST(FlowExpiry, ExpiredFlowsComeOutLeastRecentlySeenFirst) {
  Clocked clocked;
  clocked.add(3, 0);
  clocked.add(1, 1);
  clocked.add(2, 2);
  EXPECT_EQ(clocked.pop_expired(50), 3u);
  EXPECT_EQ(clocked.pop_expired(50), 1u);
  EXPECT_EQ(clocked.pop_expired(50), 2u);
  EXPECT_EQ(clocked.pop_expired(50), std::nullopt);
}

TEST(FlowExpiry, NextExpiredDoesNotRemoveTheFlow) {
  Clocked clocked;
  Flow& flow = clocked.add(1, 0);
  EXPECT_EQ(clocked.table.next_expired(10), &flow);
  EXPECT_EQ(clocked.table.next_expired(10), &flow);
  EXPECT_EQ(clocked.table.size(), 1u);
}

TEST(FlowExpiry, TouchPostponesExpiry) {
  Clocked clocked;
  Flow& first = clocked.add(1, 0);
  clocked.add(2, 1);
  clocked.table.touch(first, 5);
  EXPECT_EQ(first.last_seen_ns, 5u);
  EXPECT_EQ(clocked.pop_expired(11), 2u);  // seen at 1
  EXPECT_EQ(clocked.pop_expired(14), std::nullopt);
  EXPECT_EQ(clocked.pop_expired(15), 1u);  // seen at 5
}

TEST(FlowExpiry, TouchingTheMostRecentFlowStillUpdatesItsTime) {
  Clocked clocked;
  clocked.add(1, 0);
  Flow& last = clocked.add(2, 1);
  clocked.table.touch(last, 8);
  EXPECT_EQ(clocked.pop_expired(17), 1u);
  EXPECT_EQ(clocked.pop_expired(17), std::nullopt);
  EXPECT_EQ(clocked.pop_expired(18), 2u);
}

TEST(FlowExpiry, EachStateExpiresAfterItsOwnTimeout) {
  Clocked clocked;
  clocked.add(1, 0);                                                       // half-open: 10
  clocked.table.set_state(clocked.add(2, 0), FlowState::kEstablished, 0);  // 100
  clocked.table.set_state(clocked.add(3, 0), FlowState::kClosing, 0);      // 5
  clocked.table.set_state(clocked.add(4, 0), FlowState::kKilled, 0);       // 5, as closing
  EXPECT_EQ(clocked.pop_expired(4), std::nullopt);
  EXPECT_EQ(clocked.pop_expired(5), 3u);
  EXPECT_EQ(clocked.pop_expired(5), 4u);
  EXPECT_EQ(clocked.pop_expired(9), std::nullopt);
  EXPECT_EQ(clocked.pop_expired(10), 1u);
  EXPECT_EQ(clocked.pop_expired(99), std::nullopt);
  EXPECT_EQ(clocked.pop_expired(100), 2u);
  EXPECT_EQ(clocked.table.size(), 0u);
}

TEST(FlowExpiry, SetStateMovesTheFlowToItsNewTimeoutAndRestartsItsIdleTime) {
  Clocked clocked;
  Flow& flow = clocked.add(1, 0);
  clocked.table.set_state(flow, FlowState::kEstablished, 8);
  EXPECT_EQ(flow.state, FlowState::kEstablished);
  EXPECT_EQ(flow.last_seen_ns, 8u);
  EXPECT_EQ(clocked.table.oldest_half_open(), nullptr);
  EXPECT_EQ(clocked.pop_expired(107), std::nullopt);
  clocked.table.set_state(flow, FlowState::kClosing, 107);
  EXPECT_EQ(clocked.pop_expired(111), std::nullopt);
  EXPECT_EQ(clocked.pop_expired(112), 1u);
}

TEST(FlowExpiry, AcrossStatesTheLeastRecentlySeenExpiredFlowComesFirst) {
  Clocked clocked;
  clocked.add(1, 0);                                                       // expires at 10
  clocked.table.set_state(clocked.add(2, 3), FlowState::kClosing, 3);      // expires at 8
  clocked.table.set_state(clocked.add(3, 1), FlowState::kEstablished, 1);  // expires at 101
  EXPECT_EQ(clocked.pop_expired(8), 2u);                               // the only one expired at 8
  clocked.table.set_state(clocked.add(4, 4), FlowState::kClosing, 4);  // expires at 9
  EXPECT_EQ(clocked.pop_expired(200), 1u);                             // seen at 0
  EXPECT_EQ(clocked.pop_expired(200), 3u);                             // seen at 1
  EXPECT_EQ(clocked.pop_expired(200), 4u);                             // seen at 4
}

TEST(FlowExpiry, OldestHalfOpenIsTheLeastRecentlySeenHalfOpenFlowOnly) {
  Clocked clocked;
  EXPECT_EQ(clocked.table.oldest_half_open(), nullptr);
  clocked.table.set_state(clocked.add(1, 0), FlowState::kEstablished, 0);
  clocked.table.set_state(clocked.add(2, 0), FlowState::kClosing, 0);
  EXPECT_EQ(clocked.table.oldest_half_open(), nullptr);
  Flow& third = clocked.add(3, 1);
  Flow& fourth = clocked.add(4, 2);
  EXPECT_EQ(clocked.table.oldest_half_open(), &third);
  clocked.table.touch(third, 3);
  EXPECT_EQ(clocked.table.oldest_half_open(), &fourth);
  clocked.table.remove(fourth);
  EXPECT_EQ(clocked.table.oldest_half_open(), &third);
  clocked.table.set_state(third, FlowState::kEstablished, 4);
  EXPECT_EQ(clocked.table.oldest_half_open(), nullptr);
}

// ---- randomized differential test ------------------------------------------------------------

struct KeyLess {
  bool operator()(const FlowKey& a, const FlowKey& b) const {
    return std::memcmp(&a, &b, sizeof a) < 0;
  }
};

struct ModelFlow {
  uint64_t last_seen_ns = 0;
  FlowState state = FlowState::kHalfOpen;
};

using Model = std::map<FlowKey, ModelFlow, KeyLess>;

// Long enough, against about 2 ns per operation, that the table is often full.
constexpr FlowTimeouts kRandomTimeouts{
    .half_open_ns = 1'000, .established_ns = 10'000, .closing_ns = 300};

uint64_t model_timeout(FlowState state) {
  switch (state) {
    case FlowState::kHalfOpen:
      return kRandomTimeouts.half_open_ns;
    case FlowState::kEstablished:
      return kRandomTimeouts.established_ns;
    default:
      return kRandomTimeouts.closing_ns;
  }
}

// Time only moves forward, so every last_seen_ns is distinct and "least recently seen" is exact.
std::optional<FlowKey> model_next_expired(const Model& model, uint64_t now_ns) {
  std::optional<FlowKey> oldest;
  uint64_t oldest_seen = 0;
  for (const auto& [key, flow] : model) {
    if (flow.last_seen_ns + model_timeout(flow.state) > now_ns) continue;
    if (!oldest || flow.last_seen_ns < oldest_seen) {
      oldest = key;
      oldest_seen = flow.last_seen_ns;
    }
  }
  return oldest;
}

std::optional<FlowKey> model_oldest_half_open(const Model& model) {
  std::optional<FlowKey> oldest;
  uint64_t oldest_seen = 0;
  for (const auto& [key, flow] : model) {
    if (flow.state != FlowState::kHalfOpen) continue;
    if (!oldest || flow.last_seen_ns < oldest_seen) {
      oldest = key;
      oldest_seen = flow.last_seen_ns;
    }
  }
  return oldest;
}

TEST(FlowTable, AgreesWithAMapModelOverRandomOperations) {
  constexpr uint32_t kCapacity = 64;
  constexpr uint32_t kKeys = 3 * kCapacity;  // the table is often full
  constexpr int kOperations = 100'000;
  FlowTable table(kCapacity, kSeed, kRandomTimeouts);
  Model model;
  std::mt19937_64 random(20240601);
  std::vector<FlowKey> keys;
  for (uint32_t n = 0; n < kKeys; ++n) keys.push_back(key_number(n));
  uint64_t now = 0;
  int inserts_refused = 0;
  int expired = 0;

  for (int op = 0; op < kOperations; ++op) {
    now += 1 + random() % 3;
    const FlowKey& key = keys[random() % kKeys];
    const uint64_t hash = table.hash(key);
    Flow* flow = table.find(key, hash);
    const auto modelled = model.find(key);
    ASSERT_EQ(flow != nullptr, modelled != model.end()) << "operation " << op;
    if (flow != nullptr) {
      ASSERT_TRUE(flow->key == key);
      ASSERT_TRUE(flow->in_use);
      ASSERT_EQ(flow->state, modelled->second.state) << "operation " << op;
      ASSERT_EQ(flow->last_seen_ns, modelled->second.last_seen_ns) << "operation " << op;
    }
    const uint64_t choice = random() % 100;
    if (choice < 40) {  // insert, as the worker does: only when find missed
      if (flow == nullptr) {
        Flow* inserted = table.insert(key, hash, now);
        if (model.size() < kCapacity) {
          ASSERT_NE(inserted, nullptr) << "operation " << op;
          model[key] = ModelFlow{now, FlowState::kHalfOpen};
        } else {
          ASSERT_EQ(inserted, nullptr) << "operation " << op;
          ++inserts_refused;
        }
      }
    } else if (choice < 50) {  // remove
      if (flow != nullptr) {
        table.remove(*flow);
        model.erase(modelled);
      }
    } else if (choice < 72) {  // touch
      if (flow != nullptr) {
        table.touch(*flow, now);
        modelled->second.last_seen_ns = now;
      }
    } else if (choice < 85) {  // change state
      if (flow != nullptr) {
        const auto state = static_cast<FlowState>(random() % 4);
        table.set_state(*flow, state, now);
        modelled->second = ModelFlow{now, state};
      }
    } else if (choice < 95) {  // expire a few, as the housekeeping slice does
      for (int i = 0; i < 4; ++i) {
        Flow* oldest = table.next_expired(now);
        const std::optional<FlowKey> expected = model_next_expired(model, now);
        ASSERT_EQ(oldest != nullptr, expected.has_value()) << "operation " << op;
        if (oldest == nullptr) break;
        ASSERT_TRUE(oldest->key == *expected) << "operation " << op;
        model.erase(oldest->key);
        table.remove(*oldest);
        ++expired;
      }
    } else {  // the eviction candidate
      Flow* oldest = table.oldest_half_open();
      const std::optional<FlowKey> expected = model_oldest_half_open(model);
      ASSERT_EQ(oldest != nullptr, expected.has_value()) << "operation " << op;
      if (oldest != nullptr) {
        ASSERT_TRUE(oldest->key == *expected) << "operation " << op;
      }
    }
    ASSERT_EQ(table.size(), model.size()) << "operation " << op;
  }
  // The run exercised what it meant to: a full table and expiry.
  EXPECT_GT(inserts_refused, 100);
  EXPECT_GT(expired, 100);
}

}  // namespace
}  // namespace sluice
