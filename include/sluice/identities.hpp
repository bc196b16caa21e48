// Loading the identities file (YAML) into an immutable IdentityTable.
//
//   identities:
//     - name: acme-prod
//       tier: verified
//       keys: ["sha256:<64 lowercase hex>", ...]     # digests only, from `sluicectl keys hash`
//       limits: { requests_per_second: 5, burst: 10 }  # optional overrides of the tier's limits
//
// Every problem is a ConfigError naming file:line:column, the key path
// (identities[2].keys[0]) and the expected form. Built off the data path; the result is held by
// std::shared_ptr<const IdentityTable> and swapped whole on reload.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "sluice/config.hpp"  // ConfigError
#include "sluice/identity.hpp"

namespace sluice {

std::shared_ptr<const IdentityTable> load_identities_file(const std::string& path);
std::shared_ptr<const IdentityTable> load_identities_text(std::string_view text,
                                                          const std::string& source_name);

}  // namespace sluice
