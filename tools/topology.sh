#!/usr/bin/env bash
# Creates or removes the live test topology for Sluice:
#
#   ${PREFIX}-cli            ${PREFIX}-mid                         ${PREFIX}-srv
#   cli0 198.18.N.1/24 <-> sl-client  [sluice bridges]  sl-server <-> srv0 198.18.N.2/24
#
# Client and server share one /24 because Sluice is a transparent L2 bump in the
# wire: the only path between the two is Sluice forwarding frames between
# sl-client and sl-server (DPDK net_af_packet on the two veth ends in -mid).
#
# Usage:
#   tools/topology.sh up PREFIX NET     # NET: third octet N of 198.18.N.0/24 (0..255)
#   tools/topology.sh down PREFIX
#   tools/topology.sh ping NS DST COUNT  # ICMP echo from inside NS; exit 0 iff all COUNT replied
#
# Rules kept here on purpose: addresses only from 198.18.0.0/15 (the benchmarking
# range), only inside namespaces this script creates; IPv6 is disabled in every
# namespace so that no link-local (non-198.18) address or ND/RS chatter exists.
# Both sub-commands are idempotent.
set -Eeuo pipefail  # -E: the ERR trap in up() also covers the functions it calls

usage() {
  echo "usage: $0 up PREFIX NET | down PREFIX | ping NS DST COUNT" >&2
  exit 2
}

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "topology: must run as root (creates network namespaces)" >&2
    exit 1
  fi
}

valid_prefix() {
  # Namespace names are PREFIX-cli etc.; keep PREFIX short and shell-safe.
  [[ $1 =~ ^[A-Za-z0-9_]{1,20}$ ]]
}

ns_exists() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"
}

# Ends the processes still running inside one of our namespaces (servers, sluice
# left over by an aborted run), so deleting the namespace really frees it.
kill_ns_pids() {
  local ns=$1 pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -n $pids ]] || return 0
  # shellcheck disable=SC2086  # word splitting of the pid list is intended
  kill -TERM $pids 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] || return 0
    sleep 0.2
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

down() {
  local prefix=$1 ns
  for ns in "${prefix}-cli" "${prefix}-mid" "${prefix}-srv"; do
    if ns_exists "$ns"; then
      kill_ns_pids "$ns"
      # Deleting the namespace destroys the veth ends inside it, and with them
      # their peers in the other namespaces.
      ip netns del "$ns"
      echo "topology: removed namespace $ns"
    fi
  done
}

# Turns off checksum and segmentation offloads one feature at a time: a veth
# refusing one of them (lro is usually "fixed") must not keep the others on.
# With them off, the kernel writes full checksums into every frame and never
# hands DPDK's af_packet a GSO super-frame larger than the MTU.
offloads_off() {
  local ns=$1 dev=$2 feature
  for feature in tx rx tso gso gro lro; do
    ip netns exec "$ns" ethtool -K "$dev" "$feature" off >/dev/null 2>&1 || true
  done
}

ns_base_setup() {
  local ns=$1
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # No IPv6 anywhere: no link-local addresses outside 198.18.0.0/15, and the
  # kernel emits no RS/ND/MLD frames that would cross the bridge unasked.
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
}

