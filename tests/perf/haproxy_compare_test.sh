#!/usr/bin/env bash
# perf/haproxy/compare.sh --quick: HAProxy answers the mix as the admission should (401 for every
# unknown key, 200 for every ok request, 403 for malicious prompts, 429 for capped identities),
# both sides report a positive CPU-µs per request, and nothing it started is left running.
# usage: haproxy_compare_test.sh PATH/TO/sluice-bench REPO_ROOT [MIX.jsonl]
#   MIX: a dump of the mix (sluice-bench --dump-requests); the HAProxy side is then tested alone
#   (--haproxy-only), without running the bench.
set -euo pipefail
bench=$1
repo=$2
mix=${3:-}
work=$(mktemp -d /tmp/haproxy-compare-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/../cli/lib.sh"

for program in haproxy wrk; do
  command -v "$program" >/dev/null || { echo "FAIL $program is not installed (Debian package $program)"; exit 1; }
done

args=(--quick --json "$work/result.json" --keep "$work/run" --bench "$bench")
[[ -z $mix ]] || args+=(--mix "$mix" --haproxy-only)
status=0
timeout 300 "$repo/perf/haproxy/compare.sh" "${args[@]}" >"$work/out.txt" 2>&1 || status=$?
cat "$work/out.txt"
check "compare.sh exits 0" test "$status" -eq 0
if [[ ! -s $work/result.json ]]; then
  echo "FAIL compare.sh wrote no JSON"
  exit 1
fi

# One JSON value out of the result: a Python expression over `result`.
value() { /usr/bin/python3 -c "import json, sys; result = json.load(open(sys.argv[1])); print($1)" "$work/result.json"; }
kind_status() { value "result['haproxy']['by_kind'].get('$1', {}).get('$2', 0)"; }
kind_total() { value "sum(result['haproxy']['by_kind'].get('$1', {}).values())"; }
positive() { /usr/bin/python3 -c "import sys; sys.exit(not float(sys.argv[1]) > 0)" "$1"; }

check "the pass over the mix saw unknown-key requests" test "$(kind_total unknown_key)" -gt 0
check "HAProxy answers 401 to every unknown key" test "$(kind_status unknown_key 401)" -eq "$(kind_total unknown_key)"
check "the pass over the mix saw ok requests" test "$(kind_total ok)" -gt 0
check "HAProxy answers 200 to every ok request" test "$(kind_status ok 200)" -eq "$(kind_total ok)"
check "HAProxy answers 403 to at least one malicious request" test "$(kind_status malicious 403)" -gt 0
check "HAProxy answers 429 to at least one over-limit request" test "$(kind_status over_limit 429)" -gt 0
check "HAProxy's CPU-µs per request is positive" positive "$(value "result['haproxy']['cpu_us_per_request']")"
check "HAProxy's stats socket and wrk agree on the counts" test "$(value "result['haproxy']['counts_agree']")" = True
check "HAProxy without the rules answers no 403" test "$(value "result['haproxy_without_rules']['statuses']['403']")" -eq 0
check "at least one rule was carried to HAProxy" test "$(value "len(result['rules']['carried'])")" -gt 0
if [[ -z $mix ]]; then
  check "Sluice's CPU-µs per request is positive" positive "$(value "result['sluice']['cpu_us_per_request']")"
  check "Sluice admitted requests" test "$(value "result['sluice']['statuses']['200']")" -gt 0
fi

ended() { ! kill -0 "$1" 2>/dev/null; }
none_running() { ! pgrep -f -- "$1" >/dev/null; } # pgrep never lists itself
for pid in $(value "' '.join(map(str, result['processes']))"); do
  check "process $pid that compare.sh started has ended" ended "$pid"
done
check "no process runs with a file of the run's directory" none_running "$work/run/"

echo "$failures failure(s)"
((failures == 0))
