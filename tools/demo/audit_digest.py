#!/usr/bin/python3
"""A short digest of a Sluice audit trail (JSON Lines), for tools/demo.sh.

    /usr/bin/python3 tools/demo/audit_digest.py AUDIT.jsonl [SLUICE_OUTPUT]

Prints the records by verdict and reason (with the status answered), by identity, and one
429 record in full, as a reviewer reads it: API keys never appear there, only their key_id.
With SLUICE_OUTPUT (what sluice printed, its exit summary included), also compares the
records with Sluice's requests_<reason> counters.
"""

import collections
import json
import re
import sys


def summary_counters(path: str) -> dict:
    """requests_<reason> → count from sluice's exit summary (the last value of each)."""
    counters = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.fullmatch(r"\s+requests_([a-z0-9_]+)\s+(\d+)\s*", line)
            if m:
                counters[m.group(1)] = int(m.group(2))
    return counters


def main() -> int:
    path = sys.argv[1]
    records, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                bad += 1

    print(f"audit trail {path}: {len(records)} records" +
          (f" ({bad} unreadable lines)" if bad else ""))

    print("  by verdict and reason:")
    by_reason = collections.Counter(
        (str(r.get("verdict")), str(r.get("reason")), str(r.get("status"))) for r in records)
    print(f"    {'verdict':<8} {'reason':<48} {'status':>6} {'records':>7}")
    for (verdict, reason, status), n in sorted(by_reason.items(),
                                               key=lambda item: (item[0][0], -item[1])):
        print(f"    {verdict:<8} {reason:<48} {status:>6} {n:>7}")

    print("  by identity:")
    by_identity = collections.defaultdict(collections.Counter)
    tiers, key_ids = {}, collections.defaultdict(set)
    for r in records:
        who = r.get("identity") or "(none)"
        by_identity[who][r.get("verdict")] += 1
        tiers[who] = r.get("tier") or "-"
        if r.get("key_id"):
            key_ids[who].add(r["key_id"])
    print(f"    {'identity':<10} {'tier':<10} {'admitted':>8} {'denied':>7}  key_id")
    for who in sorted(by_identity, key=lambda w: (w == "(none)", w)):
        counts = by_identity[who]
        ids = ", ".join(sorted(key_ids[who])) or "-"
        print(f"    {who:<10} {tiers[who]:<10} {counts['admit']:>8} {counts['deny']:>7}  {ids}")
    if "(none)" in by_identity:
        print("    (none): no key, or a key in no identity (its key_id still tells keys apart)")

    if len(sys.argv) > 2:
        counted = summary_counters(sys.argv[2])
        # An answer cut by a completion rule: its request was counted admitted (requests_ok)
        # and the cut apart (requests_completion_*); its one record has the cut's reason.
        for reason in [r for r in counted if r.startswith("completion_")]:
            counted["ok"] = counted.get("ok", 0) - counted[reason]
        recorded = collections.Counter(str(r.get("reason")) for r in records)
        missing = {reason: n - recorded[reason] for reason, n in counted.items()
                   if n > recorded[reason]}
        total = sum(counted.values())
        if not missing:
            print(f"  sluice counted {total} requests (requests_*): every one has its record")
        else:
            print(f"  sluice counted {total} requests (requests_*); counted but without a record:")
            for reason, n in sorted(missing.items()):
                print(f"    {reason}: {n}")

    limited = [r for r in records if r.get("status") == 429]
    if limited:
        print("  one 429 record, in full:")
        for line in json.dumps(limited[0], indent=2).splitlines():
            print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
