#!/usr/bin/env bash
# sluicectl stats | top | drain | reload over the control socket, without a running sluice: help
# texts, usage errors (exit 2), and clear errors when the daemon cannot be reached (exit 1): no
# socket, a path that is not a socket, a stale socket, a socket that never answers (timeout),
# and a peer that does not speak the protocol; a daemon's own error answer is passed on.
# (The live exchanges are in tests/e2e/management_test.sh.)
# usage: sluicectl_control_test.sh PATH/TO/sluicectl
set -euo pipefail
sluicectl=$1
py=/usr/bin/python3
work=$(mktemp -d)
peer_pid=""
cleanup() {
  if [[ -n $peer_pid ]]; then kill "$peer_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
check() { # description, command...
  local description=$1
  shift
  if "$@"; then echo "PASS $description"; else
    echo "FAIL $description"
    echo "     status $status, out: ${out:0:300}, err: ${err:0:300}"
    failures=$((failures + 1))
  fi
}
contains() { grep -qF -- "$2" <<<"$1"; }
status=0
out=""
err=""
run() { # args... → sets out, err, status
  status=0
  out=$(timeout 20 "$sluicectl" "$@" </dev/null 2>"$work/stderr") || status=$?
  err=$(cat "$work/stderr")
}

help=$("$sluicectl" --help)
for command in "stats [--socket PATH]" "top [--once | --iterations N]" "drain [--no-wait" "--socket PATH"; do
  check "sluicectl --help explains $command" contains "$help" "$command"
done
check "stats --help names the default socket" contains "$("$sluicectl" stats --help)" "/run/sluice.sock"
check "top --help explains --once and q" contains "$("$sluicectl" top --help)" "q or Ctrl-C quits"
drain_help=$("$sluicectl" drain --help)
check "drain --help defines draining (RST to new SYNs)" contains "$drain_help" "RST (the client sees \"connection refused\")"
check "drain --help defines drained" contains "$drain_help" "no flow is half-open or established"
check "reload --help explains the socket and SIGHUP" contains "$("$sluicectl" reload --help)" "over the control socket"

# Usage errors: exit 2.
run stats --bogus x
check "stats with an unknown option exits 2" test "$status" -eq 2
run top --iterations 0
check "top --iterations 0 exits 2" contains "$status $err" "2 sluicectl: top: --iterations: expected an integer"
run drain --wait abc
check "drain --wait abc exits 2" test "$status" -eq 2
run stats --socket "/tmp/$(printf 'x%.0s' {1..120})"
check "a socket path too long for an address exits 2" contains "$status $err" "2 sluicectl stats: --socket:"

# No daemon: exit 1 with the reason and what to do.
for command in "stats" "top --once" "drain" "reload"; do
  # shellcheck disable=SC2086
  run $command --socket "$work/none.sock"
  check "$command without a daemon exits 1: is sluice running?" \
    contains "$status $err" "1 sluicectl ${command%% *}: cannot connect to $work/none.sock: no such file — is sluice running?"
done
run stats --socket /run/surely-no-sluice-here.sock
check "the message names the path given" contains "$err" "/run/surely-no-sluice-here.sock: no such file"
: >"$work/plain"
run stats --socket "$work/plain"
check "a path that is not a socket says so (exit 1)" contains "$status $err" "1 sluicectl stats: cannot connect to $work/plain: not a socket"

# A stale socket: bound, then its process went.
"$py" -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$work/stale.sock"
run stats --socket "$work/stale.sock"
check "a stale socket: connection refused, is sluice running? (exit 1)" \
  contains "$status $err" "1 sluicectl stats: cannot connect to $work/stale.sock: connection refused — is sluice running?"

# peer MODE: a Unix socket server at $work/peer.sock (bounded to 20 s) that accepts and then
# never answers (silent), answers garbage, or answers the daemon's error form.
peer() {
  rm -f "$work/peer.sock"
  "$py" - "$work/peer.sock" "$1" <<'PY' &
import socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(4)
s.settimeout(20)
end = time.time() + 20
held = []
while time.time() < end:
    try:
        c, _ = s.accept()
    except OSError:
        break
    if mode == "silent":
        held.append(c)
        continue
    c.settimeout(5)
    line = b""
    while not line.endswith(b"\n"):
        chunk = c.recv(1024)
        if not chunk:
            break
        line += chunk
    c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" if mode == "garbage" else
              b"error: reload failed, the running policy stays: x.yaml:1:1: broken\n")
    c.close()
PY
  peer_pid=$!
  for _ in $(seq 1 50); do
    [[ -S $work/peer.sock ]] && return 0
    sleep 0.1
  done
}
stop_peer() {
  kill "$peer_pid" 2>/dev/null || true
  wait "$peer_pid" 2>/dev/null || true
  peer_pid=""
}

peer silent
started=$(date +%s%N)
run stats --socket "$work/peer.sock" --timeout 0.5
took_ms=$((($(date +%s%N) - started) / 1000000))
check "a daemon that never answers: timeout after --timeout (exit 1)" \
  contains "$status $err" "1 sluicectl stats: no answer from $work/peer.sock within 0.5 s (timeout)"
check "the timeout is kept (${took_ms} ms)" test "$took_ms" -lt 5000
run top --once --socket "$work/peer.sock" --timeout 0.3
check "top --once times out the same way" contains "$status $err" "1 sluicectl top: no answer from"
stop_peer

peer garbage
run stats --socket "$work/peer.sock"
check "a peer that does not speak the protocol is named (exit 1)" \
  contains "$status $err" "1 sluicectl stats: $work/peer.sock: not a sluice control socket"
stop_peer

peer refuse
run reload --socket "$work/peer.sock"
check "reload passes on the daemon's own refusal (exit 2)" \
  contains "$status $err" "2 sluice: reload failed, the running policy stays: x.yaml:1:1: broken"
stop_peer

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all sluicectl control checks passed"
