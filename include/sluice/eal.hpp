// EAL start-up from the config: the first stage of the appliance (config → EAL → ports → workers).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "sluice/config.hpp"

namespace sluice {

class StartupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The EAL argument vector for the live bridge: the config's eal_args, then `extra` (from the
// command line after `--`), the two ports (`--vdev` for virtual devices named net_*, `-a` for
// a PCI address), and an lcore list of main + workers unless one was given.
std::vector<std::string> bridge_eal_arguments(const Config& config,
                                              const std::vector<std::string>& extra);

// The EAL argument vector for offline replay: no devices, no hugepages, one lcore.
std::vector<std::string> replay_eal_arguments();

// Initialises EAL once; throws StartupError naming the arguments when EAL refuses them.
void init_eal(const std::vector<std::string>& arguments);

// The DPDK port name of a devargs string ("net_af_packet0,iface=x" → "net_af_packet0").
std::string port_name(const std::string& devargs);

}  // namespace sluice
