#!/usr/bin/python3
"""A replay under load with a rules reload mid-way loses no packet and decides each request under
the policy its head was read with.

    /usr/bin/python3 tests/pcap/reload_replay_test.py --sluice build/src/sluice \\
        --sluicectl build/tools/sluicectl --workdir /tmp/reload_replay [-v]

Generates the capture with make_reload_captures.py (240 keep-alive sessions of three tiers, 700
chat requests; at the reload point about 75 requests are between head and end), compiles
WORKDIR/rules.db and rules_again.db from the shipped rules/ and marker.db from rules/ plus
extra/marker.yaml (`test.reload-marker` blocks `zebrafinch-marker`), then replays it with
`sluice replay --audit` six times: without a reload (`norel`), and with `--reload-at N[:CONFIG]`
before the reload packet N to config_again.yaml (`same`), to the --config file re-read (`reread`),
to config_marker.yaml (`marker`, twice), and to two broken configs (`broken`). Checks:
- every run exits 0 with `mbufs_in_use_after_run 0` and the policy_reloads /
  policy_reload_failures / policy_switches it should report (1 / 0 / 1 for a reload done);
- norel decides as expected: jailbreaks 403 (`jb.`), every other request admitted, `rules: []`;
- same, reread, broken: to_client/to_server byte-identical to norel, and the audit trails equal
  apart from key_id (keyed with a per-process secret);
- broken: both reloads refused with `reload at packet N failed, the running policy stays:`,
  naming the file that is not a database, and FILE:LINE:COL of the bad YAML value;
- marker (deterministic over two runs): every request whose head was read before the reload
  packet is decided as in norel (the old database: marker requests admitted, `rules: []`, those
  with the marker in a body segment after the reload point too); every marker request whose head
  is completed at or after it is refused 403 content_policy_violation, `rules[0] ==
  "test.reload-marker"`, answered by one Sluice segment, one RST to the server, its deciding
  segment never forwarded; every other request's audit record equals norel's (but key_id, seq);
  every session without such a refusal gets exactly norel's frames both ways (bytes, order,
  timestamps), the refused ones norel's frames up to the deciding segment plus the answer and the
  RST; every admitted request's bytes reach the server intact.
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admission_test as at  # noqa: E402
import make_captures as mc  # noqa: E402
import make_reload_captures as mrl  # noqa: E402
import rules_replay_test as rrt  # noqa: E402
from admission_test import RST, Checks, Frame, flow_of, frames  # noqa: E402

# run → (the reload arguments, given the reload packet N and the workdir; then the expected
# policy_reloads, policy_reload_failures and policy_switches)
RUNS = {
    "norel": (lambda n, w: [], 0, 0, 0),
    "same": (lambda n, w: ["--reload-at", f"{n}:{w}/config_again.yaml"], 1, 0, 1),
    "reread": (lambda n, w: ["--reload-at", str(n)], 1, 0, 1),
    "marker": (lambda n, w: ["--reload-at", f"{n}:{w}/config_marker.yaml"], 1, 0, 1),
    "marker2": (lambda n, w: ["--reload-at", f"{n}:{w}/config_marker.yaml"], 1, 0, 1),
    "broken": (lambda n, w: ["--reload-at", f"{n}:{w}/broken_rules.yaml",
                             "--reload-at", f"{n + 100}:{w}/broken_yaml.yaml"], 0, 2, 0),
}


def refused_after_reload(req: dict) -> bool:
    return req["marker"] and not req["head_before_reload"]


def by_request(expected: dict, records: list[dict]) -> tuple[dict[str, dict], list[str]]:
    """Records matched to requests by client port and order within the session."""
    by_port: dict[int, list[dict]] = {}
    for rec in records:
        try:
            port = int(str(rec["flow"]["src"]).rsplit(":", 1)[1])
        except (KeyError, TypeError, ValueError, IndexError):
            port = -1
        by_port.setdefault(port, []).append(rec)
    matched, problems = {}, []
    for s in expected["sessions"]:
        got = by_port.pop(s["client_port"], [])
        if len(got) != len(s["requests"]):
            problems.append(f"{s['name']}: {len(got)} records, expected {len(s['requests'])}")
        matched.update(zip(s["requests"], got))
    for port, recs in sorted(by_port.items()):
        problems.append(f"{len(recs)} records for client port {port}, not in the capture")
    return matched, problems


def without(rec: dict | None, *names: str) -> dict | None:
    return None if rec is None else {k: v for k, v in rec.items() if k not in names}


def frames_by_port(out: list[Frame]) -> dict[int, list[Frame]]:
    grouped: dict[int, list[Frame]] = {}
    for f in out:
        grouped.setdefault(flow_of(f)[0], []).append(f)
    return grouped


def check_baseline(expected: dict, run: dict, records: dict[str, dict], checks: Checks) -> None:
    want = {"requests_ok": 0, "requests_content_policy_violation": 0}
    problems = []
    for req in expected["requests"]:
        deny = req["jailbreak"]
        want["requests_content_policy_violation" if deny else "requests_ok"] += 1
        rec = records.get(req["label"])
        if rec is None:
            continue
        status = 403 if deny else 200 if req["answered"] else 0
        got = (rec.get("verdict"), rec.get("status"), rec.get("tier"), rec.get("identity"))
        wanted = ("deny" if deny else "admit", status, req["tier"], req["identity"])
        rules = rec.get("rules")
        if got != wanted:
            problems.append(f"{req['label']}: {got}, expected {wanted}")
        elif deny and not (rules and str(rules[0]).startswith("jb.")):
            problems.append(f"{req['label']}: rules {rules!r}, expected a jb. rule first")
        elif not deny and rules != []:
            problems.append(f"{req['label']}: rules {rules!r}, expected []")
    problems += at.check_counters(run["counters"], want)
    checks.report("norel_decisions", problems)


def check_broken_messages(expected: dict, run: dict, checks: Checks) -> None:
    n = expected["reload_packet"]
    lines = run["stderr"].splitlines()
    stays = "failed, the running policy stays: "
    wanted = [(f"sluice replay: reload at packet {n} {stays}", re.compile(r"not-a-database\.db: ")),
              (f"sluice replay: reload at packet {n + 100} {stays}",
               re.compile(r"broken_yaml\.yaml:\d+:\d+: tiers\.free\.requests_per_second: "))]
    problems = []
    for prefix, detail in wanted:
        line = next((x for x in lines if x.startswith(prefix)), None)
        if line is None:
            problems.append(f"no line starting {prefix!r} in stderr {lines[-3:]!r}")
        elif not detail.search(line[len(prefix):]):
            problems.append(f"{line!r} does not match {detail.pattern!r}")
    checks.report("broken_reload_refused_with_reason", problems)


def check_marker_decisions(expected: dict, marker: dict[str, dict], norel: dict[str, dict],
                           checks: Checks) -> None:
    before, mid, after, others = [], [], [], []
    counts = {"before": 0, "mid": 0, "after": 0, "others": 0}
    for req in expected["requests"]:
        label = req["label"]
        rec = marker.get(label)
        if rec is None:
            continue
        if refused_after_reload(req):
            counts["after"] += 1
            got = (rec.get("verdict"), rec.get("status"), rec.get("reason"))
            rules = rec.get("rules") or [None]
            want = ("deny", 403, "content_policy_violation")
            if got != want or rules[0] != expected["marker_rule"]:
                after.append(f"{label}: {got}, rules {rec.get('rules')!r}")
            continue
        # prev: the chain link covers key_id and seq, which differ.
        same = (without(rec, "key_id", "seq", "prev") ==
                without(norel.get(label), "key_id", "seq", "prev"))
        if req["head_before_reload"]:
            counts["before"] += 1
            if not same:
                before.append(f"{label}: record differs from norel's")
            if req["marker"] and (rec.get("verdict"), rec.get("rules")) != ("admit", []):
                before.append(f"{label} (marker): {rec.get('verdict')}, rules {rec.get('rules')!r}")
            if req["marker"] and req["mid_body_at_reload"]:
                counts["mid"] += 1
                if (rec.get("verdict"), rec.get("status"), rec.get("rules")) != ("admit", 200, []):
                    mid.append(f"{label}: {rec.get('verdict')} {rec.get('status')}, rules "
                               f"{rec.get('rules')!r}")
        else:
            counts["others"] += 1
            if not same:
                others.append(f"{label}: record differs from norel's")
    checks.report(f"marker_heads_before_reload_old_db ({counts['before']} requests)", before)
    checks.report(f"marker_mid_body_markers_admitted ({counts['mid']} requests)",
                  mid + ([] if counts["mid"] else ["none"]))
    checks.report(f"marker_heads_after_reload_refused ({counts['after']} requests)",
                  after + ([] if counts["after"] else ["none"]))
    checks.report(f"marker_other_requests_as_norel ({counts['others']} requests)", others)


def check_marker_packets(expected: dict, inputs: list[Frame], marker: dict, norel: dict,
                         checks: Checks) -> None:
    known = {f.data for f in inputs}
    refused = {r["client_port"]: r for r in expected["requests"] if refused_after_reload(r)}
    flow_problems, refusal_problems = [], []
    for s in expected["sessions"]:
        port = s["client_port"]
        mc_, nc = marker["to_client"].get(port, []), norel["to_client"].get(port, [])
        ms, ns = marker["to_server"].get(port, []), norel["to_server"].get(port, [])
        req = refused.get(port)
        if req is None:
            if [(f.ts, f.data) for f in ms] != [(f.ts, f.data) for f in ns]:
                flow_problems.append(f"{s['name']}: to_server {len(ms)} frames, norel {len(ns)}, "
                                     "or they differ")
            if [(f.ts, f.data) for f in mc_] != [(f.ts, f.data) for f in nc]:
                flow_problems.append(f"{s['name']}: to_client {len(mc_)} frames, norel {len(nc)}, "
                                     "or they differ")
            continue
        deciding = inputs[req["last_frame"]].data
        cut = next((i for i, f in enumerate(ns) if f.data == deciding), None)
        p = []
        if cut is None:
            p.append("norel did not forward the deciding segment")
        elif [f.data for f in ms[:-1]] != [f.data for f in ns[:cut]]:
            p.append(f"to_server: {len(ms) - 1} forwarded frames, expected norel's {cut} before "
                     "the deciding segment")
        if not ms or ms[-1].data in known or not ms[-1].p.flags & RST or ms[-1].p.payload_len:
            p.append("to_server does not end with one RST from Sluice")
        if [f.data for f in mc_[:-1]] != [f.data for f in nc]:
            p.append(f"to_client: {len(mc_) - 1} frames before the answer, norel {len(nc)}")
        if not mc_ or mc_[-1].data in known:
            p.append("to_client does not end with an answer from Sluice")
        else:
            status_line, _, body, hp = at.parse_answer(mc_[-1].payload)
            p += hp
            if not status_line.startswith("HTTP/1.1 403 "):
                p.append(f"answer {status_line!r}")
            if b'"code":"content_policy_violation"' not in body:
                p.append("the answer lacks \"code\":\"content_policy_violation\"")
        if p:
            refusal_problems.append(f"{req['label']}: " + ", ".join(p))
    checks.report(f"marker_sessions_frames_as_norel ({len(expected['sessions']) - len(refused)} "
                  "sessions)", flow_problems)
    checks.report(f"marker_refusals_on_the_wire ({len(refused)} sessions)", refusal_problems)

    problems = []
    first_seq = {s["client_port"]: inputs[s["client_frames"][0]].p.seq
                 for s in expected["sessions"]}
    for req in expected["requests"]:
        if req["jailbreak"] or refused_after_reload(req):
            continue
        isn = first_seq[req["client_port"]]
        stream = bytearray()
        mine = [f for f in marker["to_server"].get(req["client_port"], []) if f.payload]
        for f in sorted(mine, key=lambda f: (f.p.seq - isn - 1) % mc.MOD32):
            off = (f.p.seq - isn - 1) % mc.MOD32
            if off > len(stream):
                break
            stream += f.payload[len(stream) - off:]
        wire = b"".join(inputs[i].payload for i in req["frames"])
        start = (inputs[req["frames"][0]].p.seq - isn - 1) % mc.MOD32
        if bytes(stream[start:start + len(wire)]) != wire:
            problems.append(f"{req['label']}: its {len(wire)} bytes did not reach the server "
                            "intact")
    checks.report("marker_admitted_requests_reach_server", problems)


def check_capture(expected: dict, inputs: list[Frame], checks: Checks) -> None:
    reqs = expected["requests"]
    problems = []
    if len(inputs) != expected["packets"]:
        problems.append(f"in.pcap has {len(inputs)} frames, expected {expected['packets']}")
    mid = sum(r["mid_body_at_reload"] for r in reqs)
    if mid < 50:
        problems.append(f"{mid} requests mid-body at the reload point, expected >= 50")
    n = expected["reload_packet"] - 1
    kinds = {
        "marker before the reload point": [r for r in reqs if r["marker"] and r["last_frame"] < n],
        "marker mid-body": [r for r in reqs if r["marker"] and r["mid_body_at_reload"]],
        "marker with half a head": [r for r in reqs if r["marker"] and r["frames"][0] < n
                                    <= r["head_frame"]],
        "marker after the reload point": [r for r in reqs if r["marker"] and r["frames"][0] >= n],
    }
    for kind, found in kinds.items():
        if len(found) < 2:
            problems.append(f"{len(found)} requests: {kind}, expected >= 2")
    checks.report(f"capture ({len(inputs)} packets, {len(reqs)} requests, {mid} mid-body at "
                  f"packet {n + 1})", problems)


def main() -> int:
    begun = at.start("Sluice replay with a rules reload mid-way")
    if begun is None:
        return 2
    args, sluice, sluicectl, checks, started = begun
    workdir = os.path.abspath(args.workdir)
    expected = mrl.generate(workdir)
    errors = [rrt.compile_rules(sluicectl, os.path.join(workdir, name), *extra) for name, extra in
              (("rules.db", ()), ("rules_again.db", ()),
               ("marker.db", (os.path.join(workdir, "extra", "marker.yaml"),)))]
    if not checks.report("rules_compile", [e for e in errors if e]):
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    inputs = frames(os.path.join(workdir, "in.pcap"))
    check_capture(expected, inputs, checks)

    n = expected["reload_packet"]
    runs, records = {}, {}
    for name, (extra, reloads, failures, switches) in RUNS.items():
        run = at.replay(sluice, workdir, name, extra(n, workdir))
        runs[name] = run
        problems = [run["error"]] if run["error"] else []
        for gauge, want in (("policy_reloads", reloads), ("policy_reload_failures", failures),
                            ("policy_switches", switches)):
            if run["counters"].get(gauge) != want:
                problems.append(f"{gauge} = {run['counters'].get(gauge)}, expected {want}")
        checks.report(f"replay_{name}", problems)
        recs, _, problems = at.read_audit(os.path.join(run["dir"], "audit.jsonl"))
        records[name], more = by_request(expected, recs)
        if problems + more:
            checks.report(f"audit_{name}", problems + more)
    if runs["norel"]["error"]:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1

    check_baseline(expected, runs["norel"], records["norel"], checks)
    for name in ("same", "reread", "broken"):
        pcap_problems, audit_problems = at.check_determinism(runs["norel"], runs[name])
        checks.report(f"{name}_outputs_as_norel", pcap_problems)
        checks.report(f"{name}_audit_as_norel", audit_problems)
    check_broken_messages(expected, runs["broken"], checks)

    pcap_problems, audit_problems = at.check_determinism(runs["marker"], runs["marker2"])
    checks.report("marker_deterministic", pcap_problems + audit_problems)
    check_marker_decisions(expected, records["marker"], records["norel"], checks)
    outputs = {}
    try:
        for name in ("marker", "norel"):
            outputs[name] = {side: frames_by_port(frames(os.path.join(runs[name]["dir"],
                                                                      f"{side}.pcap")))
                             for side in ("to_client", "to_server")}
    except (OSError, ValueError) as e:
        checks.report("outputs", [str(e)])
    else:
        check_marker_packets(expected, inputs, outputs["marker"], outputs["norel"], checks)

    if args.verbose:
        print(f"({time.monotonic() - started:.1f} s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
