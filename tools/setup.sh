#!/usr/bin/env bash
# Installs everything Sluice needs to build, run and test on Debian 12.
# Idempotent: packages already present are left alone; safe to run again.
set -euo pipefail

packages=(
  build-essential pkg-config meson ninja-build clang-format
  libdpdk-dev dpdk libhyperscan-dev liburing-dev libxxhash-dev libssl-dev
  libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev libpcap-dev
  zlib1g-dev libutf8proc-dev libicu-dev nlohmann-json3-dev clang python3-h11
  iproute2 iputils-ping ethtool curl python3 python3-scapy procps tcpdump
  prometheus haproxy wrk python3-yaml python3-matplotlib
  python3-fastapi python3-uvicorn  # tests/e2e/integrity_test.sh's real host
)
# prometheus: for `promtool check metrics` on the exposition in the live tests (the Prometheus
# server the package would start is disabled again below). haproxy and wrk: the side-by-side
# comparison (perf/haproxy/); its own instances run on loopback, the package's service is
# disabled below; python3-yaml for its script. python3-matplotlib: `sluice-bench --plot`.
# Node and npm for the end-to-end test's real client (the openai npm package, tests/e2e/node):
# Debian's nodejs and npm, unless a node or npm is already on PATH (from elsewhere, say).
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts a freshly installed Prometheus server (port 9090) under systemd; only promtool
# is wanted here, so a server this run brought up is stopped and disabled again.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 &&
  systemctl is-enabled prometheus >/dev/null 2>&1; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  echo "setup: the prometheus package's server was stopped and disabled (only promtool is used)"
fi
if [[ " ${missing[*]} " == *" haproxy "* ]] && command -v systemctl >/dev/null 2>&1 &&
  systemctl is-enabled haproxy >/dev/null 2>&1; then
  $SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true
  echo "setup: the haproxy package's service was stopped and disabled (perf/haproxy starts its own)"
fi
echo "setup: done"
