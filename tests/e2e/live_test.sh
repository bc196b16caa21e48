#!/usr/bin/env bash
# Live end-to-end test: Sluice bridging real TCP/HTTP traffic between two
# network namespaces over veth pairs with DPDK's net_af_packet.
#
#   client ns (curl, ping) -- cli0 <-> sl-client [sluice in mid ns] sl-server <-> srv0 -- server ns (http.server)
#
# Usage: bash tests/e2e/live_test.sh BUILD_DIR     (BUILD_DIR holds src/sluice)
# Needs root (network namespaces); exits 77 (meson's "skipped") otherwise.
#
# Network rules: addresses only from 198.18.0.0/15, only inside namespaces this
# script creates and always removes (trap on EXIT/INT/TERM); every traffic step
# is bounded in count and in time.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "live_test: SKIP: must run as root (creates network namespaces and veth pairs)"
  exit 77
fi
if (($# < 1 || $# > 2)); then
  echo "usage: $0 BUILD_DIR [WORKERS]" >&2
  exit 2
fi
# WORKERS > 1 runs the software symmetric-hash distributor (net_af_packet has no RSS): each port
# gets WORKERS queue pairs, and the worker lcores share the last CPU when there are too few.
workers=${2:-1}
if [[ ! $workers =~ ^[1-8]$ ]]; then
  echo "usage: $0 BUILD_DIR [WORKERS 1..8]" >&2
  exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
topology="$repo/tools/topology.sh"
sluice="$(realpath "$1")/src/sluice"
py=/usr/bin/python3 # Debian's python, not whatever pyenv puts on PATH

for tool in ip ethtool curl sha256sum timeout "$py"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "live_test: SKIP: '$tool' not installed (run tools/setup.sh)"
    exit 77
  fi
done
if [[ ! -x $sluice ]]; then
  echo "live_test: FAIL: $sluice not found or not executable (build first: ninja -C BUILD_DIR)"
  exit 1
fi

prefix="slt$$"
net=$((200 + workers))
cli_ns="${prefix}-cli"
mid_ns="${prefix}-mid"
srv_ns="${prefix}-srv"
server_ip="198.18.${net}.2"
base_url="http://${server_ip}:8000"

work=$(mktemp -d /tmp/sluice-live.XXXXXX)
log="$work/sluice.log"
sluice_pid=""
http_pid=""
test_name=live_test
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
dump_log() { dump_logs 300 "sluice log:$log"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$sluice_pid"
  stop_pid "$http_pid"
  bash "$topology" down "$prefix" >/dev/null 2>&1 || true
  if ((rc != 0)); then dump_log; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "live_test: interrupted"; exit 130' INT TERM


# One bounded HTTP request from the client namespace. Prints curl's
# "<http_code> <bytes>"; the body goes to $1.
client_curl() {
  local out=$1
  shift
  in_ns "$cli_ns" curl -sS --connect-timeout 3 --max-time 10 -o "$out" \
    -w '%{http_code} %{size_download}' "$@"
}

# ---------------------------------------------------------------- topology
echo "live_test: building topology $prefix (198.18.${net}.0/24)"
bash "$topology" up "$prefix" "$net"

# ---------------------------------------------------------------- server
www="$work/www"
mkdir -p "$www"
echo '<html><body>sluice live test</body></html>' >"$www/index.html"
head -c 1500 /dev/urandom | base64 >"$www/small.txt"
head -c 102400 /dev/urandom >"$www/big.bin"

# Started with "ip netns exec" directly, not through in_ns: a backgrounded
# function runs in a subshell, and $! would then be that shell, not the server.
ip netns exec "$srv_ns" "$py" -m http.server 8000 --bind "$server_ip" --directory "$www" \
  >"$work/http.log" 2>&1 &
http_pid=$!

# Wait for the server from inside its own namespace (not through the bridge).
server_up=0
for _ in $(seq 1 50); do
  if in_ns "$srv_ns" curl -s --max-time 1 -o /dev/null "$base_url/index.html"; then
    server_up=1
    break
  fi
  sleep 0.2
done
if ((server_up == 0)); then
  echo "live_test: FAIL: http.server did not come up in $srv_ns"
  cat "$work/http.log"
  exit 1
fi

# ---------------------------------------------------------------- negative check (before)
# Nothing forwards between sl-client and sl-server yet: the bridge must be the
# only path, or every later PASS would prove nothing.
if client_curl /dev/null --max-time 2 "$base_url/index.html" >/dev/null 2>&1; then
  fail "server reachable from client before sluice started (topology leaks)"
else
  pass "server unreachable from client before sluice started"
fi
# That attempt left an unresolved ARP entry on cli0 whose remaining probes
# would run out (and drop whatever is queued behind them) during the ping
# below; start the next resolution from scratch instead.
ip -n "$cli_ns" neigh flush dev cli0

# ---------------------------------------------------------------- sluice
last_cpu=$(($(nproc) - 1))
lcores="0@0"
for ((w = 1; w <= workers; w++)); do lcores+=",${w}@$((w < last_cpu ? w : last_cpu))"; done
cat >"$work/sluice.yaml" <<EOF
dataplane:
  client_port: "net_af_packet0,iface=sl-client,qpairs=${workers}"
  server_port: "net_af_packet1,iface=sl-server,qpairs=${workers}"
  workers: ${workers}
  eal_args: ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--lcores", "${lcores}"]
  flow_capacity: 4096
inspect:
  tcp_ports: [8000]
  other_traffic: pass
  midstream: drop
  on_flow_table_full: drop
management: { listen: "127.0.0.1:9091", socket: "$work/sluice.sock" }
EOF

echo "live_test: starting sluice in $mid_ns"
# ip netns exec execs sluice itself, so $! is sluice's pid (SIGINT goes to it).
ip netns exec "$mid_ns" "$sluice" --config "$work/sluice.yaml" --stats-interval 1 >"$log" 2>&1 &
sluice_pid=$!

ready=0
for _ in $(seq 1 300); do # 30 s
  if grep -q '^sluice: ready' "$log" 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$sluice_pid" 2>/dev/null || break
  sleep 0.1
done
if ((ready == 0)); then
  fail "sluice did not print 'sluice: ready' within 30 s"
  exit 1
fi
pass "sluice ready"

# ---------------------------------------------------------------- traffic
# ICMP (and the ARP in front of it) is not inspected: other_traffic: pass.
if bash "$topology" ping "$cli_ns" "$server_ip" 5; then
  pass "ping through sluice (ARP + ICMP pass)"
else
  fail "ping through sluice"
fi

connections=0
for round in 1 2 3; do
  for name in small.txt big.bin; do
    got="$work/got-$name-$round"
    res=$(client_curl "$got" "$base_url/$name" 2>&1) || true
    connections=$((connections + 1))
    want=$(sha256sum <"$www/$name" | cut -d' ' -f1)
    have=$(sha256sum <"$got" 2>/dev/null | cut -d' ' -f1 || true)
    if [[ $res == 200\ * && $have == "$want" ]]; then
      pass "GET /$name #$round: 200, sha256 matches ($(stat -c %s "$got") bytes)"
    else
      fail "GET /$name #$round: curl said '$res', sha256 ${have:-none} != $want"
    fi
  done
done

# A request with a ~20 KB body spans many segments in the client->server
# direction. http.server has no do_POST and answers 501, which is enough: the
# answer proves the request crossed the bridge and the response came back.
# "Expect:" (empty) keeps curl from waiting for a 100-continue first. The body is JSON whatever
# the declared type: Sluice reads every request body on an inspected port as JSON
# (docs/normalisation.md), as FastAPI and vLLM do.
{ printf '{"upload":"'; head -c 15000 /dev/urandom | base64 -w 0; printf '"}'; } >"$work/post-body"
res=$(client_curl /dev/null -H 'Expect:' -H 'Content-Type: application/octet-stream' \
  --data-binary @"$work/post-body" "$base_url/upload" 2>&1) || true
connections=$((connections + 1))
if [[ $res == 501\ * ]]; then
  pass "POST /upload with $(stat -c %s "$work/post-body") byte body: 501 from http.server"
else
  fail "POST /upload: expected 501, curl said '$res'"
fi

# A request Sluice refuses (a duplicate "messages" key: the host's JSON parser might read the
# other one) is answered by Sluice itself: 400 with the OpenAI error shape, then the connection
# closes; the request never completes at the server.
refusal=$(in_ns "$cli_ns" curl -sS --max-time 5 -o - -w ' %{http_code}' -H 'Content-Type: application/json' \
  --data-binary '{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[]}' \
  "$base_url/v1/chat/completions" 2>&1 | tail -c 300) || true
connections=$((connections + 1))
if [[ $refusal == *'"code":"json_duplicate_key"'*' 400' ]]; then
  pass "duplicate JSON key answered by Sluice: 400 json_duplicate_key"
else
  fail "duplicate JSON key: expected Sluice's 400 json_duplicate_key, got '$refusal'"
fi
# Sluice acknowledges the client's FIN on the flow it ended, so curl's socket does not sit in
# LAST-ACK retransmitting its FIN into a dead flow (docs/normalisation.md, "Flows Sluice ended").
sleep 0.5
last_ack=$(in_ns "$cli_ns" ss -Htan state last-ack "( dport = :8000 )" | wc -l)
if ((last_ack == 0)); then
  pass "the refused client's socket closed at once (none in LAST-ACK)"
else
  fail "$last_ack client socket(s) in LAST-ACK after Sluice's answer"
fi

# With several workers, many short flows: each lands on a kernel-chosen queue that, for about
# half of them, is not the queue of the worker that owns the flow, so the hand-over path is
# exercised for certain (the chance that all of 8 + 32 flows land on their owner is 2^-40), and
# every one of them must still complete.
if ((workers > 1)); then
  extra_ok=0
  extra=32
  for i in $(seq 1 "$extra"); do
    res=$(client_curl /dev/null "$base_url/small.txt?flow=$i" 2>&1) || true
    connections=$((connections + 1))
    [[ $res == 200\ * ]] && extra_ok=$((extra_ok + 1))
  done
  if ((extra_ok == extra)); then
    pass "$extra further short connections: all answered 200"
  else
    fail "$extra further short connections: only $extra_ok answered 200"
  fi
fi

# ---------------------------------------------------------------- metrics
# GET /metrics from inside sluice's namespace: valid exposition (promtool, when installed) whose
# numbers match what was sent.
metrics="$work/metrics.txt"
code=$(in_ns "$mid_ns" curl -sS --max-time 5 -o "$metrics" -w '%{http_code}' \
  http://127.0.0.1:9091/metrics 2>&1) || true
if [[ $code == 200 ]]; then pass "GET /metrics: 200 ($(wc -l <"$metrics") lines)"; else fail "GET /metrics: '$code'"; fi
if command -v promtool >/dev/null 2>&1; then
  if out=$(promtool check metrics <"$metrics" 2>&1); then pass "promtool check metrics: clean"; else fail "promtool check metrics: $out"; fi
else
  echo "live_test: SKIP: promtool not installed (Debian package 'prometheus'; tools/setup.sh installs it)"
fi
metric() { awk -v key="$1" '$1 == key { print $2 }' "$metrics"; }
value=$(metric sluice_flows_created_total)
if [[ -n $value ]] && ((value >= connections)); then pass "metrics: sluice_flows_created_total = $value (>= $connections)"; else fail "metrics: sluice_flows_created_total = '$value', expected >= $connections"; fi
value=$(metric 'sluice_requests_total{verdict="deny",reason="json_duplicate_key",status="400"}')
if [[ $value == 1 ]]; then pass "metrics: one json_duplicate_key denial"; else fail "metrics: json_duplicate_key denials = '$value', expected 1"; fi
value=$(metric 'sluice_port_packets_total{port="client",direction="rx"}')
if [[ -n $value ]] && ((value > 0)); then pass "metrics: client rx packets = $value"; else fail "metrics: client rx packets = '$value'"; fi

# ---------------------------------------------------------------- stop
# Let the last ACK/FIN exchanges drain through before stopping.
sleep 1.5
echo "live_test: stopping sluice (SIGINT)"
kill -INT "$sluice_pid" 2>/dev/null || true
stopped=0
for _ in $(seq 1 200); do # 20 s
  if ! kill -0 "$sluice_pid" 2>/dev/null; then
    stopped=1
    break
  fi
  sleep 0.1
done
sluice_rc=0
if ((stopped == 1)); then
  wait "$sluice_pid" || sluice_rc=$?
else
  fail "sluice still running 20 s after SIGINT; killing it"
  kill -KILL "$sluice_pid" 2>/dev/null || true
  wait "$sluice_pid" || sluice_rc=$?
fi
sluice_pid=""

if ((sluice_rc == 0)); then
  pass "sluice exit code 0"
else
  fail "sluice exit code $sluice_rc"
fi

# Summary lines look like "  <counter_name>  <integer>"; take the last one of
# each name (the summary comes after all the live stats lines).
counter() {
  awk -v name="$1" '
    $0 ~ /^[ \t]*[a-z][a-z0-9_]*[ \t]+[0-9]+[ \t]*$/ && $1 == name { v = $2; seen = 1 }
    END { if (seen) print v }' "$log"
}
cmp_int() {
  case $2 in
    eq) (($1 == $3)) ;;
    ge) (($1 >= $3)) ;;
    gt) (($1 > $3)) ;;
    *) return 2 ;;
  esac
}
# check_counter NAME OP N, OP one of eq/ge/gt (values are plain integers).
check_counter() {
  local name=$1 op=$2 want=$3 value
  value=$(counter "$name")
  if [[ -z $value ]]; then
    fail "summary has no '$name' line"
  elif cmp_int "$value" "$op" "$want"; then
    pass "$name = $value ($op $want)"
  else
    fail "$name = $value, expected $op $want"
  fi
}

