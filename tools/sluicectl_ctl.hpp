// `sluicectl stats|top|drain` and `reload` over the control socket (tools/sluicectl_ctl.cpp);
// sluicectl.cpp dispatches.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice::ctl {

inline constexpr std::string_view kDefaultSocket = "/run/sluice.sock";

// args[0] is "stats", "top" or "drain". Returns the exit status: 0 done, 1 the daemon could not
// be reached (or did not drain in time), 2 bad usage.
int control_command(const std::vector<std::string_view>& args);

// `sluicectl reload` without --pid/--pid-file: sends `reload` on the socket and prints the
// daemon's own answer. 0 reloaded, 1 not reached, 2 the daemon refused the new files.
int reload_over_socket(const std::string& socket, double timeout_s);

}  // namespace sluice::ctl
