#!/usr/bin/env bash
# The appliance example in tools/deploy/ stays valid: its config passes `sluice --check-config`
# with an identities file and the shipped rules compiled beside it, and the systemd unit runs the
# options sluice actually has.
#
# Usage: bash tests/cli/deploy_test.sh SLUICE SLUICECTL
set -uo pipefail
sluice=$1
sluicectl=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d /tmp/sluice-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
check() { # check NAME COMMAND...: runs COMMAND, PASS when it succeeds
  local name=$1
  shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}

cp "$repo/tools/deploy/sluice.yaml" "$work/"
digest=$(printf 'sk-deploy-test-0123456789' | "$sluicectl" keys hash)
printf 'identities:\n  - {name: acme, tier: verified, keys: ["%s"]}\n' "$digest" >"$work/identities.yaml"
check "shipped rules compile beside the config" \
  bash -c '"$1" rules compile "$2/rules" -o "$3/rules.db" >/dev/null' _ "$sluicectl" "$repo" "$work"
out=$("$sluice" --check-config --config "$work/sluice.yaml" 2>&1)
echo "  $out"
check "tools/deploy/sluice.yaml is valid" grep -q ': valid (' <<<"$out"
check "it names its escalation chain" grep -q 'escalation: free → suspended, verified → free' <<<"$out"

unit="$repo/tools/deploy/sluice.service"
for option in --check-config --config --pid-file --stats-interval; do
  check "sluice --help documents $option, which the unit uses" \
    bash -c '"$1" --help | grep -q -- "$2" && grep -q -- "$2" "$3"' _ "$sluice" "$option" "$unit"
done
check "the unit reloads through sluicectl reload" grep -q 'ExecReload=.*sluicectl reload --config' "$unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  # Missing binaries under /usr/local are expected here; syntax errors are not.
  out=$(systemd-analyze verify "$unit" "$repo/tools/deploy/sluice-prepare.service" 2>&1 |
    grep -v -e 'is not executable' -e 'No such file' -e 'Command .* is not' || true)
  check "systemd-analyze verify finds no syntax problem${out:+: $out}" test -z "$out"
fi

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all deploy checks passed"
