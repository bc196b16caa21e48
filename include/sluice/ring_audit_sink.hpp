// Where a live worker's audit records go: its own ring, drained by the audit writer thread. A
// full ring drops the record (counted by the ring) rather than make the worker wait. Used by the
// bridge's workers and by sluice-bench's, so both pay the same per decision.
#pragma once

#include "sluice/admission.hpp"
#include "sluice/audit.hpp"

namespace sluice {

class RingAuditSink final : public AuditSink {
 public:
  explicit RingAuditSink(AuditRing& ring) : ring_(ring) {}
  void write(const AuditRecord& record) override { ring_.push_or_discard(record); }
  AuditCapturePool* capture_pool() override { return ring_.capture(); }

 private:
  AuditRing& ring_;
};

}  // namespace sluice
