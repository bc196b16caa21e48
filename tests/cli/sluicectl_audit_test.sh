#!/usr/bin/env bash
# sluicectl audit verify|review on the trail of a replay (make_rules_captures.py: 27 requests of
# three tiers, capture: all): verify passes on the trail as written and names the right line of
# a trail with a byte edited, a line deleted, two lines swapped, its head cut, its last newline
# torn off, a line without a link, rotated files given out of order; review prints the tables
# and, with a rule database compiled with one extra rule, lists the admitted records it would
# now block.
# usage: sluicectl_audit_test.sh PATH/TO/sluicectl PATH/TO/sluice PATH/TO/tests/pcap PATH/TO/rules
set -euo pipefail
sluicectl=$(realpath "$1")  # the script works in its temporary directory
sluice=$(realpath "$2")
pcap=$(realpath "$3")
rules=$(realpath "$4")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/lib.sh"
run() {  # args... → sets out, err, status
  status=0
  out=$("$sluicectl" "$@" 2>"$work/stderr" </dev/null) || status=$?
  err=$(cat "$work/stderr")
}

# ---- help ------------------------------------------------------------------------------------
check "sluicectl --help lists audit verify" contains "$("$sluicectl" --help)" "audit verify FILE..."
check "sluicectl --help lists audit review" contains "$("$sluicectl" --help)" "audit review FILE... [--rules NEW.db]"
check "audit --help explains rotated files" contains "$("$sluicectl" audit --help)" "PATH.keep … PATH.2 PATH.1 PATH"
check "audit verify --help explains the genesis value" contains "$("$sluicectl" audit verify --help)" "64 zeros"
check "audit review --help explains re-scanning" contains "$("$sluicectl" audit review --help)" "cannot be re-scanned (no captured prompt)"
run audit
check "audit without a command exits 2" contains "$status $err" "2 sluicectl audit: expected 'audit verify' or 'audit review'"
run audit frobnicate
check "audit with an unknown command exits 2" contains "$status $err" "2 sluicectl audit: unknown command 'audit frobnicate'"

# ---- a trail --------------------------------------------------------------------------------
/usr/bin/python3 "$pcap/make_rules_captures.py" "$work" >/dev/null
"$sluicectl" rules compile "$rules" -o "$work/rules.db" >/dev/null
cat >"$work/extra.yaml" <<'EOF'
ruleset: review-extra
version: "1"
rules:
  - id: extra.muffin-math
    description: Muffin word problems (stands in for a jailbreak found after the fact)
    pattern: '\bmuffins?\b'
    flags: [caseless]
    scope: prompt
    action: block
    mode: enforce
    severity: low
    examples:
      match: ["How many muffins are left?"]
      no_match: ["How many pages remain?"]
EOF
"$sluicectl" rules compile "$rules" "$work/extra.yaml" -o "$work/new.db" >/dev/null
cp "$work/config.yaml" "$work/all.yaml"
echo "audit: { capture: all }" >>"$work/all.yaml"
replay() {  # config, audit file
  "$sluice" replay --config "$1" --in "$work/in.pcap" --out-client "$work/c.pcap" \
    --out-server "$work/s.pcap" --audit "$2" --quiet
}
replay "$work/all.yaml" "$work/audit.jsonl"
replay "$work/config.yaml" "$work/none.jsonl"  # capture: none (the default)
check "the replay wrote 27 records" test "$(wc -l <"$work/audit.jsonl")" -eq 27

