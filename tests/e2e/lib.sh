# Shared by the live tests (tests/e2e/*_test.sh): sourced after the script sets `test_name`.
# Gives pass/fail counting, running in a namespace, stopping a started process, and the log dump
# a failing run prints. Each script keeps its own cleanup (what it started differs).

failures=0
pass() { echo "$test_name: PASS: $*"; }
fail() {
  echo "$test_name: FAIL: $*"
  failures=$((failures + 1))
}

in_ns() { # in_ns NS COMMAND...
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

# stop_pid PID: ends one process the script started (TERM, a bounded wait, then KILL).
# shellcheck source=tools/lib/process.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/lib/process.sh"

# dump_logs LINES "LABEL:FILE"...: the last LINES lines of each file, once per run.
logs_dumped=0
dump_logs() {
  ((logs_dumped == 0)) || return 0
  logs_dumped=1
  local lines=$1 entry file
  shift
  for entry in "$@"; do
    file=${entry#*:}
    echo "$test_name: ---- ${entry%%:*} ($file, last $lines lines) ----"
    if [[ -f $file ]]; then tail -n "$lines" "$file"; else echo "(none)"; fi
  done
  echo "$test_name: ---- end of logs ----"
}
