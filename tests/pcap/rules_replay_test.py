#!/usr/bin/python3
"""Replays chat requests of three tiers through Sluice's content rules and checks each decision.

    /usr/bin/python3 tests/pcap/rules_replay_test.py --sluice build/src/sluice \
        --sluicectl build/tools/sluicectl --workdir /tmp/rules_replay [-v]

Compiles the shipped rules (`sluicectl rules compile <repo>/rules -o WORKDIR/rules.db`),
generates the capture with make_rules_captures.py (27 sessions, one request each: 9 prompts for
each of the tiers anonymous, free and verified), runs `sluice replay --audit` on it twice and
checks:
- both runs exit 0 with `mbufs_in_use_after_run 0`; byte-identical to_client/to_server, and the
  same audit trail apart from `key_id` (keyed with a per-process secret);
- requests_content_policy_violation and requests_ok are the expected counts;
- every refused request is answered to the client by one segment that Sluice made:
  `HTTP/1.1 403`, an OpenAI error body with `"code":"content_policy_violation"`, and no rule id
  anywhere in it (disclose_rule_id is off by default); the server gets one RST for that flow
  and not the request's last segment (the deciding one);
- the client frames that must pass reach the server (and no others of a refused flow), every
  admitted request's bytes reach the server intact;
- the audit trail: one record per request, matched by client port, with the expected verdict,
  status, reason, tier and identity; `rules[0]` of the expected family for refusals and flagged
  admissions (`cap.malware-code.verified` for the verified tier's keylogger request), `rules == []`
  for clean admissions.
Then once more with `disclose_rule_id: true` (WORKDIR/disclose): every 403's message names the
rule id that the audit record names first.
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admission_test as at  # noqa: E402
import make_captures as mc  # noqa: E402
import make_rules_captures as mrc  # noqa: E402
from admission_test import RST, Checks, Frame, flow_of, frames  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compile_rules(sluicectl: str, out: str, *extra: str) -> str | None:
    """Compiles <repo>/rules and the EXTRA rule files into OUT; returns an error or None."""
    cmd = [sluicectl, "rules", "compile", os.path.join(REPO, "rules"), *extra, "-o", out]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        return "sluicectl rules compile ran over 240 s"
    if proc.returncode != 0 or not os.path.isfile(out):
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        return f"`{' '.join(cmd)}` exited {proc.returncode}: {' / '.join(tail)}"
    return None


def rule_ids() -> set[str]:
    ids = set()
    for name in os.listdir(os.path.join(REPO, "rules")):
        if name.endswith(".yaml"):
            for line in open(os.path.join(REPO, "rules", name), encoding="utf-8"):
                if line.strip().startswith("- id:"):
                    ids.add(line.split(":", 1)[1].strip())
    return ids


def answers_and_rsts(to_client: list[Frame], to_server: list[Frame], inputs: list[Frame]):
    """Sluice's own frames (not in the input), by client port."""
    known = {f.data for f in inputs}
    answers: dict[int, list[Frame]] = {}
    rsts: dict[int, list[Frame]] = {}
    other: list[str] = []
    for f in to_client:
        if f.data not in known:
            port, direction = flow_of(f)
            if direction == "to_client" and f.p.payload_len:
                answers.setdefault(port, []).append(f)
            else:
                other.append(f"to_client: frame to port {f.p.dport} flags 0x{f.p.flags:02x}")
    for f in to_server:
        if f.data not in known:
            port, direction = flow_of(f)
            if direction == "to_server" and f.p.flags & RST and not f.p.payload_len:
                rsts.setdefault(port, []).append(f)
            else:
                other.append(f"to_server: frame from port {f.p.sport} flags 0x{f.p.flags:02x}")
    return answers, rsts, other