up() {
  local prefix=$1 net=$2
  local cli="${prefix}-cli" mid="${prefix}-mid" srv="${prefix}-srv"
  local client_ip="198.18.${net}.1" server_ip="198.18.${net}.2"

  down "$prefix"
  # If any step fails, leave nothing half-built behind.
  trap 'down "$prefix" >/dev/null 2>&1 || true' ERR

  ns_base_setup "$cli"
  ns_base_setup "$mid"
  ns_base_setup "$srv"

  # Create each pair directly across its two namespaces so that nothing ever
  # appears in the root namespace (no name clashes between concurrent runs).
  ip -n "$cli" link add cli0 type veth peer name sl-client netns "$mid"
  ip -n "$srv" link add srv0 type veth peer name sl-server netns "$mid"

  # The sl-* ends carry no address: the kernel in -mid must neither answer nor
  # originate anything on them. Promiscuous mode so the af_packet sockets see
  # frames for the far side's MAC regardless of how the PMD configures them.
  local dev
  for dev in sl-client sl-server; do
    ip netns exec "$mid" sysctl -qw "net.ipv6.conf.${dev}.disable_ipv6=1"
    offloads_off "$mid" "$dev"
    ip -n "$mid" link set "$dev" promisc on
    ip -n "$mid" link set "$dev" up
  done

  offloads_off "$cli" cli0
  ip -n "$cli" addr add "${client_ip}/24" dev cli0
  ip -n "$cli" link set cli0 up

  offloads_off "$srv" srv0
  ip -n "$srv" addr add "${server_ip}/24" dev srv0
  ip -n "$srv" link set srv0 up

  trap - ERR
  echo "topology: namespaces $cli $mid $srv"
  echo "topology:   $cli: cli0 ${client_ip}/24 <-> $mid: sl-client (no address)"
  echo "topology:   $srv: srv0 ${server_ip}/24 <-> $mid: sl-server (no address)"
  echo "topology:   run sluice with: ip netns exec $mid <build>/src/sluice ..."
}

# ICMP echo from inside a namespace, used by the demo and the live test. Uses
# iputils ping when installed; Debian 12 minimal images lack it, so otherwise a
# raw-socket echo in Debian's python3 does the same. Prints "ping: R/N replies"
# and succeeds only when every echo was answered.
ping_ns() {
  local ns=$1 dst=$2 count=$3 out received
  if command -v ping >/dev/null 2>&1; then
    out=$(ip netns exec "$ns" ping -n -c "$count" -i 0.2 -W 2 "$dst" 2>&1 || true)
    received=$(sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' <<<"$out")
    received=${received:-0}
    echo "ping: ${received}/${count} replies from $dst"
    [[ $received -eq $count ]]
    return
  fi
  ip netns exec "$ns" timeout $((count * 3 + 5)) /usr/bin/python3 - "$dst" "$count" <<'PY'
import os, socket, struct, sys, time

dst, count = sys.argv[1], int(sys.argv[2])

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

ident = os.getpid() & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
got = 0
lost = []
for seq in range(1, count + 1):
    payload = b"sluice-ping" + struct.pack("!d", time.time())
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload
    sock.sendto(pkt, (dst, 0))
    deadline = time.monotonic() + 2.0
    answered = False
    while not answered and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, addr = sock.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (data[0] & 0x0F) * 4
        typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        answered = addr[0] == dst and typ == 0 and rid == ident and rseq == seq
    if answered:
        got += 1
    else:
        lost.append(seq)
    time.sleep(0.2)
print(f"ping: {got}/{count} replies from {dst}" + (f" (no reply to seq {lost})" if lost else ""))
sys.exit(0 if got == count else 1)
PY
}

main() {
  (($# >= 2)) || usage
  local cmd=$1 prefix=$2
  case $cmd in
    ping)
      (($# == 4)) || usage
      # Only ever ping the benchmarking range (198.18.0.0/15).
      [[ $3 =~ ^198\.1[89]\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "topology: DST must be in 198.18.0.0/15" >&2; exit 2; }
      [[ $4 =~ ^[1-9][0-9]{0,2}$ ]] || usage
      require_root
      ping_ns "$2" "$3" "$4"
      return
      ;;
  esac
  valid_prefix "$prefix" || { echo "topology: bad PREFIX '$prefix'" >&2; exit 2; }
  case $cmd in
    up)
      (($# == 3)) || usage
      local net=$3
      if ! [[ $net =~ ^[0-9]{1,3}$ ]] || ((10#$net > 255)); then
        echo "topology: NET must be 0..255 (third octet of 198.18.NET.0/24)" >&2
        exit 2
      fi
      require_root
      up "$prefix" "$((10#$net))"
      ;;
    down)
      (($# == 2)) || usage
      require_root
      down "$prefix"
      ;;
    *) usage ;;
  esac
}

main "$@"
