// The L7 consumer of a flow's in-order TCP bytes. One consumer per worker; it keeps its own
// per-flow state indexed by flow id (the flow table slot), so nothing is allocated per flow.
#pragma once

#include <cstdint>
#include <span>

#include "sluice/endpoint.hpp"
#include "sluice/tcp_state.hpp"

namespace sluice {

enum class StreamVerdict : uint8_t {
  kContinue,  // forward the segment that carried these bytes
  kKill,      // end the flow: the segment is dropped and both sides are reset
  kDeny,      // end the flow: the segment is dropped, the client gets denial(), then a FIN,
              // and the server side is reset
  kDiscard,   // drop the segment that carried these bytes and keep the flow: they are not the
              // receiver's to read (data after a request that closes the connection); this
              // direction's later payload is dropped too, counted as drop_data_after_close
};

class StreamConsumer {
 public:
  virtual ~StreamConsumer() = default;
  virtual void on_open(uint32_t flow_id, const FlowEndpoints& endpoints) = 0;
  // The next in-order bytes of one direction; called once per contiguous piece.
  virtual StreamVerdict on_data(uint32_t flow_id, Direction direction,
                                std::span<const uint8_t> bytes, uint64_t now_ns) = 0;
  // The direction's FIN has been reached in order: no more bytes will follow.
  virtual void on_end(uint32_t flow_id, Direction direction) = 0;
  // The flow left the table (closed and expired, evicted or reset); its id will be reused.
  virtual void on_close(uint32_t flow_id) = 0;
  // After kDeny: the bytes to send to the client (an HTTP response), valid until the next call.
  virtual std::span<const uint8_t> denial(uint32_t) { return {}; }
};

// Consumes nothing and lets everything through: the bridge before the HTTP stage exists.
class NullConsumer final : public StreamConsumer {
 public:
  void on_open(uint32_t, const FlowEndpoints&) override {}
  StreamVerdict on_data(uint32_t, Direction, std::span<const uint8_t>, uint64_t) override {
    return StreamVerdict::kContinue;
  }
  void on_end(uint32_t, Direction) override {}
  void on_close(uint32_t) override {}
};

}  // namespace sluice
