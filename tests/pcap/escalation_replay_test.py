#!/usr/bin/python3
"""Replays flagged traffic through Sluice's graduated response (escalation) and checks it.

    /usr/bin/python3 tests/pcap/escalation_replay_test.py --sluice build/src/sluice \
        --sluicectl build/tools/sluicectl --workdir /tmp/escalation_replay [-v]

Compiles the shipped rules (`sluicectl rules compile <repo>/rules -o WORKDIR/rules.db`),
generates the capture with make_escalation_captures.py (identities acme, bob, carol of tier
verified and an unknown key in tier free; escalation verified → free after 3 flags in 10 min
for 1 h, free → suspended after 2 flags in 10 min for 30 min; 35 minutes of capture time),
checks that `sluice --check-config` names the chain, runs `sluice replay --audit` twice and
checks:
- both runs exit 0 with `mbufs_in_use_after_run 0`; byte-identical to_client/to_server, and the
  same audit trail apart from `key_id`; the requests_* counters;
- the packets (admission_test.check_packets): to_server is exactly the client frames that must
  pass plus one RST per refused flow, at the server's RCV.NXT; to_client exactly the server's
  frames plus one answer per refusal; a refused request's deciding segment (the head for
  identity_suspended) and every later segment of it never reach the server; every admitted
  request reaches it intact; each answer is FIN|PSH|ACK at the client's expected seq with the
  status line (403), content-type, content-length, connection: close and the OpenAI error body
  whose code is model_not_allowed or identity_suspended;
- the audit trail: exactly the expected records in the expected order (escalate records at the
  tipping request's last segment, refusals when decided, admissions when their response ends);
  per identity the sequence of (verdict, reason, tier, status, rules, until − ts): escalate
  records `demoted`/free/+1 h and `suspended`/null/+30 min, with the rules of the tipping
  request and its flow, key id and decision time; requests answered while demoted in tier free;
  bob (flags 6 minutes apart), the anonymous tier and carol's requests admitted after her
  escalation never escalate; carol's five concurrent flags escalate exactly once.
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import calendar
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admission_test as at  # noqa: E402
import make_captures as mc  # noqa: E402
import make_escalation_captures as mec  # noqa: E402
import rules_replay_test as rrt  # noqa: E402
from admission_test import Checks, Frame, frames  # noqa: E402

TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z")


def iso_ms(text) -> int | None:
    """Milliseconds since the epoch of an audit timestamp, or None."""
    m = TS.fullmatch(str(text))
    if not m:
        return None
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) * 1000 + int(m.group(2))


def check_config(sluice: str, workdir: str, want: str, checks: Checks) -> None:
    config = os.path.join(workdir, "config.yaml")
    try:
        proc = subprocess.run([sluice, "--check-config", "--config", config],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        checks.report("check_config_names_chain", ["sluice --check-config ran over 60 s"])
        return
    p = []
    if proc.returncode != 0:
        p.append(f"exited {proc.returncode}: {proc.stderr.strip()[-200:]}")
    elif "valid" not in proc.stdout or want not in proc.stdout:
        p.append(f"printed {proc.stdout.strip()!r}, expected it to name {want!r}")
    checks.report("check_config_names_chain", p)


def row(r: dict) -> tuple:
    """What the per-identity sequence compares (rules as a set: their order is the scan's)."""
    until = r.get("until_minus_ts_ms")
    if "kind" not in r:  # an audit record
        until = None
        if r.get("verdict") == "escalate":
            u, t = iso_ms(r.get("until")), iso_ms(r.get("ts"))
            until = u - t if u is not None and t is not None else r.get("until")
    return (r.get("verdict"), r.get("reason"), r.get("tier"), r.get("status"),
            tuple(sorted(r.get("rules") or [])), until)


def check_audit(expected: dict, records: list[dict], inputs: list[Frame], checks: Checks) -> None:
    want = expected["records"]
    problems = []
    if len(records) != len(want):
        problems.append(f"{len(records)} records, expected {len(want)}")
    seqs = [r.get("seq") for r in records]
    if seqs != list(range(len(records))):
        problems.append(f"seq values {seqs[:8]}…, expected 0, 1, 2, … in file order")
    checks.report("audit_record_count", problems)

    # Per identity, the exact sequence.
    identities = list(dict.fromkeys(r["identity"] for r in want))
    for identity in identities:
        w = [row(r) for r in want if r["identity"] == identity]
        g = [row(r) for r in records if r.get("identity") == identity]
        p = []
        if g != w:
            at_ = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
            p.append(f"record {at_} of {len(g)} is {g[at_] if at_ < len(g) else 'missing'}, "
                     f"expected {w[at_] if at_ < len(w) else 'none'} (of {len(w)})")
        checks.report(f"audit_sequence_{identity or 'anonymous'}", p)
    others = sorted({str(r.get("identity")) for r in records} - {str(i) for i in identities})
    checks.report("audit_no_other_identity", [f"records of {others}"] if others else [])

    # The whole trail in decision order, and each record's flow, time and key id.
    problems = []
    got = [(port_of(r), r.get("verdict")) for r in records]
    order = [(r["client_port"], r["verdict"]) for r in want]
    if got != order:
        at_ = next((i for i, (a, b) in enumerate(zip(got, order)) if a != b),
                   min(len(got), len(order)))
        problems.append(f"record {at_} is (client port, verdict) "
                        f"{got[at_] if at_ < len(got) else 'missing'}, expected "
                        f"{order[at_] if at_ < len(order) else 'none'} ({want[at_]['label']})"
                        if at_ < len(want) else f"{len(got) - len(want)} records more")
    checks.report("audit_order", problems)
    if got != order:
        return
    problems = []
    key_ids: dict = {}
    request_rules = {}
    for r, w in zip(records, want):
        p = []
        ts = at.rfc3339_ms(inputs[w["ts_frame"]].ts)
        if r.get("ts") != ts:
            p.append(f"ts {r.get('ts')}, expected {ts}")
        key_id = r.get("key_id")
        if not re.fullmatch(r"[0-9a-f]{12}", str(key_id)):
            p.append(f"key_id {key_id!r}")
        key_ids.setdefault(w["identity"], set()).add(key_id)
        if r.get("rules") is None or sorted(r["rules"]) != sorted(w["rules"]):
            p.append(f"rules {r.get('rules')!r}, expected {w['rules']!r}")
        if w["kind"] == "request":
            request_rules[w["label"]] = r.get("rules")
        else:
            if (r.get("method"), r.get("path")) != ("POST", "/v1/chat/completions"):
                p.append(f"method/path {r.get('method')} {r.get('path')}")
            if "until" not in r:
                p.append("no until")
        if w["kind"] != "escalate" and "until" in r:
            p.append(f"until {r['until']!r} on a {r.get('verdict')} record")
        if p:
            problems.append(f"{w['label']} ({w['kind']}): " + ", ".join(p))
    for w, r in zip(want, records):  # the escalation names the tipping request's rules, in order
        if w["kind"] == "escalate" and r.get("rules") != request_rules.get(w["label"]):
            problems.append(f"{w['label']}: escalate rules {r.get('rules')}, the request's "
                            f"{request_rules.get(w['label'])}")
    for identity, ids in key_ids.items():
        if len(ids) != 1:
            problems.append(f"{identity}: key ids {sorted(map(str, ids))}, one key sent")
    checks.report("audit_fields", problems)

    # What the scenario is about, said once more in words.
    escalations = [(w["identity"], r.get("reason")) for r, w in zip(records, want)
                   if r.get("verdict") == "escalate"]
    p = []
    for identity, reasons in (("acme", ["demoted", "suspended"]), ("bob", []), (None, []),
                              ("carol", ["demoted", "suspended"])):
        got_reasons = [reason for i, reason in escalations if i == identity]
        if got_reasons != reasons:
            p.append(f"{identity or 'anonymous'}: escalations {got_reasons}, expected {reasons}")
    checks.report("escalations_exactly", p)


def port_of(rec: dict) -> int:
    try:
        return int(str(rec["flow"]["src"]).rsplit(":", 1)[1])
    except (KeyError, TypeError, ValueError, IndexError):
        return -1


def main() -> int:
    begun = at.start("Sluice graduated response, through replay")
    if begun is None:
        return 2
    args, sluice, sluicectl, checks, started = begun
    workdir = os.path.abspath(args.workdir)
    expected = mec.generate(workdir, mc.BASE_TS_US)
    error = rrt.compile_rules(sluicectl, os.path.join(workdir, "rules.db"))
    if not checks.report("rules_compile", [error] if error else []):
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    check_config(sluice, workdir, expected["escalation_summary"], checks)
    inputs = frames(os.path.join(workdir, "in.pcap"))
    if len(inputs) != expected["packets"]:
        checks.report("capture", [f"in.pcap has {len(inputs)} frames, expected "
                                  f"{expected['packets']}"])

    first = at.replay_twice(sluice, workdir, checks)
    if first is None:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    checks.report("request_counters", at.check_counters(first["counters"],
                                                        expected["request_counts"]))
    try:
        to_client = frames(os.path.join(first["dir"], "to_client.pcap"))
        to_server = frames(os.path.join(first["dir"], "to_server.pcap"))
    except (OSError, ValueError) as e:
        checks.report("outputs", [str(e)])
    else:
        at.check_packets(expected, inputs, to_client, to_server, checks)
    records, _, problems = at.read_audit(os.path.join(first["dir"], "audit.jsonl"))
    if problems:
        checks.report("audit_json", problems)
    check_audit(expected, records, inputs, checks)

    if args.verbose:
        print(f"({time.monotonic() - started:.1f} s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
