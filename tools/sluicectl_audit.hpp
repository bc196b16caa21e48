// `sluicectl audit verify|review` (tools/sluicectl_audit.cpp); sluicectl.cpp dispatches.
#pragma once

#include <string_view>
#include <vector>

namespace sluice::ctl {

// args[0] is "audit". Returns the exit status: 0 done (verify: the chain holds), 1 verify found
// a break, 2 bad usage or input.
int audit_command(const std::vector<std::string_view>& args);

}  // namespace sluice::ctl