# ---- verify ---------------------------------------------------------------------------------
cd "$work"
run audit verify audit.jsonl
check "verify of the trail as written exits 0" test "$status" -eq 0
check "verify prints OK with the count and the head" contains "$out" "OK: 27 records in 1 file, chain from genesis to head "
head=${out##* }

tamper() {  # name, command producing the tampered file t.jsonl from audit.jsonl
  local name=$1
  shift
  "$@" >t.jsonl
  run audit verify t.jsonl
}
# Line 5 with one byte changed: caught at line 6, whose link is the digest of the original.
tamper edit sed '5s/"request_bytes":/"request_bytez":/' audit.jsonl
check "an edited byte exits 1" test "$status" -eq 1
check "an edited byte is named at the next line" contains "$out" "t.jsonl:6: digest mismatch: prev "
check "an edited byte names the record before as edited" contains "$out" "is not the digest of the record before it (t.jsonl:5): that record was edited, or records between them were removed"
tamper delete sed '5d' audit.jsonl
check "a deleted line exits 1 at the line after the gap" contains "$status $out" "1 t.jsonl:5: digest mismatch"
check "a deleted line is explained" contains "$out" "(t.jsonl:4): that record was edited, or records between them were removed"
tamper swap awk 'NR == 5 { held = $0; next } { print } NR == 6 { print held }' audit.jsonl
check "swapped lines exit 1 at the first of them" contains "$status $out" "1 t.jsonl:5: digest mismatch"
check "swapped lines are called reordered" contains "$out" "records reordered (t.jsonl:6 is the one that follows t.jsonl:4)"
tamper head tail -n +3 audit.jsonl
check "a cut head exits 1 at line 1" contains "$status $out" "1 t.jsonl:1: digest mismatch"
check "a cut head is explained" contains "$out" "is not the digest of the genesis value: this is not the start of the trail"
run audit verify --partial t.jsonl
check "verify --partial accepts a trail that starts mid-chain" contains "$status $out" "0 OK: 25 records in 1 file, chain from "
check "verify --partial ends at the same head" contains "$out" "to head $head"
tamper torn head -c -1 audit.jsonl
check "a torn last line exits 1" contains "$status $out" "1 t.jsonl:27: incomplete last line (no newline)"
tamper unlinked bash -c 'cat audit.jsonl; echo "{\"verdict\":\"admit\"}"'
check "a line without a link exits 1" contains "$status $out" "1 t.jsonl:28: not a chained audit record"

# Rotation: the first file's last line links the second's first.
head -n 10 audit.jsonl >r.jsonl.1
tail -n +11 audit.jsonl >r.jsonl
run audit verify r.jsonl.1 r.jsonl
check "rotated files in order verify" contains "$status $out" "0 OK: 27 records in 2 files, chain from genesis to head $head"
run audit verify --partial r.jsonl r.jsonl.1
check "rotated files out of order exit 1 at the second file" contains "$status $out" "1 r.jsonl.1:1: digest mismatch"
check "rotated files out of order are explained" contains "$out" "files out of order, a rotated file missing between them"
run audit verify r.jsonl.1
part_head=${out##* }
run audit verify --after "$part_head" r.jsonl
check "verify --after the head of the first part accepts the rest" contains "$status $out" "0 OK: 17 records in 1 file, chain from $part_head to head $head"
run audit verify --after "$head" r.jsonl
check "verify --after another head exits 1" contains "$status $out" "1 r.jsonl:1: digest mismatch"
run audit verify --after xyz r.jsonl
check "verify --after a bad digest exits 2" contains "$status $err" "2 sluicectl audit: verify: --after: expected 64 hex digits, got 'xyz'"
run audit verify missing.jsonl
check "verify of a missing file exits 2" contains "$status $err" "2 sluicectl audit verify: missing.jsonl: cannot open"
run audit verify
check "verify without files exits 2" contains "$status $err" "2 sluicectl audit: verify: no FILE given"

# ---- review ---------------------------------------------------------------------------------
run audit review audit.jsonl
check "review exits 0" test "$status" -eq 0
check "review counts the records" contains "$out" "27 records (admit 13, deny 14, flagged 18) in 1 file, 2024-05-01T00:00:00.011Z … 2024-05-01T00:00:02.611Z"
check "review has an aligned table by identity" contains "$out" "identity  records  admit  deny  flagged
(none)          9      4     5        6
acme            9      5     4        6"
check "review has a table by tier" contains "$out" "verified         9      5     4        6"
check "review has a table by verdict and reason" contains "$out" "deny content_policy_violation       14"
check "review has a table by rule" contains "$out" "pi.chat-template-tokens            3      3     0"
check "review has a table by time" contains "$out" "2024-05-01T00:00:00Z       27     13    14       18"
run audit review audit.jsonl --bucket 1s
check "review --bucket 1s cuts by second" contains "$out" "2024-05-01T00:00:02Z        7      3     4        6"
run audit review audit.jsonl --bucket 1y
check "review --bucket 1y exits 2" contains "$status $err" "2 sluicectl audit: review: --bucket: expected a number and s, m, h or d"

run audit review audit.jsonl --rules new.db
check "review --rules exits 0" test "$status" -eq 0
check "review --rules re-scans every admitted record" contains "$out" ": 13 admitted, 13 re-scanned, 0 not re-scannable (no captured prompt); would now block 3, flag 4"
check "review --rules lists the anonymous muffin request" contains "$out" "audit.jsonl:1   2024-05-01T00:00:00.011Z  (none)    anonymous  extra.muffin-math"
check "review --rules lists the free muffin request" contains "$out" "audit.jsonl:10  2024-05-01T00:00:00.911Z  hobby     free       extra.muffin-math"
check "review --rules lists the verified muffin request" contains "$out" "audit.jsonl:19  2024-05-01T00:00:01.811Z  acme      verified   extra.muffin-math"
run audit review audit.jsonl --rules rules.db
check "review with the database the trail was decided by blocks nothing" contains "$out" "would now block 0"
run audit review none.jsonl --rules new.db
check "review of a trail without captures counts them not re-scannable" contains "$out" ": 13 admitted, 0 re-scanned, 13 not re-scannable"
run audit review r.jsonl.1 r.jsonl --rules new.db --json
check "review --json exits 0" test "$status" -eq 0
check "review --json lists the three records" /usr/bin/python3 -c '
import json, sys
out = json.loads(sys.argv[1])
hits = out["rescan"]["would_block"]
assert out["records"] == 27 and len(out["files"]) == 2, out["files"]
assert [h["where"] for h in hits] == ["r.jsonl.1:1", "r.jsonl.1:10", "r.jsonl:9"], hits
assert all(h["rules"] == ["extra.muffin-math"] for h in hits), hits
assert hits[0]["identity"] is None and hits[0]["tier"] == "anonymous", hits[0]
assert out["by_time"][0]["start"] == "2024-05-01T00:00:00Z", out["by_time"]
' "$out"
echo "not json" >>r.jsonl
run audit review r.jsonl.1 r.jsonl
check "review skips and counts a line that is not a record" contains "$status $out" "0 27 records"
check "review names the first skipped line" contains "$out" "skipped 1 lines that are not audit records (first: r.jsonl:18)"
run audit review missing.jsonl
check "review of a missing file exits 2" contains "$status $err" "2 sluicectl audit review: missing.jsonl: cannot open"
run audit review audit.jsonl --rules missing.db
check "review with a missing database exits 2" test "$status" -eq 2

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all sluicectl audit checks passed"
