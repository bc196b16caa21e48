#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test — unit tests
# (also under AddressSanitizer + UBSan), golden replay captures, the CLI checks and the live
# namespace test (needs root: it creates and removes its own network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh

if [[ ! -f build/build.ninja ]]; then meson setup build; fi
ninja -C build
if [[ ! -f build-asan/build.ninja ]]; then
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false -Dbuildtype=debug
fi
ninja -C build-asan

passed=0
failed=0
run_suite() {  # build dir, meson test arguments...
  local dir=$1
  shift
  local status=0
  meson test -C "$dir" --print-errorlogs "$@" || status=$?
  local log="$dir/meson-logs/testlog.json"
  if [[ -f $log ]]; then
    local ok bad
    ok=$(grep -c '"result": "OK"' "$log" || true)
    bad=$(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log" || true)
    passed=$((passed + ok))
    failed=$((failed + bad))
  fi
  if ((status != 0)) && [[ ! -f $log ]]; then failed=$((failed + 1)); fi
}

run_suite build
run_suite build-asan --suite unit

echo
echo "${passed} passed, ${failed} failed"
((failed == 0))
