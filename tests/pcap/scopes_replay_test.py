#!/usr/bin/python3
"""Replays answers and request heads through Sluice's `completion` and `header:<name>` rules.

    /usr/bin/python3 tests/pcap/scopes_replay_test.py --sluice build/src/sluice \
        --sluicectl build/tools/sluicectl --workdir /tmp/scopes_replay [-v]

Generates the capture with make_scopes_captures.py (18 sessions: 6 per tier anonymous, free,
verified), compiles the shipped rules plus the test's header rule (`sluicectl rules compile
<repo>/rules WORKDIR/extra/scanner.yaml -o WORKDIR/rules.db`), runs `sluice replay --audit` on it
twice and checks:
- both runs exit 0 with `mbufs_in_use_after_run 0`; byte-identical to_client/to_server, and the
  same audit trail apart from `key_id`; the requests_* counters;
- to_server is exactly the client frames that must pass, in input order, plus Sluice's RSTs;
  to_client exactly the server frames that must pass plus Sluice's segments. A flow stops at its
  deciding frame: the server segment that completed a completion match, or the client segment
  that completed a refused head; neither it nor anything after it on the flow passes;
- a cut stream: one segment from Sluice, FIN|PSH|ACK at the seq where the forwarded stream
  stopped; appended to what the client got, the response is a well-formed chunked body (strictly
  de-chunked, ending with the last chunk), its SSE events all parse (every data JSON), the last
  is `event: error` with code completion_policy_violation, the deltas before it are a prefix of
  the host's and never hold a whole private key header;
- a cut plain answer (JSON, gzip JSON): a RST to the client at its RCV.NXT, no payload;
- a refused head: one 403 content_policy_violation answer, FIN|PSH|ACK, no rule id in it;
- every cut or refusal: one RST|ACK to the server at its RCV.NXT (RFC 5961 §3.2);
- the audit trail: one record per request, in decision order, with the expected verdict,
  status (the host's 200 for a cut answer), reason, tier, identity, model, rules (exactly:
  the deciding rule, the shadow rule, or none), `ts` of the head, usage and charge (a cut answer
  charges its reservation).
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admission_test as at  # noqa: E402
import make_captures as mc  # noqa: E402
import make_scopes_captures as msc  # noqa: E402
import rules_replay_test as rrt  # noqa: E402
from admission_test import ACK, FIN, PSH, RST, SYN, Checks, Frame, flow_of, frames  # noqa: E402


def next_seq(f: Frame) -> int:
    return (f.p.seq + f.p.payload_len + bool(f.p.flags & (SYN | FIN))) % mc.MOD32


# --------------------------------------------------------------------------------------------
# what the client of a cut stream holds
# --------------------------------------------------------------------------------------------

def dechunk(body: bytes) -> tuple[bytes, list[str]]:
    """RFC 9112 §7.1, strictly: (the data, problems). The body must end with the last chunk and
    an empty trailer section, and nothing after it."""
    data, pos = bytearray(), 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return bytes(data), [f"byte {pos}: a chunk-size line without CRLF"]
        size_text = body[pos:eol].split(b";", 1)[0]
        if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size_text):
            return bytes(data), [f"byte {pos}: chunk size {body[pos:eol][:20]!r}"]
        size, start = int(size_text, 16), eol + 2
        if size == 0:
            if body[start:] != b"\r\n":
                return bytes(data), [f"after the last chunk: {body[start:start + 40]!r}, expected "
                                     "CRLF and the end"]
            return bytes(data), []
        if body[start + size:start + size + 2] != b"\r\n":
            return bytes(data), [f"byte {start}: a {size}-byte chunk not followed by CRLF"]
        data += body[start:start + size]
        pos = start + size + 2


def parse_sse(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """WHATWG HTML §9.2.6, for a complete stream: ([(event type, data)], problems)."""
    lines = re.split(r"\r\n|\r|\n", text)
    problems = [] if lines[-1] == "" else [f"the stream ends inside a line: {lines[-1][:60]!r}"]
    events, kind, data = [], "message", []
    for line in lines[:-1]:
        if line == "":
            if data:
                events.append((kind, "\n".join(data)))
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            kind = value
    if data:
        problems.append("the last event has no blank line after it: never dispatched")
    return events, problems


def check_stream_end(got: bytes, sluice: bytes) -> list[str]:
    """The response a cut stream's client ends up with: GOT (what was forwarded) + SLUICE (its
    last segment)."""
    head, sep, body = (got + sluice).partition(b"\r\n\r\n")
    if not sep or b"transfer-encoding: chunked" not in head.lower():
        return ["the client did not get a chunked response head"]
    data, problems = dechunk(body)
    if problems:
        return problems
    try:
        events, problems = parse_sse(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        return [f"the event stream is not UTF-8: {e}"]
    deltas = []
    for n, (kind, payload) in enumerate(events):
        if payload == "[DONE]":
            problems.append(f"event {n}: [DONE] before the cut")
            continue
        try:
            obj = json.loads(payload)
        except ValueError as e:
            problems.append(f"event {n} ({kind}): data {payload[:80]!r} is not JSON ({e})")
            continue
        if n == len(events) - 1:
            error = obj.get("error") if isinstance(obj, dict) else None
            if kind != "error" or not isinstance(error, dict):
                problems.append(f"the last event is {kind!r} {payload[:80]!r}, expected the error")
            elif (error.get("code") != "completion_policy_violation"
                  or error.get("type") != "invalid_request_error" or error.get("param") is not None
                  or not isinstance(error.get("message"), str)):
                problems.append(f"the error event says {error!r}")
        elif kind != "message" or obj.get("object") != "chat.completion.chunk":
            problems.append(f"event {n} is {kind!r} {payload[:80]!r}, not a host's chunk")
        else:
            deltas += [c.get("delta", {}).get("content", "") for c in obj.get("choices", [])]
    text, full = "".join(deltas), "".join(msc.LEAK_DELTAS)
    if not full.startswith(text):
        problems.append(f"the deltas the client got, {text[-60:]!r}, are not a prefix of the "
                        "host's")
    if msc.KEY_HEADER.search(text):
        problems.append("the client got a whole private key header")
    if len(events) < 2:
        problems.append(f"{len(events)} events, expected the host's first ones and the error")
    return problems


# --------------------------------------------------------------------------------------------
# packets
# --------------------------------------------------------------------------------------------

def check_packets(expected: dict, inputs: list[Frame], to_client: list[Frame],
                  to_server: list[Frame], ids: set[str], checks: Checks) -> None:
    index_of = {f.data: n for n, f in enumerate(inputs)}
    sessions = {s["client_port"]: s for s in expected["sessions"]}

    def passes(s: dict, i: int) -> bool:
        return s["stop_frame"] is None or i < s["stop_frame"]

    made: dict[tuple, list[Frame]] = {}  # (client port, direction) → Sluice's frames
    for out, direction, side in ((to_server, "to_server", "client_frames"),
                                 (to_client, "to_client", "server_frames")):
        want = sorted(i for s in sessions.values() for i in s[side] if passes(s, i))
        got, problems = [], []
        for f in out:
            if f.data in index_of:
                got.append(index_of[f.data])
            elif flow_of(f)[1] != direction or flow_of(f)[0] not in sessions:
                problems.append(f"a frame from Sluice {f.p.src}:{f.p.sport} → "
                                f"{f.p.dst}:{f.p.dport}")
            else:
                made.setdefault(flow_of(f), []).append(f)
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        if missing:
            problems.append(f"input frames not forwarded: {missing[:12]}")
        if extra:
            problems.append(f"input frames forwarded that must not pass: {extra[:12]}")
        if not missing and not extra and got != want:
            problems.append("input frames forwarded out of order or twice")
        checks.report(f"{direction}_forwarded_exactly", problems)

    for port, s in sessions.items():
        p = []
        mine_c, mine_s = made.get((port, "to_client"), []), made.get((port, "to_server"), [])
        if s["ends"] is None:
            if mine_c or mine_s:
                p.append(f"{len(mine_c)} + {len(mine_s)} frames from Sluice on an intact flow")
            if p:
                checks.report(f"intact_{s['name']}", p)
            continue
        stop = s["stop_frame"]
        client_last = inputs[max(i for i in s["client_frames"] if i < stop)]
        server_last = inputs[max(i for i in s["server_frames"] if i < stop)]
        # The server's RCV.NXT and the client's: what each side sent before the stop.
        client_next, server_next = next_seq(client_last), next_seq(server_last)
        if len(mine_s) != 1:
            p.append(f"{len(mine_s)} frames from Sluice to the server, expected one RST")
        elif (mine_s[0].p.flags != RST | ACK or mine_s[0].p.payload_len
              or mine_s[0].p.seq != client_next):
            f = mine_s[0]
            p.append(f"to the server: flags 0x{f.p.flags:02x}, {f.p.payload_len} bytes, seq "
                     f"{f.p.seq}; expected RST|ACK at its RCV.NXT {client_next}")
        if len(mine_c) != 1:
            p.append(f"{len(mine_c)} frames from Sluice to the client, expected 1")
            checks.report(f"{s['ends']}_{s['name']}", p)
            continue
        f = mine_c[0]
        if f.p.seq != server_next:
            p.append(f"to the client: seq {f.p.seq}, it waits at {server_next}")
        if s["ends"] == "reset":
            if f.p.flags != RST | ACK or f.p.payload_len:
                p.append(f"to the client: flags 0x{f.p.flags:02x}, {f.p.payload_len} bytes; "
                         "expected a bare RST|ACK")
        elif f.p.flags != FIN | PSH | ACK or not f.p.payload_len:
            p.append(f"to the client: flags 0x{f.p.flags:02x}, {f.p.payload_len} bytes; expected "
                     "FIN|PSH|ACK with a payload")
        elif s["ends"] == "answer":
            status, _, body, hp = at.parse_answer(f.payload)
            p += hp
            if not status.startswith("HTTP/1.1 403 ") or \
                    b'"code":"content_policy_violation"' not in body:
                p.append(f"answer {status!r} {body[:100]!r}, expected 403 content_policy_violation")
            leaked = sorted(i for i in ids if i.encode() in f.payload)
            if leaked:
                p.append(f"the answer names rule ids {leaked} (disclose_rule_id is off)")
        else:  # stream_end
            got = b"".join(x.payload for x in to_client
                           if flow_of(x) == (port, "to_client") and x.data in index_of)
            p += check_stream_end(got, f.payload)
        checks.report(f"{s['ends']}_{s['name']}", p)


# --------------------------------------------------------------------------------------------
# the audit trail
# --------------------------------------------------------------------------------------------

def check_audit(expected: dict, records: list[dict], inputs: list[Frame], checks: Checks) -> None:
    matched = rrt.match_records(expected, records, checks)
    problems = []
    for req in expected["requests"]:
        rec = matched.get(req["label"])
        if rec is None:
            continue
        p = []
        for name in ("verdict", "status", "reason", "tier", "identity", "model",
                     "max_output_tokens", "rules", "usage"):
            if rec.get(name) != req[name]:
                p.append(f"{name} {rec.get(name)!r}, expected {req[name]!r}")
        if rec.get("ts") != at.rfc3339_ms(inputs[req["head_frame"]].ts):
            p.append(f"ts {rec.get('ts')}, expected the head's time")
        if not re.fullmatch(r"[0-9a-f]{12}", str(rec.get("key_id"))):
            p.append(f"key_id {rec.get('key_id')!r}")
        reserved, charged = rec.get("tokens_reserved"), rec.get("tokens_charged")
        if req["decided_at"] == "head":
            want = (0, 0)
        elif req["usage"] is not None:
            want = (reserved, req["usage"]["total_tokens"])
        else:  # cut: no usage came, the reservation stands
            want = (reserved, reserved)
        if (reserved, charged) != want or (req["decided_at"] != "head" and not reserved):
            p.append(f"tokens_reserved {reserved}, tokens_charged {charged}")
        if p:
            problems.append(f"{req['label']}: " + ", ".join(p))
    checks.report("audit_fields", problems)

    # A refusal or a cut is recorded when decided, an admission when its response ends.
    want = [r["label"] for r in sorted(expected["requests"], key=lambda r: r["record_frame"])]
    label_of = {id(rec): label for label, rec in matched.items()}
    got = [label_of.get(id(rec), "?") for rec in records]
    checks.report("audit_order",
                  [] if got == want else [f"records in order {got}, expected {want}"])


# --------------------------------------------------------------------------------------------

def main() -> int:
    begun = at.start("Sluice completion and header rules, through replay")
    if begun is None:
        return 2
    args, sluice, sluicectl, checks, started = begun
    workdir = os.path.abspath(args.workdir)
    expected = msc.generate(workdir, mc.BASE_TS_US)
    error = rrt.compile_rules(sluicectl, os.path.join(workdir, "rules.db"),
                              os.path.join(workdir, "extra", "scanner.yaml"))
    if not checks.report("rules_compile", [error] if error else []):
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    inputs = frames(os.path.join(workdir, "in.pcap"))

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
        check_packets(expected, inputs, to_client, to_server, rrt.rule_ids() | {msc.SCANNER_RULE},
                      checks)
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
