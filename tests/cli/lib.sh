# Shared by the command-level tests (tests/cli/*_test.sh, tests/perf/haproxy_compare_test.sh):
# one PASS/FAIL line per check and the count of failures. Sourced; the script ends with
# `((failures == 0))`.

failures=0
check() { # description, command...
  local description=$1
  shift
  if "$@"; then echo "PASS $description"; else echo "FAIL $description"; failures=$((failures + 1)); fi
}
contains() { grep -qF -- "$2" <<<"$1"; }
