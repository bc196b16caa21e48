// AuditRing construction; push and pop are inline in audit.hpp (called per request).
#include <stdexcept>

#include "sluice/audit.hpp"

namespace sluice {

AuditRing::AuditRing(std::size_t capacity)
    : capacity_(capacity), mask_(capacity - 1), slots_(new AuditRecord[capacity]) {
  if (capacity < 2 || (capacity & (capacity - 1)) != 0) {
    throw std::invalid_argument("audit ring capacity must be a power of two >= 2, got " +
                                std::to_string(capacity));
  }
}

}  // namespace sluice
