# Shared by the scripts that start processes of their own (tools/demo.sh, tests/e2e/lib.sh,
# perf/haproxy/compare.sh). Sourced.

# stop_pid PID [TENTHS]: ends one process the script started — TERM, up to TENTHS tenths of a
# second (default 50) for it to go, then KILL — and reaps it. Nothing to do for an empty or
# finished PID.
stop_pid() {
  local pid=$1 tenths=${2:-50}
  if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$tenths"); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
