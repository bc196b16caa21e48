#include "sluice/flow_table.hpp"

#include <xxhash.h>

#include <bit>

namespace sluice {

KeyedPacket make_flow_key(const PacketInfo& info) {
  KeyedPacket keyed;
  FlowKey& key = keyed.key;
  key.protocol = info.l4_protocol;
  key.family = info.is_ipv4() ? 4 : 6;
  key.vlan_outer = info.vlan_count > 0 ? info.vlan_tci[0] & 0x0fff : 0;
  key.vlan_inner = info.vlan_count > 1 ? info.vlan_tci[1] & 0x0fff : 0;
  const bool source_first =
      info.src < info.dst || (info.src == info.dst && info.src_port <= info.dst_port);
  keyed.source_is_low = source_first;
  key.address_low = source_first ? info.src : info.dst;
  key.address_high = source_first ? info.dst : info.src;
  key.port_low = source_first ? info.src_port : info.dst_port;
  key.port_high = source_first ? info.dst_port : info.src_port;
  return keyed;
}

FlowTable::FlowTable(uint32_t capacity, uint64_t hash_seed, FlowTimeouts timeouts)
    : flows_(capacity), seed_(hash_seed), timeouts_(timeouts) {
  // Twice as many buckets as flows keeps chains short (expected length < 1 at full load).
  const uint64_t bucket_count = std::bit_ceil(uint64_t{capacity} * 2);
  buckets_.assign(bucket_count, kNoFlow);
  bucket_mask_ = bucket_count - 1;
  for (uint32_t i = capacity; i-- > 0;) {
    flows_[i].bucket_next = free_head_;
    free_head_ = i;
  }
}

uint64_t FlowTable::hash(const FlowKey& key) const {
  return XXH3_64bits_withSeed(&key, sizeof key, seed_);
}

Flow* FlowTable::find(const FlowKey& key, uint64_t hash) {
  for (uint32_t i = buckets_[hash & bucket_mask_]; i != kNoFlow; i = flows_[i].bucket_next) {
    if (flows_[i].key == key) return &flows_[i];
  }
  return nullptr;
}

Flow* FlowTable::insert(const FlowKey& key, uint64_t hash, uint64_t now_ns) {
  if (free_head_ == kNoFlow) return nullptr;
  const uint32_t index = free_head_;
  Flow& flow = flows_[index];
  free_head_ = flow.bucket_next;
  flow = Flow{};
  flow.key = key;
  flow.hash = hash;
  flow.in_use = true;
  flow.last_seen_ns = now_ns;
  uint32_t& bucket = buckets_[hash & bucket_mask_];
  flow.bucket_next = bucket;
  bucket = index;
  list_append(flow);
  ++size_;
  return &flow;
}

void FlowTable::remove(Flow& flow) {
  const uint32_t index = index_of(flow);
  uint32_t* link = &buckets_[flow.hash & bucket_mask_];
  while (*link != index) link = &flows_[*link].bucket_next;
  *link = flow.bucket_next;
  list_unlink(flow);
  flow.in_use = false;
  flow.bucket_next = free_head_;
  free_head_ = index;
  --size_;
}

void FlowTable::touch(Flow& flow, uint64_t now_ns) {
  flow.last_seen_ns = now_ns;
  if (lists_[class_of(flow.state)].tail == index_of(flow)) return;
  list_unlink(flow);
  list_append(flow);
}

void FlowTable::set_state(Flow& flow, FlowState state, uint64_t now_ns) {
  list_unlink(flow);
  flow.state = state;
  flow.last_seen_ns = now_ns;
  list_append(flow);
}

Flow* FlowTable::next_expired(uint64_t now_ns) {
  Flow* oldest = nullptr;
  for (const List& list : lists_) {
    if (list.head == kNoFlow) continue;
    Flow& head = flows_[list.head];
    // Written as a difference so that no timeout can overflow, and time that steps back (replay
    // of a capture with reordered timestamps) expires nothing.
    if (now_ns < head.last_seen_ns || now_ns - head.last_seen_ns < timeout_of(head.state)) continue;
    if (oldest == nullptr || head.last_seen_ns < oldest->last_seen_ns) oldest = &head;
  }
  return oldest;
}

Flow* FlowTable::oldest_half_open() {
  const uint32_t head = lists_[kHalfOpenClass].head;
  return head == kNoFlow ? nullptr : &flows_[head];
}

uint64_t FlowTable::timeout_of(FlowState state) const {
  switch (class_of(state)) {
    case kHalfOpenClass:
      return timeouts_.half_open_ns;
    case kEstablishedClass:
      return timeouts_.established_ns;
    default:
      return timeouts_.closing_ns;
  }
}

FlowTable::TimeoutClass FlowTable::class_of(FlowState state) {
  switch (state) {
    case FlowState::kHalfOpen:
      return kHalfOpenClass;
    case FlowState::kEstablished:
      return kEstablishedClass;
    default:
      return kClosingClass;
  }
}

void FlowTable::list_append(Flow& flow) {
  List& list = lists_[class_of(flow.state)];
  const uint32_t index = index_of(flow);
  flow.list_prev = list.tail;
  flow.list_next = kNoFlow;
  if (list.tail != kNoFlow) flows_[list.tail].list_next = index;
  list.tail = index;
  if (list.head == kNoFlow) list.head = index;
  ++list.count;
}

void FlowTable::list_unlink(Flow& flow) {
  List& list = lists_[class_of(flow.state)];
  if (flow.list_prev != kNoFlow)
    flows_[flow.list_prev].list_next = flow.list_next;
  else
    list.head = flow.list_next;
  if (flow.list_next != kNoFlow)
    flows_[flow.list_next].list_prev = flow.list_prev;
  else
    list.tail = flow.list_prev;
  flow.list_prev = flow.list_next = kNoFlow;
  --list.count;
}

}  // namespace sluice
