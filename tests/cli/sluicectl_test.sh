#!/usr/bin/env bash
# sluicectl: keys hash and identities check, their help, and clear errors with exit status 2.
# usage: sluicectl_test.sh PATH/TO/sluicectl
set -euo pipefail
sluicectl=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
check() {  # description, command...
  local description=$1
  shift
  if "$@"; then echo "PASS $description"; else echo "FAIL $description"; failures=$((failures + 1)); fi
}
contains() { grep -qF -- "$2" <<<"$1"; }
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
run "$work/empty" frobnicate
check "an unknown command exits 2" contains "$status $err" "2 sluicectl: unknown command 'frobnicate'"

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all sluicectl checks passed"