check_counter mbufs_in_use_at_exit eq 0
check_counter flows_created ge "$connections"
if ((workers > 1)); then
  # Both directions of every flow must meet at one worker; with per-queue kernel hashing some
  # packets arrive at the wrong worker and are handed over.
  check_counter redistributed_packets gt 0
  # Drop counters appear in the summary only when non-zero.
  midstream=$(counter drop_midstream)
  if [[ -z $midstream ]]; then pass "no midstream drops"; else fail "drop_midstream = $midstream, expected none"; fi
fi
check_counter tcp_killed_flow_answered ge 1
check_counter rx_client_packets gt 0
check_counter tx_server_packets gt 0
check_counter rx_server_packets gt 0
check_counter tx_client_packets gt 0

# ---------------------------------------------------------------- negative check (after)
# With sluice gone nothing bridges the two sides, so this must fail. It shows
# that the checks above can fail, i.e. that the traffic really went through it.
if client_curl /dev/null --max-time 3 "$base_url/index.html" >/dev/null 2>&1; then
  fail "server still reachable from client after sluice stopped"
else
  pass "server unreachable from client after sluice stopped"
fi

if ((failures > 0)); then
  echo "live_test: FAILED ($failures check(s))"
  dump_log
  exit 1
fi
echo "live_test: ALL PASSED"
