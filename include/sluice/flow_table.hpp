// The per-worker flow table: fixed capacity, canonical 5-tuple (+ VLAN ids) keys, a seeded hash
// so nobody outside can aim collisions at one bucket, O(1) find / insert / remove / touch, and
// idle timeouts per state kept in one least-recently-seen list per timeout class, so expiry only
// ever looks at list heads and can be done a few flows at a time inside the worker loop.
// One worker owns one table; nothing here is shared or locked.
#pragma once

#include <cstdint>
#include <vector>

#include "sluice/classify.hpp"
#include "sluice/tcp_state.hpp"

namespace sluice {

// The two endpoints in a fixed order (the smaller address/port first), so both directions of a
// flow give the same key. Trivially copyable, no padding, compared and hashed as bytes.
struct FlowKey {
  IpAddress address_low{};
  IpAddress address_high{};
  uint16_t port_low = 0;
  uint16_t port_high = 0;
  uint16_t vlan_outer = 0;  // VLAN ids (12 bits); 0 when untagged
  uint16_t vlan_inner = 0;
  uint8_t protocol = 0;
  uint8_t family = 0;  // 4 or 6
  uint8_t reserved[6] = {};

  bool operator==(const FlowKey&) const = default;
};
static_assert(sizeof(FlowKey) == 48, "FlowKey must have no padding: it is hashed as bytes");

struct KeyedPacket {
  FlowKey key;
  bool source_is_low = false;  // the packet was sent by the `low` endpoint
};

KeyedPacket make_flow_key(const PacketInfo& info);

// Which side of the bump-in-the-wire a packet came from / goes to.
enum class Side : uint8_t { kClient = 0, kServer = 1 };
constexpr Side opposite(Side side) {
  return side == Side::kClient ? Side::kServer : Side::kClient;
}

enum class FlowState : uint8_t { kHalfOpen, kEstablished, kClosing, kKilled };

struct FlowTimeouts {
  uint64_t half_open_ns = 30'000'000'000;
  uint64_t established_ns = 300'000'000'000;
  uint64_t closing_ns = 30'000'000'000;
};

inline constexpr uint32_t kNoFlow = UINT32_MAX;

struct Flow {
  FlowKey key;
  uint64_t hash = 0;  // as given to insert(); remove() finds the bucket with it
  uint64_t last_seen_ns = 0;
  uint32_t bucket_next = kNoFlow;  // chain within the hash bucket
  uint32_t list_prev = kNoFlow;    // least-recently-seen list of this flow's timeout class
  uint32_t list_next = kNoFlow;
  FlowState state = FlowState::kHalfOpen;
  bool in_use = false;
  bool client_is_low = false;  // the SYN sender's endpoint is key.address_low/port_low
  // The port the SYN arrived on: a frame's direction is the port it arrives on, and one whose
  // addresses claim the other direction is dropped (a forged ACK from the client port could
  // otherwise acknowledge bytes the server never got). Fits the padding: no extra byte.
  Side client_side = Side::kClient;
  TcpFlowState tcp;
};

class FlowTable {
 public:
  FlowTable(uint32_t capacity, uint64_t hash_seed, FlowTimeouts timeouts);

  uint64_t hash(const FlowKey& key) const;
  Flow* find(const FlowKey& key, uint64_t hash);
  // A fresh flow in state kHalfOpen, or nullptr when every slot is taken.
  Flow* insert(const FlowKey& key, uint64_t hash, uint64_t now_ns);
  void remove(Flow& flow);
  // Records activity: moves the flow to the tail of its timeout class list.
  void touch(Flow& flow, uint64_t now_ns);
  void set_state(Flow& flow, FlowState state, uint64_t now_ns);

  // The least recently seen flow whose idle timeout has passed at now_ns, or nullptr.
  Flow* next_expired(uint64_t now_ns);
  // The least recently seen half-open flow, expired or not (the eviction candidate when full).
  Flow* oldest_half_open();

  uint32_t index_of(const Flow& flow) const { return static_cast<uint32_t>(&flow - flows_.data()); }
  Flow& at(uint32_t index) { return flows_[index]; }
  uint32_t size() const { return size_; }
  // Flows still half-open or established: neither side has sent a FIN or RST yet.
  uint32_t open_flows() const {
    return lists_[kHalfOpenClass].count + lists_[kEstablishedClass].count;
  }
  uint32_t capacity() const { return static_cast<uint32_t>(flows_.size()); }
  uint64_t timeout_of(FlowState state) const;

 private:
  enum TimeoutClass : uint8_t { kHalfOpenClass, kEstablishedClass, kClosingClass, kClassCount };
  struct List {
    uint32_t head = kNoFlow;
    uint32_t tail = kNoFlow;
    uint32_t count = 0;
  };
  static TimeoutClass class_of(FlowState state);
  void list_append(Flow& flow);
  void list_unlink(Flow& flow);

  std::vector<Flow> flows_;
  std::vector<uint32_t> buckets_;
  uint64_t bucket_mask_ = 0;
  uint32_t free_head_ = kNoFlow;  // free slots chained through bucket_next
  uint32_t size_ = 0;
  uint64_t seed_;
  FlowTimeouts timeouts_;
  List lists_[kClassCount];
};

}  // namespace sluice
