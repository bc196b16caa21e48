#!/usr/bin/env bash
# The command line: every option is explained by --help, and bad input gets a clear error that
# names the file, line and key, with exit status 2.
set -euo pipefail
sluice=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/lib.sh"

help=$("$sluice" --help)
for option in --config --workers --duration --stats-interval --check-config --print-default-config --help --version; do
  check "sluice --help explains $option" contains "$help" "$option"
done
replay_help=$("$sluice" replay --help)
for option in --config --in --out-client --out-server --server-net --prompts --quiet --help; do
  check "sluice replay --help explains $option" contains "$replay_help" "$option"
done

printf 'inspect:\n  other_traffic: maybe\n' >"$work/bad.yaml"
status=0
message=$("$sluice" --config "$work/bad.yaml" 2>&1) || status=$?
check "bad value exits 2" test "$status" -eq 2
check "bad value names file, line, key and the expected form" \
  contains "$message" "$work/bad.yaml:2:18: inspect.other_traffic: expected pass or drop, got 'maybe'"

status=0
message=$("$sluice" --frobnicate 2>&1) || status=$?
check "unknown option exits 2 and says so" test "$status" -eq 2
check "unknown option is named" contains "$message" "unknown option '--frobnicate'"

status=0
message=$("$sluice" replay --in "$work/missing.pcap" --out-client "$work/c.pcap" --out-server "$work/s.pcap" 2>&1) || status=$?
check "missing capture exits 1" test "$status" -eq 1
check "missing capture is named" contains "$message" "$work/missing.pcap: cannot read capture"

status=0
message=$("$sluice" replay --in x --out-client y --out-server z --server-net 300.1.1.1/8 2>&1) || status=$?
check "bad --server-net exits 2" test "$status" -eq 2

check "embedded default config is valid" "$sluice" --check-config
check "printed default config loads back" bash -c "'$sluice' --print-default-config >'$work/d.yaml' && '$sluice' --config '$work/d.yaml' --check-config"

echo "cli: $failures failure(s)"
((failures == 0))