def check_packets(expected: dict, inputs: list[Frame], to_client: list[Frame],
                  to_server: list[Frame], ids: set[str], checks: Checks) -> None:
    answers, rsts, other = answers_and_rsts(to_client, to_server, inputs)
    checks.report("no_other_sluice_frames", other)
    sessions = {s["client_port"]: s for s in expected["sessions"]}

    # What passes to the server: the client frames before a refusal's deciding frame.
    want, forbidden = set(), set()
    for s in expected["sessions"]:
        stop = s["denied_at_frame"]
        for i in s["client_frames"]:
            (want if stop is None or i < stop else forbidden).add(i)
    index_of = {f.data: n for n, f in enumerate(inputs)}
    got = {index_of[f.data] for f in to_server if f.data in index_of}
    problems = [f"input frame {i} (client port {flow_of(inputs[i])[0]}) not forwarded"
                for i in sorted(want - got)]
    problems += [f"input frame {i} (client port {flow_of(inputs[i])[0]}) forwarded after the "
                 "refusal" for i in sorted(got & forbidden)]
    checks.report("to_server_forwarded", problems)

    problems = []
    for req in expected["requests"]:
        if req["verdict"] != "admit":
            continue
        s = sessions[req["client_port"]]
        isn = inputs[s["client_frames"][0]].p.seq
        stream = bytearray()
        for f in sorted((f for f in to_server
                         if flow_of(f) == (req["client_port"], "to_server") and f.payload),
                        key=lambda f: (f.p.seq - isn - 1) % mc.MOD32):
            off = (f.p.seq - isn - 1) % mc.MOD32
            if off > len(stream):
                break
            stream += f.payload[len(stream) - off:]
        wire = b"".join(inputs[i].payload for i in req["frames"])
        if bytes(stream[:len(wire)]) != wire:
            problems.append(f"{req['label']}: its {len(wire)} bytes did not reach the server intact")
    checks.report("admitted_requests_reach_server", problems)

    for req in expected["requests"]:
        port = req["client_port"]
        p = []
        if req["verdict"] == "admit":
            if port in answers or port in rsts:
                p.append("an admitted request's flow got an answer or a RST from Sluice")
            if p:
                checks.report(f"admitted_{req['label']}", p)
            continue
        mine = answers.get(port, [])
        if len(mine) != 1:
            p.append(f"{len(mine)} answers from Sluice to the client, expected 1")
        if mine:
            status_line, headers, body, hp = at.parse_answer(mine[0].payload)
            p += hp
            # A refusal by a rule is 403 content_policy_violation; one by an earlier layer (a
            # JSON body Sluice will not read) has its own status and reason.
            status, code = req["status"], req["reason"]
            if not status_line.startswith(f"HTTP/1.1 {status} "):
                p.append(f"status line {status_line!r}, expected HTTP/1.1 {status} …")
            try:
                error = json.loads(body)["error"]
                if error.get("code") != code:
                    p.append(f"body code {error.get('code')!r}")
            except (ValueError, KeyError, TypeError) as e:
                p.append(f"body {body[:120]!r} is not an OpenAI error object ({e!r})")
            if f'"code":"{code}"'.encode() not in body:
                p.append(f'the body lacks "code":"{code}"')
            leaked = sorted(i for i in ids if i.encode() in mine[0].payload)
            if leaked:
                p.append(f"the answer names rule ids {leaked} (disclose_rule_id is off)")
        if len(rsts.get(port, [])) != 1:
            p.append(f"{len(rsts.get(port, []))} RSTs toward the server, expected 1")
        last = inputs[req["last_frame"]]
        if any(f.data == last.data for f in to_server):
            p.append(f"the request's last segment (input frame {req['last_frame']}) reached the "
                     "server")
        checks.report(f"refused_{req['label']}", p)


def match_records(expected: dict, records: list[dict], checks: Checks) -> dict[str, dict]:
    problems = []
    if len(records) != len(expected["requests"]):
        problems.append(f"{len(records)} records, expected {len(expected['requests'])}")
    by_port: dict[int, list[dict]] = {}
    for rec in records:
        try:
            port = int(str(rec["flow"]["src"]).rsplit(":", 1)[1])
        except (KeyError, TypeError, ValueError, IndexError):
            port = -1
        by_port.setdefault(port, []).append(rec)
    matched = {}
    for req in expected["requests"]:
        got = by_port.pop(req["client_port"], [])
        if len(got) != 1:
            problems.append(f"{req['label']}: {len(got)} records, expected 1")
        if got:
            matched[req["label"]] = got[0]
    for port, recs in sorted(by_port.items()):
        problems.append(f"{len(recs)} records for client port {port}, not in the capture")
    checks.report("audit_one_record_per_request", problems)
    return matched


