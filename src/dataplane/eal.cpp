#include "sluice/eal.hpp"

#include <rte_eal.h>
#include <rte_errno.h>

#include <algorithm>

namespace sluice {
namespace {

bool has_any(const std::vector<std::string>& args,
             std::initializer_list<std::string_view> options) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& arg) {
    return std::any_of(options.begin(), options.end(), [&](std::string_view option) {
      return arg == option || arg.starts_with(std::string(option) + "=");
    });
  });
}

void add_port(std::vector<std::string>& args, const std::string& devargs) {
  args.push_back(devargs.starts_with("net_") ? "--vdev" : "-a");
  args.push_back(devargs);
}

}  // namespace

std::string port_name(const std::string& devargs) {
  return devargs.substr(0, devargs.find(','));
}

std::vector<std::string> bridge_eal_arguments(const Config& config,
                                              const std::vector<std::string>& extra) {
  std::vector<std::string> args{"sluice"};
  args.insert(args.end(), config.dataplane.eal_args.begin(), config.dataplane.eal_args.end());
  args.insert(args.end(), extra.begin(), extra.end());
  if (!has_any(args, {"-l", "--lcores", "-c"})) {
    args.push_back("-l");
    args.push_back("0-" + std::to_string(config.dataplane.workers));
  }
  add_port(args, config.dataplane.client_port);
  add_port(args, config.dataplane.server_port);
  return args;
}

std::vector<std::string> replay_eal_arguments() {
  return {"sluice", "--no-huge", "-m",          "256",           "--no-pci",      "--no-shconf",
          "-l",     "0",         "--log-level", "lib.eal:error", "--no-telemetry"};
}

void init_eal(const std::vector<std::string>& arguments) {
  std::vector<char*> argv;
  // EAL keeps pointers into argv (and may permute it): give it strings that live for the process.
  static std::vector<std::string> storage;
  storage = arguments;
  for (std::string& arg : storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(storage.size()), argv.data()) < 0) {
    std::string joined;
    for (const std::string& arg : arguments) joined += " " + arg;
    throw StartupError("EAL initialisation failed (" + std::string(rte_strerror(rte_errno)) +
                       "); EAL arguments:" + joined);
  }
}

}  // namespace sluice
