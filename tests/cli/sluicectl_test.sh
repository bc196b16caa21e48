#!/usr/bin/env bash
# sluicectl: keys hash, identities check, reload, their help, and clear errors (exit 1 or 2).
# usage: sluicectl_test.sh PATH/TO/sluicectl
set -euo pipefail
sluicectl=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/lib.sh"
run() {  # stdin-file, args... → sets out, err, status
  status=0
  out=$("$sluicectl" "${@:2}" <"$1" 2>"$work/stderr") || status=$?
  err=$(cat "$work/stderr")
}

help=$("$sluicectl" --help)
for command in "keys hash" "identities check" "--help"; do
  check "sluicectl --help explains $command" contains "$help" "$command"
done
keys_help=$("$sluicectl" keys --help)
check "sluicectl keys --help explains the digest form" contains "$keys_help" "sha256:<64 lowercase hex digits>"
check "sluicectl keys --help explains newline handling" contains "$keys_help" "trailing newline"
check "sluicectl keys hash --help works too" contains "$("$sluicectl" keys hash --help)" "Bearer"
check "sluicectl identities --help explains check" contains "$("$sluicectl" identities --help)" "identities check FILE"

expected="sha256:$(printf 'sk-test' | sha256sum | cut -d' ' -f1)"
printf 'sk-test' >"$work/key"
run "$work/key" keys hash
check "keys hash prints sha256:<hex> of the key" test "$out" = "$expected"
check "keys hash exits 0" test "$status" -eq 0
echo 'sk-test' >"$work/key-newline"
run "$work/key-newline" keys hash
check "keys hash strips one trailing newline" test "$out" = "$expected"
printf ' sk-test' >"$work/key-space"
run "$work/key-space" keys hash
check "keys hash trims nothing else" test "$out" = "sha256:$(printf ' sk-test' | sha256sum | cut -d' ' -f1)"

: >"$work/empty"
run "$work/empty" keys hash
check "empty key exits 2" test "$status" -eq 2
check "empty key says so" contains "$err" "no key on stdin"
check "empty key prints no digest" test -z "$out"
printf '\n' >"$work/newline-only"
run "$work/newline-only" keys hash
check "a lone newline is an empty key (exit 2)" test "$status" -eq 2
printf 'sk-one\nsk-two\n' >"$work/two"
run "$work/two" keys hash
check "two lines exit 2" test "$status" -eq 2
check "two lines say so" contains "$err" "more than one line"
printf 'sk-test\r\n' >"$work/crlf"
run "$work/crlf" keys hash
check "CRLF exits 2 and names the carriage return" contains "$status $err" "2 sluicectl keys hash: the key contains a control character (a carriage return"
run "$work/key" keys hash extra
check "keys hash with an argument exits 2" test "$status" -eq 2

digest_a="sha256:$(printf 'sk-acme' | sha256sum | cut -d' ' -f1)"
digest_b="sha256:$(printf 'sk-beta' | sha256sum | cut -d' ' -f1)"
cat >"$work/good.yaml" <<YAML
identities:
  - name: acme-prod
    tier: verified
    keys: ["$digest_a"]
    limits: { requests_per_second: 5, burst: 10 }
  - name: beta
    tier: free
    keys: ["$digest_b"]
YAML
run "$work/empty" identities check "$work/good.yaml"
check "identities check on a good file exits 0" test "$status" -eq 0
check "identities check summarises" test "$out" = "$work/good.yaml: 2 identities, 2 keys, tiers: free, verified"

cat >"$work/bad.yaml" <<YAML
identities:
  - name: acme-prod
    tier: verified
    keys: ["$digest_a"]
  - name: beta
    tier: free
    keys: [sk-beta]
YAML
run "$work/empty" identities check "$work/bad.yaml"
check "identities check on a bad file exits 2" test "$status" -eq 2
check "identities check names file, line, column, key and form" \
  contains "$err" "$work/bad.yaml:7:12: identities[1].keys[0]: expected 'sha256:' followed by 64 lowercase hex digits"
check "identities check never echoes a key in clear" bash -c '! grep -qF sk-beta <<<"$1"' _ "$err"
run "$work/empty" identities check "$work/missing.yaml"
check "identities check on a missing file exits 2 and names it" contains "$status $err" "2 $work/missing.yaml: cannot open"
run "$work/empty" identities check
check "identities check without FILE exits 2" test "$status" -eq 2
# identities check --config: tiers checked against the config's.
cat >"$work/ids.yaml" <<YAML
identities:
  - {name: a, tier: gold, keys: ["$expected"]}
YAML
cat >"$work/sluice.yaml" <<YAML
identities: ids.yaml
tiers:
  free: { requests_per_second: 1, burst: 2, tokens_per_minute: 600, token_burst: 300,
          max_concurrent: 2, max_body_bytes: 1000, max_output_tokens: 100 }
YAML
run "$work/empty" identities check "$work/ids.yaml"
check "identities check without --config does not know the tiers" test "$status" -eq 0
run "$work/empty" identities check "$work/ids.yaml" --config "$work/sluice.yaml"
check "identities check --config names an identity's unknown tier with its location" \
  contains "$status $err" "2 $work/ids.yaml:2:21: identities[0].tier: identity 'a' has tier 'gold', which $work/sluice.yaml does not define (its tiers: free)"

# reload: validates first, then needs a running daemon.
check "sluicectl --help explains reload" contains "$help" "reload [--config CONFIG]"
check "sluicectl reload --help explains SIGHUP" contains "$("$sluicectl" reload --help)" "SIGHUP"
run "$work/empty" reload --config "$work/sluice.yaml" --pid-file "$work/none.pid"
check "reload with an invalid config exits 2 and sends nothing" contains "$status $err" "nothing sent"
sed -i 's/tier: gold/tier: free/' "$work/ids.yaml"
run "$work/empty" reload --config "$work/sluice.yaml" --pid-file "$work/none.pid"
check "reload validates a good config, then says no daemon runs (exit 1)" \
  contains "$status $out $err" "1 $work/sluice.yaml: valid (1 identities (1 keys), 1 tiers, unknown keys denied)"
check "reload without a daemon names the pid file" contains "$err" "$work/none.pid: No such file or directory"
echo 999999999 >"$work/stale.pid"
run "$work/empty" reload --pid-file "$work/stale.pid"
check "reload with a stale pid file exits 1 and says so" contains "$status $err" "1 sluicectl reload: no process 999999999 (stale"
run "$work/empty" reload --pid "$$"
check "reload refuses a process that is not sluice" contains "$status $err" "not sluice"
run "$work/empty" reload --pid abc
check "reload --pid abc exits 2" test "$status" -eq 2
run "$work/empty" reload --frobnicate x
check "reload with an unknown option exits 2" test "$status" -eq 2

run "$work/empty" frobnicate
check "an unknown command exits 2" contains "$status $err" "2 sluicectl: unknown command 'frobnicate'"

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all sluicectl checks passed"
