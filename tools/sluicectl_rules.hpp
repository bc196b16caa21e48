// `sluicectl rules compile|test|scan|lint` (tools/sluicectl_rules.cpp); sluicectl.cpp dispatches.
#pragma once

#include <string_view>
#include <vector>

namespace sluice::ctl {

// args[0] is "rules". Returns the exit status: 0 done, 1 lint findings, 2 bad usage or input.
int rules_command(const std::vector<std::string_view>& args);

}  // namespace sluice::ctl
