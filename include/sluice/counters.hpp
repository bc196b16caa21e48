// Every counter Sluice keeps, declared once. The list generates the enum and the names, so a
// counter can never be counted without also being reported.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace sluice {

// X(name, kind): kind is Traffic (a tally of work done) or Drop (a packet that did not leave).
#define SLUICE_COUNTERS(X)                          \
  /* traffic */                                     \
  X(rx_client_packets, Traffic)                     \
  X(rx_client_bytes, Traffic)                       \
  X(rx_server_packets, Traffic)                     \
  X(rx_server_bytes, Traffic)                       \
  X(tx_client_packets, Traffic)                     \
  X(tx_client_bytes, Traffic)                       \
  X(tx_server_packets, Traffic)                     \
  X(tx_server_bytes, Traffic)                       \
  X(other_traffic_passed, Traffic)                  \
  X(midstream_passed, Traffic)                      \
  X(fragments_passed, Traffic)                      \
  X(bad_checksum_passed, Traffic)                   \
  X(flows_created, Traffic)                         \
  X(flows_expired, Traffic)                         \
  X(flows_evicted, Traffic)                         \
  X(flow_table_full_passed, Traffic)                \
  X(tcp_payload_bytes_delivered, Traffic)           \
  X(tcp_identical_retransmissions, Traffic)         \
  X(tcp_unverified_retransmissions_passed, Traffic) \
  X(tcp_out_of_order_held, Traffic)                 \
  X(tcp_bytes_not_retained, Traffic)                \
  X(tcp_flows_killed, Traffic)                      \
  X(rst_sent, Traffic)                              \
  X(denials_sent, Traffic)                          \
  X(redistributed_packets, Traffic)                 \
  X(syns_refused_draining, Traffic)                 \
  X(tcp_urgent_cleared, Traffic)                    \
  X(tcp_killed_flow_answered, Traffic)              \
  X(tcp_killed_flow_absorbed, Traffic)              \
  /* drops: malformed frames, by reason */          \
  X(drop_truncated_ethernet, Drop)                  \
  X(drop_too_many_vlan_tags, Drop)                  \
  X(drop_truncated_vlan, Drop)                      \
  X(drop_truncated_arp, Drop)                       \
  X(drop_truncated_ipv4, Drop)                      \
  X(drop_bad_ipv4_header, Drop)                     \
  X(drop_bad_ipv4_length, Drop)                     \
  X(drop_truncated_ipv6, Drop)                      \
  X(drop_bad_ipv6_header, Drop)                     \
  X(drop_bad_ipv6_extension, Drop)                  \
  X(drop_truncated_tcp, Drop)                       \
  X(drop_bad_tcp_header, Drop)                      \
  X(drop_truncated_udp, Drop)                       \
  X(drop_truncated_icmp, Drop)                      \
  X(drop_bad_ipv4_checksum, Drop)                   \
  X(drop_bad_l4_checksum, Drop)                     \
  /* drops: policy */                               \
  X(drop_other_traffic, Drop)                       \
  X(drop_fragment, Drop)                            \
  X(drop_midstream, Drop)                           \
  X(drop_flow_table_full, Drop)                     \
  /* drops: TCP tracking */                         \
  X(drop_tcp_out_of_order_overflow, Drop)           \
  X(drop_tcp_out_of_window, Drop)                   \
  X(drop_tcp_unexpected, Drop)                      \
  X(drop_tcp_conflicting_retransmission, Drop)      \
  X(drop_tcp_unverifiable_retransmission, Drop)     \
  X(drop_tcp_killed_flow, Drop)                     \
  X(drop_request_refused, Drop)                     \
  X(drop_tcp_unacceptable_syn, Drop)                \
  X(drop_tcp_rst_not_exact, Drop)                   \
  X(drop_tcp_after_rst, Drop)                       \
  X(drop_tcp_beyond_fin, Drop)                      \
  X(drop_tcp_wrong_side, Drop)                      \
  X(drop_tcp_urgent, Drop)                          \
  X(drop_tcp_signature_option, Drop)                \
  X(drop_tcp_paws, Drop)                            \
  X(drop_tcp_data_before_handshake, Drop)           \
  X(drop_tcp_no_ack, Drop)                          \
  X(drop_tcp_bad_flags, Drop)                       \
  X(drop_data_after_close, Drop)                    \
  /* drops: resources */                            \
  X(drop_tx_full, Drop)                             \
  X(drop_redistribute_full, Drop)                   \
  X(drop_mbuf_alloc_failed, Drop)                   \
  X(drop_multi_segment, Drop)

enum class CounterKind : uint8_t { Traffic, Drop };

enum class Counter : uint16_t {
#define SLUICE_COUNTER_ENUM(name, kind) name,
  SLUICE_COUNTERS(SLUICE_COUNTER_ENUM)
#undef SLUICE_COUNTER_ENUM
};

inline constexpr std::size_t kCounterCount = 0
#define SLUICE_COUNTER_COUNT(name, kind) +1
    SLUICE_COUNTERS(SLUICE_COUNTER_COUNT)
#undef SLUICE_COUNTER_COUNT
    ;

inline constexpr std::array<std::string_view, kCounterCount> kCounterNames = {
#define SLUICE_COUNTER_NAME(name, kind) std::string_view{#name},
    SLUICE_COUNTERS(SLUICE_COUNTER_NAME)
#undef SLUICE_COUNTER_NAME
};

inline constexpr std::array<CounterKind, kCounterCount> kCounterKinds = {
#define SLUICE_COUNTER_KIND(name, kind) CounterKind::kind,
    SLUICE_COUNTERS(SLUICE_COUNTER_KIND)
#undef SLUICE_COUNTER_KIND
};

constexpr std::string_view counter_name(Counter c) {
  return kCounterNames[static_cast<std::size_t>(c)];
}

// One worker's counters. Only the owning worker writes (plain load + store, no locked
// read-modify-write on the hot path); the stats thread reads with relaxed loads, so a reader
// sees each counter's value at some recent instant, never a torn one.
struct alignas(64) Counters {
  std::array<uint64_t, kCounterCount> values{};

  void add(Counter c, uint64_t n = 1) {
    std::atomic_ref<uint64_t> slot(values[static_cast<std::size_t>(c)]);
    slot.store(slot.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get(Counter c) const {
    std::atomic_ref<uint64_t> slot(const_cast<uint64_t&>(values[static_cast<std::size_t>(c)]));
    return slot.load(std::memory_order_relaxed);
  }
};
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);

// Sum of several workers' counters, taken on read.
struct CounterSnapshot {
  std::array<uint64_t, kCounterCount> values{};
  uint64_t operator[](Counter c) const { return values[static_cast<std::size_t>(c)]; }
  void accumulate(const Counters& counters) {
    for (std::size_t i = 0; i < kCounterCount; ++i)
      values[i] += counters.get(static_cast<Counter>(i));
  }
};

}  // namespace sluice