def check_audit(expected: dict, records: list[dict], checks: Checks) -> None:
    matched = match_records(expected, records, checks)
    problems = []
    for req in expected["requests"]:
        rec = matched.get(req["label"])
        if rec is None:
            continue
        p = []
        for name in ("verdict", "status", "reason", "tier", "identity", "model"):
            if rec.get(name) != req[name]:
                p.append(f"{name} {rec.get(name)!r}, expected {req[name]!r}")
        rules, family = rec.get("rules"), req["rule_family"]
        if family is None:
            if rules != []:
                p.append(f"rules {rules!r}, expected []")
        elif not (isinstance(rules, list) and rules and isinstance(rules[0], str)
                  and rules[0].startswith(family)):
            p.append(f"rules {rules!r}, expected rules[0] starting with {family!r}")
        if p:
            problems.append(f"{req['label']}: " + ", ".join(p))
    checks.report("audit_fields", problems)


def check_disclosed(expected: dict, records: list[dict], to_client: list[Frame],
                    to_server: list[Frame], inputs: list[Frame], checks: Checks) -> None:
    matched = match_records(expected, records, checks)
    answers, _, _ = answers_and_rsts(to_client, to_server, inputs)
    problems = []
    refused = [r for r in expected["requests"] if r["verdict"] == "deny"]
    for req in refused:
        rec = matched.get(req["label"])
        mine = answers.get(req["client_port"], [])
        if rec is None or not rec.get("rules") or len(mine) != 1:
            problems.append(f"{req['label']}: no audit rule or no single answer")
            continue
        rule = rec["rules"][0]
        _, _, body, _ = at.parse_answer(mine[0].payload)
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = ""
        if not rule.startswith(req["rule_family"]) or rule not in message:
            problems.append(f"{req['label']}: message {message!r} does not name {rule!r}")
    if not refused:
        problems.append("no refused request")
    checks.report("disclose_rule_id_names_rule", problems)


def prepare(sluicectl: str, workdir: str, disclose: bool, checks: Checks, name: str) -> dict | None:
    expected = mrc.generate(workdir, mc.BASE_TS_US, disclose)
    error = compile_rules(sluicectl, os.path.join(workdir, "rules.db"))
    checks.report(name, [error] if error else [])
    return None if error else expected


def main() -> int:
    begun = at.start("Sluice content rules across tiers, through replay")
    if begun is None:
        return 2
    args, sluice, sluicectl, checks, started = begun
    workdir = os.path.abspath(args.workdir)
    expected = prepare(sluicectl, workdir, False, checks, "rules_compile")
    if expected is None:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    inputs = frames(os.path.join(workdir, "in.pcap"))
    if len(inputs) != expected["packets"]:
        checks.report("capture", [f"in.pcap has {len(inputs)} frames, expected {expected['packets']}"])

    first = at.replay_twice(sluice, workdir, checks)
    if first is None:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    counts = expected["request_counts"]
    problems = at.check_counters(first["counters"], counts)
    for name in ("requests_content_policy_violation", "requests_ok"):
        if first["counters"].get(name) != counts.get(name):
            problems.append(f"{name} = {first['counters'].get(name)}, expected {counts.get(name)}")
    checks.report("request_counters", sorted(set(problems)))

    ids = rule_ids()
    try:
        to_client = frames(os.path.join(first["dir"], "to_client.pcap"))
        to_server = frames(os.path.join(first["dir"], "to_server.pcap"))
    except (OSError, ValueError) as e:
        checks.report("outputs", [str(e)])
    else:
        check_packets(expected, inputs, to_client, to_server, ids, checks)
    records, _, problems = at.read_audit(os.path.join(first["dir"], "audit.jsonl"))
    if problems:
        checks.report("audit_json", problems)
    check_audit(expected, records, checks)

    # Once more with disclose_rule_id: true.
    ddir = os.path.join(workdir, "disclose")
    dexp = prepare(sluicectl, ddir, True, checks, "rules_compile_disclose")
    if dexp is not None:
        run = at.replay(sluice, ddir, "run1")
        checks.report("replay_disclose", [run["error"]] if run["error"] else [])
        try:
            dc = frames(os.path.join(run["dir"], "to_client.pcap"))
            ds = frames(os.path.join(run["dir"], "to_server.pcap"))
            drec, _, problems = at.read_audit(os.path.join(run["dir"], "audit.jsonl"))
        except (OSError, ValueError) as e:
            checks.report("outputs_disclose", [str(e)])
        else:
            check_disclosed(dexp, drec, dc, ds, frames(os.path.join(ddir, "in.pcap")), checks)

    if args.verbose:
        print(f"({time.monotonic() - started:.1f} s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
